"""The controller's state as plain data (dicts, lists, numbers, strings, arrays) and back.

A checkpoint holds no callables and no pickled objects: each value object is written as a
dict with its type's name, and read back only into the known types listed here, each field
checked by the type's own validators on construction.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs
import numpy as np

from hpcore.bandit import BanditState
from hpcore.divergence import Level
from hpcore.floor import FloorState
from hpcore.horizon import DoublingState
from hpcore.steps import Action, ControllerState, Counters, JumpState, StepKind
from hpcore.trend import TrendState
from hpcore.types import Phase

__all__ = ["flatten", "from_plain", "to_plain", "unflatten"]

_TYPES = {cls.__name__: cls for cls in (
    Action, BanditState, ControllerState, Counters, DoublingState, FloorState, JumpState,
    TrendState)}
_ENUMS = {cls.__name__: cls for cls in (Level, Phase, StepKind)}


def to_plain(value: Any) -> Any:
    """``value`` as nested dicts and lists of numbers, strings and arrays."""
    if isinstance(value, enum.Enum):
        return {"__enum__": type(value).__name__, "value": value.value}
    if attrs.has(type(value)):
        out = {"__type__": type(value).__name__}
        for f in attrs.fields(type(value)):
            out[f.name] = to_plain(getattr(value, f.name))
        return out
    if isinstance(value, tuple):
        return {"__tuple__": [to_plain(v) for v in value]}
    if isinstance(value, (bool, int, float, str, np.ndarray)) or value is None:
        return value
    msg = f"cannot store a {type(value).__name__} in the controller state"
    raise TypeError(msg)


def from_plain(value: Any) -> Any:
    """The inverse of :func:`to_plain`; unknown type names are refused (``ValueError``)."""
    if isinstance(value, dict):
        if "__enum__" in value:
            cls = _ENUMS.get(value["__enum__"])
            if cls is None:
                msg = f"unknown enum {value['__enum__']!r} in the controller state"
                raise ValueError(msg)
            return cls(value["value"])
        if "__tuple__" in value:
            return tuple(from_plain(v) for v in value["__tuple__"])
        cls = _TYPES.get(value.get("__type__"))
        if cls is None:
            msg = f"unknown type {value.get('__type__')!r} in the controller state"
            raise ValueError(msg)
        fields = {k: from_plain(v) for k, v in value.items() if k != "__type__"}
        names = {f.name for f in attrs.fields(cls)}
        if set(fields) != names:
            msg = f"{cls.__name__} state has fields {sorted(fields)}, expected {sorted(names)}"
            raise ValueError(msg)
        return cls(**fields)
    if isinstance(value, list):
        return [from_plain(v) for v in value]
    return value


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict with dotted keys (array leaves of the trajectory's state)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`flatten`."""
    out: dict[str, Any] = {}
    for key, v in flat.items():
        node = out
        *path, leaf = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out
