"""The trajectory: the flat-vector state of the hybrid trainer, over the kernels (DESIGN 5).

It owns the moving average and snapshot ring (:class:`hpcore.history.SnapshotHistory`), the
jump's origin (which is also the last good state, with one copy of the optimizer state) and
its direction ``D``. Extra memory at every moment, jumps and rollbacks included:
``(history_size + 3) N`` floats plus one transient vector when a jump is judged, and one
copy of the optimizer state. Every N-sized operation goes through :mod:`hpcore.kernels`; a
step that is not observed touches none of it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcore import kernels
from hpcore.config import HybridTrainerConfig
from hpcore.history import SnapshotHistory
from hpcore.predictors import Predictor
from hpcore.residual import ResidualStore, group_projections

__all__ = ["Trajectory"]


class Trajectory:
    """The live parameters ``theta`` (length N, shared with the framework) and what the
    controller's actions do to them.

    Args:
        theta: 1-D float32 parameter vector, a view of the model's parameters where possible.
        config: the validated configuration.
        group_offsets: (G + 1,) boundaries of the parameter groups in ``theta``.
    """

    def __init__(self, theta: Any, config: HybridTrainerConfig, group_offsets: np.ndarray) -> None:
        xp = kernels.get_array_module(theta)
        self.theta = theta
        self.history = SnapshotHistory(theta, config.history_size, config.snapshot_interval,
                                       config.snapshot_ema)
        self.origin = xp.array(theta, copy=True)  # (N,) last good state; a jump's origin
        self.direction = xp.zeros_like(theta)  # (N,) the jump's displacement D
        self.offsets = group_offsets
        self.opt_state: Any = None  # the optimizer's state saved with ``origin``
        self.frac = 0.0  # share of D applied when the jump settled (shifted into the ring)
        self.start_clock = 0  # the history's clock when the jump started
        self.scales = np.ones(len(group_offsets) - 1)  # (G,) residual correction applied
        self.drift = np.zeros(len(group_offsets) - 1)  # (G,) <pre-jump drift, D> per group

    # ------------------------------------------------------------------ full steps
    def observe(self, snapshot: bool) -> tuple[int, bool]:
        """An observed full step: (non-finite parameters, whether a snapshot was pushed)."""
        return self.history.observe(self.theta, snapshot)

    def restart(self) -> None:
        """The history starts afresh at the current parameters."""
        self.history.restart(self.theta)

    def save(self, opt_state: Any) -> None:
        """The current parameters (and ``opt_state``) become the last good state."""
        kernels.copy(self.origin, self.theta)
        self.opt_state = opt_state

    def restore(self) -> Any:
        """Back to the last good state; returns the optimizer state saved with it."""
        kernels.copy(self.theta, self.origin)
        return self.opt_state

    # ------------------------------------------------------------------ jumps
    def start_jump(self, predictor: Predictor, horizon: int, *, average: bool,
                   residuals: ResidualStore | None, key: np.ndarray) -> None:
        """Compute ``D`` for a jump of ``horizon`` from the current parameters (saved first)."""
        self.start_clock = self.history.clock
        self.scales[...] = 1.0
        if average:  # to the averaged point: D = ema - theta
            kernels.lincomb(np.ones(1), self.history.ema[None, :], self.theta, -1.0,
                            self.direction)
            return
        predictor.forecast(self.history, self.theta, horizon, self.direction)
        if residuals is not None:
            corr = residuals.correction(key)
            if corr is not None:
                self.scales[...] = corr
                o = self.offsets
                for g in np.nonzero(corr != 1.0)[0]:
                    self.direction[o[g]:o[g + 1]] *= corr[g]
        # The drift of the averaged trajectory before the jump, along the jump, per group:
        # what the Correct phase would add anyway, so that it is not credited to the jump.
        slots, times = self.history.window(2)
        self.drift[...] = 0.0
        if len(slots) == 2:
            ring = self.history.ring
            newer = group_projections(ring[slots[1]], self.direction, self.offsets)[0]
            older = group_projections(ring[slots[0]], self.direction, self.offsets)[0]
            self.drift[...] = (newer - older) / (times[1] - times[0])

    def lay(self, k: int, horizon: int) -> None:
        """Predicted step ``k`` of ``horizon``: ``theta = origin + (k / horizon) D``."""
        kernels.axpy_path(self.theta, self.origin, self.direction, k / horizon)

    def settle(self, k: int, horizon: int) -> None:
        """End the jump at step ``k``: lay it and shift the history by what was applied."""
        self.lay(k, horizon)
        self.frac = k / horizon
        self.history.shift(self.direction, self.frac)

    def rollback(self, drop: int) -> Any:
        """Undo the jump: parameters to the origin, the history un-shifted and its ``drop``
        newest snapshots dropped; returns the optimizer state to restore."""
        self.history.shift(self.direction, -self.frac)
        self.history.drop(drop, self.start_clock)
        kernels.copy(self.history.ema, self.origin)
        self.frac = 0.0
        return self.restore()

    def displacement(self) -> Any:
        """Where the trajectory really went from the origin (a new N-sized vector)."""
        return self.theta - self.origin

    def kept_share(self, taken: int, horizon: int, correct_steps: int) -> np.ndarray:
        """Per group, the share of the jump that survived the recovery: with ``A`` the move
        from the origin, ``D_t`` the part of the jump taken and ``v`` the pre-jump drift,
        ``<A - c v, D_t> / ||D_t||^2`` (1: all kept; below 1: an overshoot undone).
        ``<A, D> = <theta, D> - <origin, D>``: no vector of the model's size is made."""
        now, ff, _ = group_projections(self.theta, self.direction, self.offsets)
        dot = now - group_projections(self.origin, self.direction, self.offsets)[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(ff > 0, (horizon / taken) * (dot - correct_steps * self.drift) / ff,
                             1.0)
        return self.scales * np.where(np.isfinite(ratio), ratio, 1.0)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history.state_dict(), "origin": self.origin,
                "direction": self.direction, "frac": self.frac, "start_clock": self.start_clock,
                "scales": self.scales, "drift": self.drift}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history.load_state_dict(state["history"])
        kernels.copy(self.origin, state["origin"])
        kernels.copy(self.direction, state["direction"])
        self.frac = float(state["frac"])
        self.start_clock = int(state["start_clock"])
        self.scales[...] = state["scales"]
        self.drift[...] = state["drift"]
