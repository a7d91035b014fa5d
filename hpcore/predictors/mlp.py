"""MLP nowcaster: a tiny network shared by every parameter, trained online (DESIGN section 5).

Each parameter's window of the last ``W`` snapshots is turned into ``W - 1`` normalised
differences (per-interval moves divided by their RMS, so every row has unit scale); the
network reads them with the horizon and outputs the parameter's *velocity* (per snapshot
interval, in units of its scale) over the horizon, on top of the least-squares slope of the
window: with zero output weights it is the line. The forecast displacement from ``theta`` is

    D = S_newest - theta + u * scale * dist,   dist = (clock + H - t_newest + lag) / interval

(the snapshots trail ``theta`` by the average's lag, as in :mod:`hpcore.predictors.linear`).

Two sources of training data, both on a random sample of ``sample_size`` coordinates:

- self-supervised (``observe_snapshot``): earlier windows of the run's own averaged
  trajectory -> the snapshot ``k`` intervals later, ``k = 1 .. max_lookahead``;
- progress that survived (``learn_from_jump``): after a judged jump, the displacement each
  sampled coordinate *kept* through the Correct phase (less the drift the Correct steps would
  have made anyway), turned into the velocity that would have produced it. A coordinate in a
  fast direction, which the optimizer undid, teaches the network to stop extrapolating rows
  that look like it; one in a slow direction keeps its extrapolation. Forecast error alone
  shrinks every move (DESIGN 5); this target shrinks only the moves that do not survive.

Forward runs once over all N rows per jump (``kernels.mlp_forward``); training runs the
backward pass on the sample (``kernels.mlp_backward``) with Adam on the shared weights.

References:
    Jang et al. (2023), Learning to Boost Training by Periodic Nowcasting Near Future
    Weights (WNN). Knyazev et al. (2025), Accelerating Training with Neuron Interaction and
    Nowcasting Networks (NiNo). Kingma and Ba (2015), Adam.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hpcore import kernels
from hpcore.config import MLPConfig, RSSMConfig
from hpcore.history import SnapshotHistory
from hpcore.predictors.nowcast_data import (
    Replay,
    adam_step,
    host,
    slope_weights,
    window_features,
)

__all__ = ["MLPPredictor", "slope_weights", "window_features"]

HORIZON_UNIT = 10.0  # snapshot intervals per unit of the horizon feature


class OnlineNowcaster:
    """What the MLP and the RSSM share: features, the sampled trajectory, replay, Adam,
    the self-supervised and the jump targets, and the state dict.

    Subclasses define ``_init_params`` (named float64 arrays), ``_grads(x, hf, y)`` (the
    loss's gradients on a batch, and the loss) and ``_velocity(x, hf)`` over all rows.
    """

    config: MLPConfig | RSSMConfig

    learns_from_jumps = True

    def __init__(self, config: MLPConfig | RSSMConfig) -> None:
        self.config = config
        self._rng = np.random.default_rng(config.seed)
        self._lw = slope_weights(config.window - 1)  # (W-1,) slope of the line in moves
        self.params: dict[str, np.ndarray] = self._init_params()
        self._m = {k: np.zeros_like(p) for k, p in self.params.items()}  # Adam first moments
        self._v = {k: np.zeros_like(p) for k, p in self.params.items()}  # Adam second moments
        self._t = 0  # Adam steps taken
        f = config.window - 1
        self._replay = Replay(config.replay_size, f)  # self-supervised rows
        self._jumps = Replay(config.replay_size, f)  # rows of kept displacement
        self._idx = np.zeros(0, np.int64)  # (S,) sampled coordinates of the current segment
        self._seg = np.zeros((0, 0), np.float32)  # (T, S) their snapshots since the restart
        self._seg_times = np.zeros(0)  # (T,) step times of those snapshots
        self._interval = 1.0  # steps between snapshots (from the history)
        self._pending: dict[str, Any] | None = None  # sample rows of the jump in flight
        self.last_loss = math.nan  # training loss of the last batch (for diagnostics)

    # ------------------------------------------------------------------ protocol
    @property
    def min_snapshots(self) -> int:
        """Snapshots needed before a forecast is possible."""
        return self.config.window

    def observe_snapshot(self, history: SnapshotHistory) -> None:
        """Record the sample of the new snapshot; train on earlier windows -> what followed."""
        if history.count == 0:
            return
        c, n = history.ring.shape
        slot = (history.head - 1) % c
        t = float(history.times[slot])
        self._interval = float(history.interval)
        if (history.count == 1 or self._seg_times.size == 0 or t <= self._seg_times[-1]
                or self._idx.size == 0 or self._idx[-1] >= n):
            self._new_segment(n)
        xp = kernels.get_array_module(history.ring)
        row = host(history.ring[slot][xp.asarray(self._idx)]).astype(np.float32)
        keep = self.config.window + self.config.max_lookahead
        self._seg = np.concatenate([self._seg.reshape(-1, self._idx.size), row[None]])[-keep:]
        self._seg_times = np.append(self._seg_times, t)[-keep:]
        self._add_examples()
        self._train(self.config.train_steps)

    def confidence(self, history: SnapshotHistory) -> float:
        """Share of the window's spread that its line explains (R^2, as the Linear predictor)."""
        slots, times = history.window(self.config.window)
        ss_total, ss_explained = kernels.trend_r2(history.ring[slots], times - times.mean())
        return float(ss_explained / ss_total) if ss_total > 0 else 0.0

    def forecast(self, history: SnapshotHistory, origin: Any, horizon: int, out: Any) -> None:
        """Write the displacement ``D`` from ``origin`` over ``horizon`` steps into ``out``."""
        win, times, x, scale, dist = self._window(history, horizon)
        u = self._velocity(x, dist / HORIZON_UNIT)
        out[...] = win[-1] - origin + u * scale * np.float32(dist)
        self._remember(history, win, times, x, scale, origin, dist)

    def learn_from_jump(self, actual: Any, taken: int, horizon: int, correct_steps: int) -> None:
        """Fit, on the sample, the velocity that would have produced the kept displacement.

        ``kept = actual - correct_steps * v`` with ``v`` the averaged trajectory's velocity
        before the jump (what the Correct steps would have added anyway); scaled up by
        ``horizon / taken`` when the jump was cut short.
        """
        p, self._pending = self._pending, None
        if p is None or taken <= 0:
            return
        xp = kernels.get_array_module(actual)
        a = host(actual[xp.asarray(p["idx"])]).astype(np.float64)
        kept = a - correct_steps * p["v"]
        target = (kept * (horizon / taken) - p["base"]) / (p["scale"] * p["dist"])
        self._jumps.push(p["x"], np.full(target.shape, p["dist"] / HORIZON_UNIT, np.float32),
                         target.astype(np.float32))
        self._train(self.config.train_steps)

    def state_dict(self) -> dict[str, Any]:
        """Weights, Adam moments, the sampled trajectory, the replay rows and the RNG."""
        return {
            "kind": type(self).__name__,
            "params": {k: p.copy() for k, p in self.params.items()},
            "adam_m": {k: p.copy() for k, p in self._m.items()},
            "adam_v": {k: p.copy() for k, p in self._v.items()},
            "adam_t": self._t,
            "rng": self._rng.bit_generator.state,
            "idx": self._idx.copy(),
            "seg": self._seg.copy(),
            "seg_times": self._seg_times.copy(),
            "interval": self._interval,
            "replay": self._replay.state(),
            "jumps": self._jumps.state(),
            "pending": None if self._pending is None else
            {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self._pending.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the weights' names and shapes are checked first."""
        if state.get("kind") != type(self).__name__:
            msg = (f"predictor state is for {state.get('kind')!r}, this predictor is "
                   f"{type(self).__name__!r} (was the predictor config changed?)")
            raise ValueError(msg)
        for group in ("params", "adam_m", "adam_v"):
            got = {k: tuple(np.shape(v)) for k, v in state[group].items()}
            want = {k: p.shape for k, p in self.params.items()}
            if got != want:
                msg = (f"predictor state {group!r} has shapes {got}, expected {want} "
                       f"(was the predictor config changed?)")
                raise ValueError(msg)
        self.params = {k: np.array(v, np.float64) for k, v in state["params"].items()}
        self._m = {k: np.array(v, np.float64) for k, v in state["adam_m"].items()}
        self._v = {k: np.array(v, np.float64) for k, v in state["adam_v"].items()}
        self._t = int(state["adam_t"])
        self._rng.bit_generator.state = state["rng"]
        self._idx = np.array(state["idx"], np.int64)
        self._seg = np.array(state["seg"], np.float32)
        self._seg_times = np.array(state["seg_times"], np.float64)
        self._interval = float(state["interval"])
        self._replay.load(state["replay"])
        self._jumps.load(state["jumps"])
        self._pending = None if state["pending"] is None else dict(state["pending"])

    # ------------------------------------------------------------------ shared machinery
    def _new_segment(self, n: int) -> None:
        """A new stretch of trajectory (after a restart): draw a new sample of coordinates."""
        s = min(self.config.sample_size, n)
        self._idx = np.sort(self._rng.choice(n, size=s, replace=False)).astype(np.int64)
        self._seg = np.zeros((0, s), np.float32)
        self._seg_times = np.zeros(0)

    def _add_examples(self) -> None:
        """Windows ending ``k`` snapshots back -> the newest snapshot, for every ``k``
        (``2 * batch_size`` rows in all, spread over the ``k`` and the sample)."""
        w = self.config.window
        t_count = self._seg.shape[0]
        ks = range(1, min(self.config.max_lookahead, t_count - w) + 1)
        if not ks:
            return
        per_k = max(1, math.ceil(2 * self.config.batch_size / len(ks)))
        newest = self._seg[-1]
        xs, hs, ys = [], [], []
        for k in ks:  # at most max_lookahead iterations, each over the sample
            j = t_count - 1 - k
            rows = self._rng.choice(self._idx.size, size=min(per_k, self._idx.size), replace=False)
            win = self._seg[j - w + 1 : j + 1, rows]
            x, scale = window_features(win, self._seg_times[j - w + 1 : j + 1], self._interval)
            steps = (self._seg_times[-1] - self._seg_times[j]) / self._interval
            xs.append(x)
            hs.append(np.full(rows.size, steps / HORIZON_UNIT, np.float32))
            ys.append((newest[rows] - self._seg[j, rows]) / (scale * steps))
        self._replay.push(np.concatenate(xs), np.concatenate(hs), np.concatenate(ys))

    def _batch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """A training batch of ``batch_size`` rows, ``jump_share`` of it from the jumps."""
        size = self.config.batch_size
        have_r, have_j = len(self._replay), len(self._jumps)
        if have_r + have_j == 0:
            return None
        n_j = min(have_j, round(self.config.jump_share * size)) if have_j else 0
        if have_r == 0:
            n_j = min(have_j, size)
        n_r = min(have_r, size - n_j)
        r = self._rng.integers(0, max(have_r, 1), n_r)
        j = self._rng.integers(0, max(have_j, 1), n_j)
        return (np.concatenate([self._replay.x[r], self._jumps.x[j]]),
                np.concatenate([self._replay.hf[r], self._jumps.hf[j]]),
                np.concatenate([self._replay.y[r], self._jumps.y[j]]))

    def _train(self, steps: int) -> None:
        for _ in range(steps):
            batch = self._batch()
            if batch is None:
                return
            grads, loss = self._grads(*batch)
            if not math.isfinite(loss):
                return  # a bad batch never reaches the weights
            self._t += 1
            adam_step(self.params, grads, self._m, self._v, self._t, self.config.learning_rate)
            self.last_loss = loss

    def _window(self, history: SnapshotHistory, horizon: int) -> tuple[Any, np.ndarray, Any, Any, float]:
        slots, times = history.window(self.config.window)
        win = history.ring[slots]
        self._interval = float(history.interval)
        x, scale = window_features(win, times, self._interval)
        dist = (history.clock + horizon - float(times[-1]) + history.lag) / self._interval
        return win, times, x, scale, float(max(dist, 1e-6))

    def _remember(self, history: SnapshotHistory, win: Any, times: np.ndarray, x: Any,
                  scale: Any, origin: Any, dist: float) -> None:
        """Keep the sample's inputs of this jump until it is judged."""
        n = win.shape[1]
        idx = self._idx if self._idx.size and self._idx[-1] < n else np.sort(
            self._rng.choice(n, size=min(self.config.sample_size, n), replace=False))
        xp = kernels.get_array_module(win)
        ix = xp.asarray(idx)
        step = max(float(times[-1] - times[-2]), 1.0)
        self._pending = {
            "idx": idx.astype(np.int64),
            "x": host(x[ix]).astype(np.float32),
            "scale": host(scale[ix]).astype(np.float64),
            "base": host((win[-1] - origin)[ix]).astype(np.float64),
            "v": host((win[-1] - win[-2])[ix]).astype(np.float64) / step,
            "dist": dist,
        }

    # ------------------------------------------------------------------ per model
    def _init_params(self) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _grads(self, x: np.ndarray, hf: np.ndarray, y: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
        raise NotImplementedError  # pragma: no cover - abstract

    def _velocity(self, x: Any, hf: float) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class MLPPredictor(OnlineNowcaster):
    """Per-parameter MLP over the normalised window and the horizon, weights shared by all
    parameters (WNN's shape); velocity = the window's slope + the network's correction.

    Args:
        config: the :class:`~hpcore.config.MLPConfig`.

    Example:
        >>> import numpy as np
        >>> from hpcore.config import MLPConfig
        >>> from hpcore.history import SnapshotHistory
from hpcore.predictors.nowcast_data import (
    TARGET_CLIP,
    Replay,
    adam_step,
    host,
    slope_weights,
    window_features,
)
        >>> theta = np.zeros(3, np.float32)
        >>> h = SnapshotHistory(theta, 8, 1, None)
        >>> p = MLPPredictor(MLPConfig(window=4, sample_size=3))
        >>> for t in range(1, 9):
        ...     theta[:] = [t, -t, 0.0]
        ...     _ = h.observe(theta)
        ...     p.observe_snapshot(h)
        >>> out = np.zeros(3, np.float32)
        >>> p.forecast(h, theta, 2, out)
        >>> out.round(1).tolist()
        [2.0, -2.0, 0.0]
    """

    def __init__(self, config: MLPConfig) -> None:
        super().__init__(config)

    def _init_params(self) -> dict[str, np.ndarray]:
        w = kernels.init_mlp(self.config.window, self.config.hidden_dim, self._rng)
        # Zero output weights: before any training the forecast is the window's line.
        return {"w1": w.w1, "b1": w.b1, "w2": np.zeros_like(w.w2), "b2": w.b2}

    def _weights(self) -> kernels.MLPWeights:
        p = self.params
        return kernels.MLPWeights(p["w1"], p["b1"], p["w2"], p["b2"])

    @staticmethod
    def _inputs(x: Any, hf: Any) -> Any:
        xp = kernels.get_array_module(x)
        col = xp.broadcast_to(xp.asarray(hf, dtype=xp.float32).reshape(-1, 1), (x.shape[0], 1))
        return xp.ascontiguousarray(xp.concatenate([x, col], axis=1))

    def _velocity(self, x: Any, hf: Any) -> Any:
        xp = kernels.get_array_module(x)
        y = kernels.mlp_forward(self._inputs(x, hf), self._weights())
        return y + x @ xp.asarray(self._lw, dtype=xp.float32)

    def _grads(self, x: np.ndarray, hf: np.ndarray, y: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
        inp = self._inputs(x, hf)
        w = self._weights()
        pred = kernels.mlp_forward(inp, w).astype(np.float64) + x @ self._lw
        err = pred - y
        g = kernels.mlp_backward(inp, np.arange(y.shape[0]), err / y.shape[0], w)
        return dict(zip(("w1", "b1", "w2", "b2"), g, strict=True)), float(0.5 * np.mean(err * err))
