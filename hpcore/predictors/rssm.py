"""RSSM-lite nowcaster: GRU state, categorical latent, ensemble disagreement (DESIGN section 5).

Per parameter (weights shared by all parameters, one set per ensemble member):

- a GRU (``deterministic_dim`` units) runs over the normalised moves of the window
  (:func:`hpcore.predictors.mlp.window_features`), from ``h = 0``; member ``m`` reads the
  newest ``W - 1 - m`` moves (at least 2), so the members see nested spans of the window;
- a categorical stochastic latent ``z`` (``num_categoricals`` groups, ``stochastic_dim``
  one-hot units in all) is drawn from ``softmax(h @ wz + bz)`` per group by the Gumbel-max
  kernel, with straight-through gradients (DreamerV3);
- the displacement head reads ``h``, ``z`` and the horizon: ``u = slope(x) + w_out . h + b_out
  + vz . z + ah * horizon`` is the parameter's velocity over the horizon, in units of its
  scale, as for the MLP.

Members are initialised and trained independently (own draws of the batch: a bootstrap), by
truncated back-propagation through time over the last ``bptt`` steps of the window, on the
same self-supervised and kept-displacement targets as the MLP. Their spread is a per-parameter
confidence (on a steady trend every span tells the same story, on noise they differ): a
parameter is confident when ``std_m(u_m) <= disagreement * |mean_m(u_m)|``;
confident parameters are extrapolated with the mean velocity, the others are left at the
averaged point (the moving average, ``history.ema``). :meth:`RSSMPredictor.confidence` is the
share of confident parameters.

References:
    Hafner et al. (2023), Mastering Diverse Domains through World Models (DreamerV3).
    Lakshminarayanan et al. (2017), Simple and Scalable Predictive Uncertainty Estimation
    using Deep Ensembles. Cho et al. (2014), GRU.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hpcore import kernels
from hpcore.config import RSSMConfig
from hpcore.history import SnapshotHistory

from .mlp import HORIZON_UNIT, OnlineNowcaster
from .nowcast_data import slope_weights, window_features

__all__ = ["RSSMPredictor"]

_GRU = ("wx", "wh", "bx", "bh", "w_out", "b_out")


class RSSMPredictor(OnlineNowcaster):
    """GRU + categorical latent ensemble; uncertain parameters stay at the averaged point.

    Args:
        config: the :class:`~hpcore.config.RSSMConfig`.

    Example:
        >>> import numpy as np
        >>> from hpcore.config import RSSMConfig
        >>> from hpcore.history import SnapshotHistory
        >>> theta = np.zeros(2, np.float32)
        >>> h = SnapshotHistory(theta, 8, 1, None)
        >>> p = RSSMPredictor(RSSMConfig(window=4, sample_size=2))
        >>> for t in range(1, 9):
        ...     theta[:] = [t, -t]
        ...     _ = h.observe(theta)
        ...     p.observe_snapshot(h)
        >>> 0.0 <= p.confidence(h) <= 1.0
        True
    """

    config: RSSMConfig

    def __init__(self, config: RSSMConfig) -> None:
        self._groups = config.num_categoricals
        self._classes = config.stochastic_dim // config.num_categoricals
        super().__init__(config)
        self.confident_mask: Any = None  # (N,) bool of the last forecast: extrapolated rows
        self._cache: tuple[tuple, Any, Any, Any] | None = None  # (key, x, scale, (E, N) u)

    # ------------------------------------------------------------------ parameters
    def _init_params(self) -> dict[str, np.ndarray]:
        c = self.config
        hd, zd = c.deterministic_dim, c.stochastic_dim
        params: dict[str, np.ndarray] = {}
        for m in range(c.ensemble_size):
            g = kernels.init_gru(hd, self._rng)
            for name, a in zip(_GRU, g, strict=True):
                params[f"{m}.{name}"] = np.asarray(a, np.float64)
            params[f"{m}.wz"] = self._rng.normal(0.0, 1.0 / math.sqrt(hd), (hd, zd))
            params[f"{m}.bz"] = np.zeros(zd)
            params[f"{m}.vz"] = self._rng.normal(0.0, 0.1 / math.sqrt(zd), zd)
            params[f"{m}.ah"] = np.zeros(1)
        return params

    def _span(self, m: int) -> int:
        """Moves member ``m`` reads: the newest ``W - 1 - m`` (at least 2). Members look at
        nested spans of the window, so they agree on a steady trend and disagree on noise."""
        return max(2, self.config.window - 1 - m)

    def _gru(self, m: int) -> kernels.GRUWeights:
        return kernels.GRUWeights(*(self.params[f"{m}.{n}"] for n in _GRU))

    # ------------------------------------------------------------------ one member
    def _member(self, m: int, x: Any) -> tuple[Any, Any, Any, Any]:
        """Member ``m`` over rows ``x`` without the horizon term: ``(u, h, probs, z)``."""
        xp = kernels.get_array_module(x)
        p = self.params
        span = self._span(m)
        x = xp.ascontiguousarray(x[:, -span:])
        y, h = kernels.gru_forward(x, self._gru(m))
        logits = h @ xp.asarray(p[f"{m}.wz"], dtype=h.dtype) + xp.asarray(p[f"{m}.bz"], dtype=h.dtype)
        n, g, k = x.shape[0], self._groups, self._classes
        flat = logits.reshape(n * g, k)
        cls = kernels.categorical_sample(flat, self._uniform(xp, flat.shape))
        z = xp.zeros((n * g, k), dtype=h.dtype)
        z[xp.arange(n * g), cls] = 1.0
        z = z.reshape(n, g * k)
        e = xp.exp(flat - flat.max(axis=1, keepdims=True))
        probs = (e / e.sum(axis=1, keepdims=True)).reshape(n, g, k)
        lw = xp.asarray(slope_weights(span), dtype=x.dtype)
        u = y + x @ lw + z @ xp.asarray(p[f"{m}.vz"], dtype=h.dtype)
        return u, h, probs, z

    def _uniform(self, xp: Any, shape: tuple[int, ...]) -> Any:
        if xp is np:
            return self._rng.random(shape, dtype=np.float32)
        gen = xp.random.default_rng(int(self._rng.integers(2**31)))  # pragma: no cover - GPU
        return gen.random(shape, dtype=xp.float32)  # pragma: no cover - GPU

    def _grads(self, x: np.ndarray, hf: np.ndarray, y: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
        """Every member on its own bootstrap draw of the batch; losses averaged."""
        grads: dict[str, np.ndarray] = {}
        losses = []
        b = y.shape[0]
        for m in range(self.config.ensemble_size):
            rows = self._rng.integers(0, b, b)
            xm, hm, ym = x[rows], hf[rows], y[rows]
            u, h, probs, z = self._member(m, xm)
            h = h.astype(np.float64)
            xm = np.ascontiguousarray(xm[:, -self._span(m):])
            pred = u.astype(np.float64) + self.params[f"{m}.ah"][0] * hm
            err = pred - ym
            dout = err / b
            losses.append(float(0.5 * np.mean(err * err)))
            vz = self.params[f"{m}.vz"]
            wz = self.params[f"{m}.wz"]
            # Straight-through: d z / d logits is the softmax Jacobian of each group.
            dz = (dout[:, None] * vz[None, :]).reshape(b, self._groups, self._classes)
            dlog = (probs * (dz - np.sum(probs * dz, axis=2, keepdims=True))).reshape(b, -1)
            g = kernels.gru_backward(xm, np.arange(b), dout, self._gru(m), dh=dlog @ wz.T,
                                     bptt=self.config.bptt)
            for name, a in zip(_GRU, g, strict=True):
                grads[f"{m}.{name}"] = np.asarray(a, np.float64)
            grads[f"{m}.wz"] = h.T @ dlog
            grads[f"{m}.bz"] = dlog.sum(axis=0)
            grads[f"{m}.vz"] = z.T @ dout
            grads[f"{m}.ah"] = np.array([hm @ dout])
        return grads, float(np.mean(losses))

    # ------------------------------------------------------------------ over all N
    def _members_all(self, history: SnapshotHistory) -> tuple[Any, Any, Any]:
        """(x, scale, (E, N) velocities without the horizon term), cached per history state."""
        key = (history.clock, history.head, history.count, float(history.times[(history.head - 1)
                                                                                % history.ring.shape[0]]))
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1:]
        slots, times = history.window(self.config.window)
        self._interval = float(history.interval)
        x, scale = window_features(history.ring[slots], times, self._interval)
        xp = kernels.get_array_module(x)
        u = xp.stack([self._member(m, x)[0] for m in range(self.config.ensemble_size)])
        self._cache = (key, x, scale, u)
        return x, scale, u

    def _agreement(self, u: Any, hf: float) -> tuple[Any, Any]:
        """Mean velocity and the confident mask of the members at horizon feature ``hf``."""
        xp = kernels.get_array_module(u)
        ah = xp.asarray([self.params[f"{m}.ah"][0] for m in range(self.config.ensemble_size)],
                        dtype=u.dtype)
        um = u + ah[:, None] * u.dtype.type(hf)
        mean = um.mean(axis=0)
        spread = um.std(axis=0)
        confident = spread <= self.config.disagreement * xp.abs(mean)
        return mean, confident

    def confidence(self, history: SnapshotHistory) -> float:
        """Share of parameters whose members agree (at a horizon of ``HORIZON_UNIT`` snapshots)."""
        _, _, u = self._members_all(history)
        _, confident = self._agreement(u, 1.0)
        return float(confident.mean())

    def forecast(self, history: SnapshotHistory, origin: Any, horizon: int, out: Any) -> None:
        """Confident parameters: extrapolate the members' mean; the others: the averaged point."""
        x, scale, u = self._members_all(history)
        slots, times = history.window(self.config.window)
        win = history.ring[slots]
        dist = max((history.clock + horizon - float(times[-1]) + history.lag) / self._interval, 1e-6)
        mean, confident = self._agreement(u, dist / HORIZON_UNIT)
        xp = kernels.get_array_module(x)
        extrapolated = win[-1] - origin + mean * scale * np.float32(dist)
        out[...] = xp.where(confident, extrapolated, history.ema - origin)
        self.confident_mask = confident
        self._remember(history, win, times, x, scale, origin, dist)
        self._cache = None

    def observe_snapshot(self, history: SnapshotHistory) -> None:
        """As the MLP; drops the cached forward pass (the weights changed)."""
        self._cache = None
        super().observe_snapshot(history)

    def learn_from_jump(self, actual: Any, taken: int, horizon: int, correct_steps: int) -> None:
        """As the MLP; drops the cached forward pass (the weights changed)."""
        self._cache = None
        super().learn_from_jump(actual, taken, horizon, correct_steps)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """As the MLP; drops the cached forward pass."""
        super().load_state_dict(state)
        self._cache = None
