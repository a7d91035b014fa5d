"""How much a checkpoint may hold: the default limits, :class:`Limits`, and the JSON depth gauge.

Internal to :mod:`hpcore.checkpoint`: the reader refuses a file over its :class:`Limits` unread,
and the writer refuses a state that the default reader would refuse.
"""

from __future__ import annotations

import re
from typing import Any

import attrs
import numpy as np

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_INDEX_BYTES", "MAX_MEMBERS", "Limits", "json_depth"]

MAX_BYTES = 2**36  # 64 GiB of members in all
MAX_MEMBERS = 1_000_000
MAX_INDEX_BYTES = 2**26  # 64 MiB of JSON
MAX_DEPTH = 100  # nested JSON containers; each dict, list or tuple of the state costs two
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_CHUNK = 1 << 20


def _int_at_least_1(inst: Any, attr: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"'{attr.name}' must be an int >= 1 (got {value!r})"
        raise ValueError(msg)
    if value < 1:
        msg = f"'{attr.name}' must be >= 1 (got {value})"
        raise ValueError(msg)


@attrs.frozen
class Limits:
    """The most a checkpoint may hold before it is refused unread.

    Args:
        max_bytes: uncompressed bytes of all members together (arrays and index).
        max_members: zip members (one per array, plus the index and its digest).
        max_index_bytes: bytes of the JSON index.
        max_depth: nesting of JSON containers in the index.
    """

    max_bytes: int = attrs.field(default=MAX_BYTES, validator=_int_at_least_1)
    max_members: int = attrs.field(default=MAX_MEMBERS, validator=_int_at_least_1)
    max_index_bytes: int = attrs.field(default=MAX_INDEX_BYTES, validator=_int_at_least_1)
    max_depth: int = attrs.field(default=MAX_DEPTH, validator=_int_at_least_1)


def json_depth(raw: bytes, stop_above: int) -> int:
    """Deepest nesting of ``[``/``{`` in a JSON text, strings skipped (stops past ``stop_above``).

    Counted without parsing, in NumPy chunks, so a 200,000-deep text is measured, not recursed.
    """
    codes = np.frombuffer(_JSON_STRING.sub(b'""', raw), dtype=np.uint8)
    depth, deepest = 0, 0
    for start in range(0, codes.size, _CHUNK):
        chunk = codes[start : start + _CHUNK]
        step = ((chunk == ord("[")) | (chunk == ord("{"))).astype(np.int32)
        step -= ((chunk == ord("]")) | (chunk == ord("}"))).astype(np.int32)
        running = np.cumsum(step, dtype=np.int64) + depth
        if running.size:
            deepest = max(deepest, int(running.max()))
            depth = int(running[-1])
        if deepest > stop_above:
            break
    return deepest
