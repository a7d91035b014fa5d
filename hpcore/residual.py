"""Residual store: how past jumps actually went against their forecast (DESIGN section 6).

Each entry is (state key ``s_t``, per-group scale residual, loss residual). The scale
residual of a group is the multiple of the jump's displacement that the trajectory really
travelled along it, once the Correct phase's own progress is accounted for: 1 is a perfect
forecast, below 1 an overshoot the optimizer had to undo. A new forecast is corrected by the
similarity-weighted mean of stored scales (softmax of cosine similarity over a temperature),
so a group whose jumps kept overshooting gets its displacement scaled down.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcore import kernels

__all__ = ["ResidualStore", "group_projections"]

SCALE_RANGE = (0.1, 2.0)  # corrections are clipped here: never reverse or explode a jump


def group_projections(actual: Any, forecast: Any, offsets: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per group ``g``: ``(<actual_g, forecast_g>, ||forecast_g||^2, ||actual_g||^2)``.

    ``offsets`` (G + 1,) are the group boundaries in the flat vector. The vectors may live
    on the GPU (CuPy); the (G,) results are always host NumPy float64 arrays. Dot products
    over slices: no temporary of the vectors' size.
    """
    xp = kernels.get_array_module(actual)
    g = len(offsets) - 1
    out = np.zeros((3, g))
    for i in range(g):
        a = actual[int(offsets[i]):int(offsets[i + 1])]
        f = forecast[int(offsets[i]):int(offsets[i + 1])]
        out[0, i] = float(xp.dot(a, f))
        out[1, i] = float(xp.dot(f, f))
        out[2, i] = float(xp.dot(a, a))
    return out[0], out[1], out[2]


class ResidualStore:
    """A bounded ring of residuals keyed by the training state.

    State: ``keys`` (M, d) float64, ``scales`` (M, G) float64, ``loss_residuals`` (M,)
    float64, ``count`` valid entries, ``head`` the next slot.
    """

    def __init__(self, capacity: int, key_dim: int, n_groups: int, temperature: float) -> None:
        self.temperature = temperature
        self.keys = np.zeros((capacity, key_dim))
        self.scales = np.ones((capacity, n_groups))
        self.loss_residuals = np.zeros(capacity)
        self.count = 0
        self.head = 0

    def __len__(self) -> int:
        return self.count

    def add(self, key: np.ndarray, scales: np.ndarray, loss_residual: float) -> None:
        """Store one judged jump's residuals."""
        self.keys[self.head] = key
        self.scales[self.head] = scales
        self.loss_residuals[self.head] = loss_residual
        self.head = (self.head + 1) % self.keys.shape[0]
        self.count = min(self.count + 1, self.keys.shape[0])

    def correction(self, key: np.ndarray) -> np.ndarray | None:
        """Per-group multipliers for a forecast made in state ``key`` (``None`` if empty)."""
        if self.count == 0:
            return None
        w = kernels.residual_weights(key, self.keys[: self.count], self.temperature)
        if not np.any(w > 0):
            return None
        corr = kernels.residual_correct(w, self.scales[: self.count])
        return np.clip(corr, *SCALE_RANGE)

    def state_dict(self) -> dict[str, Any]:
        return {"keys": self.keys.copy(), "scales": self.scales.copy(),
                "loss_residuals": self.loss_residuals.copy(), "count": self.count,
                "head": self.head}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if np.shape(state["scales"]) != self.scales.shape:
            msg = (f"residual store state has shape {np.shape(state['scales'])}, "
                   f"expected {self.scales.shape}")
            raise ValueError(msg)
        self.keys = np.array(state["keys"], dtype=np.float64)
        self.scales = np.array(state["scales"], dtype=np.float64)
        self.loss_residuals = np.array(state["loss_residuals"], dtype=np.float64)
        self.count = int(state["count"])
        self.head = int(state["head"])
