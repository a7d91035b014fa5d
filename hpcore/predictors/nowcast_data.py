"""The online nowcasters' data: window features, velocity targets' weights, a replay of
sampled rows, and the Adam step on the shared weights (DESIGN section 6).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcore import kernels

__all__ = ["TARGET_CLIP", "Replay", "adam_step", "host", "slope_weights", "window_features"]

_TINY = 1e-20  # floor of a parameter's scale (a parameter that never moved)
TARGET_CLIP = 8.0  # normalised velocity targets are clipped into +-TARGET_CLIP
_ADAM_B1, _ADAM_B2, _ADAM_EPS = 0.9, 0.999, 1e-8


def host(a: Any) -> np.ndarray:
    """A NumPy copy of a (possibly CuPy) array."""
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


def slope_weights(diffs: int) -> np.ndarray:
    """Weights ``w`` with ``d @ w`` = least-squares slope of the points whose steps are ``d``.

    For ``diffs + 1`` equally spaced points ``S_0 .. S_m`` with ``d_j = S_{j+1} - S_j``.

    Example:
        >>> import numpy as np
        >>> float(np.ones(4) @ slope_weights(4))  # points 0, 1, 2, 3, 4: slope 1
        1.0
    """
    c = np.arange(diffs + 1, dtype=np.float64) - diffs / 2.0
    tail = np.array([c[j + 1 :].sum() for j in range(diffs)])
    return tail / float(c @ c)


def window_features(win: Any, times: np.ndarray, interval: float) -> tuple[Any, Any]:
    """Normalised per-interval moves of every row of a window of snapshots.

    Args:
        win: (W, n) snapshots, oldest first (NumPy or CuPy).
        times: (W,) their step times.
        interval: steps between two snapshots.

    Returns:
        ``(x, scale)``: (n, W - 1) float32 moves divided by ``scale``, and (n,) ``scale``,
        the RMS of each row's per-interval moves (floored above 0).

    Example:
        >>> import numpy as np
        >>> x, s = window_features(np.array([[0.0], [2.0], [4.0]], np.float32), np.array([10.0, 20, 30]), 10)
        >>> x.tolist(), s.tolist()
        ([[1.0, 1.0]], [2.0])
    """
    xp = kernels.get_array_module(win)
    steps = np.diff(np.asarray(times, dtype=np.float64)) / interval
    steps[~(steps > 0)] = 1.0
    d = (win[1:] - win[:-1]) / xp.asarray(steps[:, None], dtype=win.dtype)
    scale = xp.maximum(xp.sqrt(xp.mean(d * d, axis=0)), _TINY).astype(xp.float32)
    x = xp.ascontiguousarray((d / scale).T, dtype=xp.float32)
    return x, scale


def adam_step(params: dict[str, np.ndarray], grads: dict[str, np.ndarray],
          m: dict[str, np.ndarray], v: dict[str, np.ndarray], t: int, lr: float) -> None:
    """One Adam step in place (float64 host arrays); ``t`` counts from 1."""
    c1 = 1.0 - _ADAM_B1**t
    c2 = 1.0 - _ADAM_B2**t
    for k, g in grads.items():
        g = np.nan_to_num(np.asarray(g, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        m[k] = _ADAM_B1 * m[k] + (1.0 - _ADAM_B1) * g
        v[k] = _ADAM_B2 * v[k] + (1.0 - _ADAM_B2) * g * g
        params[k] -= lr * (m[k] / c1) / (np.sqrt(v[k] / c2) + _ADAM_EPS)


class Replay:
    """A ring of training rows: features (R, F) float32, horizon feature, target."""

    def __init__(self, capacity: int, features: int) -> None:
        self.x = np.zeros((0, features), np.float32)  # (R, F) normalised moves
        self.hf = np.zeros(0, np.float32)  # (R,) horizon feature
        self.y = np.zeros(0, np.float32)  # (R,) normalised velocity target
        self.capacity = capacity
        self.head = 0  # next row to overwrite once full

    def __len__(self) -> int:
        return self.y.shape[0]

    def push(self, x: np.ndarray, hf: np.ndarray, y: np.ndarray) -> None:
        keep = np.isfinite(y) & np.all(np.isfinite(x), axis=1)
        x, hf = x[keep].astype(np.float32), hf[keep].astype(np.float32)
        y = np.clip(y[keep], -TARGET_CLIP, TARGET_CLIP).astype(np.float32)
        x, hf, y = x[-self.capacity :], hf[-self.capacity :], y[-self.capacity :]
        room = self.capacity - len(self)
        if room > 0:
            take = min(room, y.shape[0])
            self.x = np.concatenate([self.x, x[:take]])
            self.hf = np.concatenate([self.hf, hf[:take]])
            self.y = np.concatenate([self.y, y[:take]])
            x, hf, y = x[take:], hf[take:], y[take:]
        if y.shape[0]:
            rows = (self.head + np.arange(y.shape[0])) % self.capacity
            self.x[rows], self.hf[rows], self.y[rows] = x, hf, y
            self.head = int((rows[-1] + 1) % self.capacity)

    def state(self) -> dict[str, Any]:
        return {"x": self.x.copy(), "hf": self.hf.copy(), "y": self.y.copy(), "head": self.head}

    def load(self, state: dict[str, Any]) -> None:
        self.x = np.array(state["x"], np.float32).reshape(-1, self.x.shape[1])
        self.hf = np.array(state["hf"], np.float32)
        self.y = np.array(state["y"], np.float32)
        self.head = int(state["head"])
