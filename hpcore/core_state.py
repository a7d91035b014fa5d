"""The hybrid core's state as plain data, and back (checkpoints, ``state_dict``).

Arrays are copied to the host; every part of a loaded state is decoded and checked (the
controller's by :func:`hpcore.steps.check_state`, array shapes against the core's) before
the core takes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from hpcore import kernels
from hpcore.divergence import DivergenceEvent, Level
from hpcore.state_io import flatten, from_plain, to_plain, unflatten
from hpcore.steps import check_state
from hpcore.types import JumpRecord

if TYPE_CHECKING:
    from hpcore.core import HybridCore

__all__ = ["STATE_VERSION", "dump", "restore"]

STATE_VERSION = 2


def dump(core: HybridCore) -> dict[str, Any]:
    """The core's whole state (its quiet steps folded in by the caller)."""
    t = core.trajectory
    return {
        "version": STATE_VERSION, "size": int(t.theta.shape[0]),
        "controller": to_plain(core.state),
        "trajectory": {k: (kernels.to_host(v).copy() if hasattr(v, "shape") else v)
                       for k, v in flatten(t.state_dict()).items()},
        "saved_optimizer_state": t.opt_state,
        "predictor": core.predictor.state_dict(),
        "encoder": core.encoder.state_dict(),
        "residuals": None if core.residuals is None else core.residuals.state_dict(),
        "monitor": core.monitor.state_dict(),
        "key": core.key.copy(),
        "last_loss": core.last_loss,
        "phase_steps": dict(core.phase_steps),
        "events": [[e.step, e.signal, int(e.level), e.value] for e in core.events],
        "jumps": [attrs.asdict(j) for j in core.jumps],
    }


def restore(core: HybridCore, state: dict[str, Any]) -> None:
    """Set the core's state from :func:`dump`'s; ``ValueError`` on a state it could not have
    written (the caller restores its backup)."""
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        got = state.get("version") if isinstance(state, dict) else type(state).__name__
        msg = f"unknown hybrid state version {got!r} (expected {STATE_VERSION})"
        raise ValueError(msg)
    n = int(core.trajectory.theta.shape[0])
    if state.get("size") != n:
        msg = f"hybrid state is for {state.get('size')} parameters, this model has {n}"
        raise ValueError(msg)
    controller = from_plain(state["controller"])
    check_state(controller, core.config)
    traj = unflatten(state["trajectory"])
    current = flatten(core.trajectory.state_dict())
    for name, dst in current.items():
        src = state["trajectory"].get(name)
        if hasattr(dst, "shape") and tuple(np.shape(src)) != tuple(dst.shape):
            msg = (f"hybrid state array {name!r} has shape {np.shape(src)}, expected "
                   f"{tuple(dst.shape)} (was history_size changed?)")
            raise ValueError(msg)
        if hasattr(dst, "shape") and not np.all(np.isfinite(np.asarray(src))):
            msg = f"hybrid state array {name!r} holds non-finite values"
            raise ValueError(msg)
    steps = state["phase_steps"]
    if not isinstance(steps, dict) or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0
            for v in steps.values()):
        msg = f"hybrid state 'phase_steps' must map phases to ints >= 0 (got {steps!r})"
        raise ValueError(msg)
    core.trajectory.load_state_dict(traj)
    core.trajectory.opt_state = state["saved_optimizer_state"]
    core.state = controller
    core.predictor.load_state_dict(state["predictor"])
    core.encoder.load_state_dict(state["encoder"])
    if core.residuals is not None and state["residuals"] is not None:
        core.residuals.load_state_dict(state["residuals"])
    core.monitor.load_state_dict(state["monitor"])
    core.key = np.array(state["key"], dtype=np.float64)
    core.last_loss = float(state["last_loss"])
    core.phase_steps = {k: int(v) for k, v in state["phase_steps"].items()}
    core.events = [DivergenceEvent(int(s), str(g), Level(int(lv)), float(v))
                   for s, g, lv, v in state["events"]]
    core.jumps = [JumpRecord(**j) for j in state["jumps"]]
