"""optax state helpers for the JAX adapter: parameter checks and schedule counts.

A learning-rate schedule inside an optax chain counts every training step, predicted ones
included; the moment estimates (``ScaleByAdamState``...) advance on full steps only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["advance_moment_counts", "advance_schedules", "check_params", "schedule_counts_from"]

# optax states whose ``count`` drives a learning-rate schedule (advanced by predicted steps);
# the counts of the moment estimates (ScaleByAdamState...) are left alone.
_SCHEDULE_STATES = (
    optax.ScaleByScheduleState,
    optax.InjectHyperparamsState,
    optax.InjectStatefulHyperparamsState,
)


def check_params(params: Any) -> None:
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    if not leaves:
        msg = "params has no leaves: there is nothing to train"
        raise ValueError(msg)
    for path, leaf in leaves:
        where = "params" + jax.tree_util.keystr(path)
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or not hasattr(leaf, "shape"):
            msg = f"{where} is a {type(leaf).__name__}, not an array; make every leaf a jnp.float32 array"
            raise ValueError(msg)
        if dtype != jnp.float32:
            msg = (
                f"{where} has dtype {dtype}; the hybrid optimizer needs every leaf in float32 "
                "(cast with jax.tree_util.tree_map(lambda x: x.astype(jnp.float32), params))"
            )
            raise ValueError(msg)
    if sum(int(np.prod(leaf.shape)) for _, leaf in leaves) == 0:
        msg = "params holds only empty arrays: there is nothing to train"
        raise ValueError(msg)


def _with_counts(state: Any, ref: Any, schedule: Callable[[Any, Any], Any],
                 moment: Callable[[Any], Any] | None = None) -> Any:
    """``state`` with every schedule state's count replaced by ``schedule(node, ref_node)``
    and, given ``moment``, every other state's ``count`` (the moment estimates') by
    ``moment(node)``; ``ref`` is a state of the same structure walked alongside."""
    def walk(s: Any, r: Any) -> Any:
        return _with_counts(s, r, schedule, moment)

    if isinstance(state, _SCHEDULE_STATES):
        fields = {f: walk(getattr(state, f), getattr(ref, f)) for f in state._fields if f != "count"}
        return state._replace(count=schedule(state, ref), **fields)
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        fields = {f: walk(getattr(state, f), getattr(ref, f)) for f in state._fields}
        if moment is not None and "count" in state._fields:
            fields["count"] = moment(state)
        return state._replace(**fields)
    if isinstance(state, (tuple, list)):
        return type(state)(walk(s, r) for s, r in zip(state, ref, strict=True))
    if isinstance(state, dict):
        return {k: walk(v, ref[k]) for k, v in state.items()}
    return state


def advance_schedules(state: Any) -> Any:
    """``state`` with every schedule count one step further (the moments untouched)."""
    return _with_counts(state, state, lambda s, _r: optax.safe_int32_increment(s.count))


def schedule_counts_from(now: Any, state: Any) -> Any:
    """``state`` with every schedule count taken from ``now`` (a state of the same structure)."""
    return _with_counts(state, now, lambda _s, r: r.count)


def advance_moment_counts(state: Any, steps: int) -> Any:
    """``state`` with the step count of every moment estimate (``ScaleByAdamState`` and any
    other state with a ``count`` that is not a schedule's) ``steps`` further."""
    return _with_counts(state, state, lambda s, _r: s.count, lambda s: s.count + steps)
