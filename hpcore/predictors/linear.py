"""Linear predictor: a per-parameter least-squares line through the snapshot window.

The coefficients are the same for every parameter, so the forecast displacement is one
fixed combination of the snapshots (one GEMV, DESIGN section 5).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcore import kernels
from hpcore.config import LinearConfig
from hpcore.history import SnapshotHistory

__all__ = ["LinearPredictor", "line_weights"]


def line_weights(times: np.ndarray, target: float, shrink: float = 1.0) -> np.ndarray:
    """Weights ``w`` with ``sum_i w_i S_i`` = the least-squares line through ``(times, S)`` at ``target``.

    Example:
        >>> import numpy as np
        >>> w = line_weights(np.array([0.0, 1.0, 2.0]), 4.0)
        >>> float(w @ np.array([1.0, 2.0, 3.0]))  # the line y = 1 + t at t = 4
        5.0
    """
    t = np.asarray(times, dtype=np.float64)
    centred = t - t.mean()
    denom = float(centred @ centred)
    w = np.full(t.shape, 1.0 / t.size)
    if denom > 0:
        w += shrink * (target - t.mean()) * centred / denom
    return w


class LinearPredictor:
    """Forecasts the slow trajectory ``horizon`` steps ahead by extending its trend line."""

    learns_from_jumps = False  # the line has nothing to learn from a judged jump

    def __init__(self, config: LinearConfig) -> None:
        self.config = config

    @property
    def min_snapshots(self) -> int:
        """Snapshots needed before a forecast is possible."""
        return self.config.window

    def observe_snapshot(self, history: SnapshotHistory) -> None:
        """A snapshot entered the ring (the line has nothing to fit online)."""

    def learn_from_jump(self, actual: Any, taken: int, horizon: int, correct_steps: int) -> None:
        """A jump was judged; ``actual`` is the displacement from its origin (unused here)."""

    def state_dict(self) -> dict[str, Any]:
        """The line has no state of its own."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore."""

    def confidence(self, history: SnapshotHistory) -> float:
        """Share of the window's spread that the line explains (R^2 over all parameters)."""
        slots, times = history.window(self.config.window)
        ss_total, ss_explained = kernels.trend_r2(history.ring[slots], times - times.mean())
        return float(ss_explained / ss_total) if ss_total > 0 else 0.0

    def forecast(self, history: SnapshotHistory, origin: Any, horizon: int, out: Any) -> None:
        """Write the displacement ``D`` from ``origin`` over ``horizon`` steps into ``out``.

        The snapshots trail ``theta`` by the average's lag, which the times account for.
        """
        slots, times = history.window(self.config.window)
        scale = self.config.scale
        weights = np.zeros(history.ring.shape[0])
        weights[slots] = scale * line_weights(times - history.lag,
                                              float(history.clock + horizon), self.config.shrink)
        kernels.lincomb(weights, history.ring, origin, -scale, out)
