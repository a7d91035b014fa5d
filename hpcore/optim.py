"""Optimizers on flat float32 vectors, for the NumPy adapter (PyTorch's update rules).

The learning rate is a number or a schedule ``lr(step) -> float``; the schedule's step
advances on every training step, predicted ones included (DESIGN section 4), while the
optimizer state (momentum, Adam moments and bias correction) advances on full steps only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["SGD", "Adam", "FlatOptimizer", "cosine_schedule"]

LearningRate = float | Callable[[int], float]


def _check_lr(lr: LearningRate) -> LearningRate:
    if callable(lr):
        return lr
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        msg = f"'lr' must be a positive number or a callable step -> lr (got {lr!r})"
        raise ValueError(msg)
    return float(lr)


def _check_nonneg(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        msg = f"'{name}' must be a number >= 0 (got {value!r})"
        raise ValueError(msg)
    return float(value)


def cosine_schedule(base_lr: float, total_steps: int, min_lr: float = 0.0) -> Callable[[int], float]:
    """Cosine decay from ``base_lr`` to ``min_lr`` over ``total_steps`` steps."""
    if total_steps < 1:
        msg = f"'total_steps' must be >= 1 (got {total_steps})"
        raise ValueError(msg)

    def lr(step: int) -> float:
        t = min(step, total_steps) / total_steps
        return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + np.cos(np.pi * t))

    return lr


def _check_buffer(name: str, value: Any, size: int) -> None:
    if value is None:
        return
    a = value if isinstance(value, np.ndarray) else None
    if a is None or a.shape != (size,) or a.dtype != np.float32 or not np.all(np.isfinite(a)):
        got = (f"{a.dtype} of shape {a.shape}" if a is not None else type(value).__name__)
        msg = (f"optimizer state {name!r} must be None or a finite float32 array of shape "
               f"({size},) (got {got})")
        raise ValueError(msg)


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        msg = f"optimizer state {name!r} must be an int >= 0 (got {value!r})"
        raise ValueError(msg)


class FlatOptimizer:
    """Base class: learning-rate bookkeeping and the state-dict contract."""

    def __init__(self, lr: LearningRate, weight_decay: float) -> None:
        self._lr = _check_lr(lr)
        self.weight_decay = _check_nonneg("weight_decay", weight_decay)
        self.schedule_step = 0  # training steps taken, predicted ones included

    @property
    def lr(self) -> float:
        """The learning rate for the current step."""
        return float(self._lr(self.schedule_step)) if callable(self._lr) else self._lr

    def step(self, params: np.ndarray, grad: np.ndarray) -> None:
        """Update ``params`` in place from ``grad`` and advance the schedule."""
        self._update(params, grad)
        self.schedule_step += 1

    def skip_step(self) -> None:
        """A predicted step: the schedule advances, the state does not."""
        self.schedule_step += 1

    def advance_count(self, steps: int) -> None:
        """``steps`` predicted steps count as taken for the state's own step counter (Adam's
        bias correction); a state without one (SGD's momentum) is left alone."""

    def _update(self, params: np.ndarray, grad: np.ndarray) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Copies of the state arrays and counters."""
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (arrays are copied in)."""
        raise NotImplementedError

    _BUFFERS: tuple[str, ...] = ()
    _COUNTS: tuple[str, ...] = ("schedule_step",)

    def check_state(self, state: Any, size: int) -> None:
        """Refuse (``ValueError``) a state that :meth:`state_dict` of an optimizer of ``size``
        parameters could not have produced: other keys, wrong shapes or dtypes, non-finite
        moments, negative counts."""
        keys = {*self._BUFFERS, *self._COUNTS}
        if not isinstance(state, dict) or set(state) != keys:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            msg = f"{type(self).__name__} state must have the keys {sorted(keys)} (got {got})"
            raise ValueError(msg)
        for name in self._BUFFERS:
            _check_buffer(name, state[name], size)
        for name in self._COUNTS:
            _check_count(name, state[name])


class SGD(FlatOptimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``.

    Example:
        >>> import numpy as np
        >>> from hpcore.optim import SGD
        >>> p = np.ones(3, np.float32)
        >>> SGD(lr=0.5).step(p, np.ones(3, np.float32))
        >>> p.tolist()
        [0.5, 0.5, 0.5]
    """

    def __init__(
        self,
        lr: LearningRate,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr, weight_decay)
        self.momentum = _check_nonneg("momentum", momentum)
        if nesterov and self.momentum == 0:
            msg = "'nesterov' needs 'momentum' > 0"
            raise ValueError(msg)
        self.nesterov = bool(nesterov)
        self._buf: np.ndarray | None = None  # (N,) float32 momentum buffer

    def _update(self, params: np.ndarray, grad: np.ndarray) -> None:
        g = grad + self.weight_decay * params if self.weight_decay else grad
        if self.momentum:
            if self._buf is None:
                self._buf = np.array(g, dtype=params.dtype, copy=True)
            else:
                self._buf *= self.momentum
                self._buf += g
            g = g + self.momentum * self._buf if self.nesterov else self._buf
        params -= np.asarray(self.lr * g, dtype=params.dtype)

    _BUFFERS = ("momentum_buffer",)

    def state_dict(self) -> dict[str, Any]:
        buf = None if self._buf is None else self._buf.copy()
        return {"momentum_buffer": buf, "schedule_step": self.schedule_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        buf = state["momentum_buffer"]
        self._buf = None if buf is None else np.array(buf, copy=True)
        self.schedule_step = int(state["schedule_step"])


class Adam(FlatOptimizer):
    """Adam with bias correction and L2 weight decay, as ``torch.optim.Adam``.

    References:
        Kingma and Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """

    def __init__(
        self,
        lr: LearningRate,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr, weight_decay)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            msg = f"'betas' must be two numbers in [0, 1) (got {betas!r})"
            raise ValueError(msg)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = _check_nonneg("eps", eps)
        self._m: np.ndarray | None = None  # (N,) first moment
        self._v: np.ndarray | None = None  # (N,) second moment
        self._t = 0  # full steps taken (bias correction)

    def _update(self, params: np.ndarray, grad: np.ndarray) -> None:
        b1, b2 = self.betas
        g = grad + self.weight_decay * params if self.weight_decay else grad
        if self._m is None or self._v is None:
            self._m = np.zeros_like(params)
            self._v = np.zeros_like(params)
        self._t += 1
        self._m *= b1
        self._m += (1 - b1) * g
        self._v *= b2
        self._v += (1 - b2) * (g * g)
        step_size = self.lr / (1 - b1**self._t)
        denom = np.sqrt(self._v / (1 - b2**self._t)) + self.eps
        params -= np.asarray(step_size * self._m / denom, dtype=params.dtype)

    def advance_count(self, steps: int) -> None:
        if self._t:  # before the first full step there are no moments to correct
            self._t += steps

    _BUFFERS = ("exp_avg", "exp_avg_sq")
    _COUNTS = ("t", "schedule_step")

    def state_dict(self) -> dict[str, Any]:
        return {
            "exp_avg": None if self._m is None else self._m.copy(),
            "exp_avg_sq": None if self._v is None else self._v.copy(),
            "t": self._t,
            "schedule_step": self.schedule_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        m, v = state["exp_avg"], state["exp_avg_sq"]
        self._m = None if m is None else np.array(m, copy=True)
        self._v = None if v is None else np.array(v, copy=True)
        self._t = int(state["t"])
        self.schedule_step = int(state["schedule_step"])
