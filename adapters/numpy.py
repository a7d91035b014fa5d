"""NumPy adapter: the hybrid trainer for models that are a flat float32 vector and a function.

Example:
    >>> import numpy as np
    >>> from hpcore.adapters.numpy import HybridTrainer
    >>> from hpcore.optim import SGD
    >>> params = np.zeros(2, np.float32)
    >>> def loss_and_grad(p, batch):
    ...     r = p - batch
    ...     return float(r @ r), 2 * r
    >>> trainer = HybridTrainer(params, loss_and_grad, SGD(lr=0.1))
    >>> result = trainer.step(np.ones(2, np.float32))
    >>> result.phase.value, round(result.loss, 3)
    ('warmup', 2.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from hpcore.config import HybridTrainerConfig
from hpcore.engine import HybridEngine
from hpcore.optim import FlatOptimizer
from hpcore.port import FullStepOutput
from hpcore.trainer import TrainerBase

__all__ = ["HybridTrainer", "NumpyPort"]

LossAndGrad = Callable[[np.ndarray, Any], tuple[float, np.ndarray]]
LossFn = Callable[[np.ndarray, Any], float]


def _scalar_loss(value: Any, where: str) -> float:
    if isinstance(value, (float, np.floating)):  # the common case, without an array round trip
        return float(value)
    arr = np.asarray(value)
    if arr.size != 1:
        msg = f"{where} must return a scalar loss (got an array of shape {arr.shape})"
        raise ValueError(msg)
    return float(arr.reshape(()))


class NumpyPort:
    """The engine's port over a user's parameter vector, gradient function and optimizer."""

    forward_costs_backward: bool

    def __init__(
        self,
        params: np.ndarray,
        loss_and_grad: LossAndGrad,
        optimizer: FlatOptimizer,
        loss_fn: LossFn | None,
        group_offsets: np.ndarray | None = None,
    ) -> None:
        self.params = params
        self.group_offsets = group_offsets
        self.loss_and_grad = loss_and_grad
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.forward_costs_backward = loss_fn is None

    def flat_params(self) -> np.ndarray:
        return self.params

    def full_step(self, batch: Any) -> FullStepOutput:
        out = self.loss_and_grad(self.params, batch)
        if not (isinstance(out, tuple) and len(out) == 2):
            msg = f"loss_and_grad must return (loss, grad) (got {type(out).__name__})"
            raise ValueError(msg)
        loss = _scalar_loss(out[0], "loss_and_grad")
        grad = np.asarray(out[1])
        if grad.shape != self.params.shape:
            msg = (
                f"loss_and_grad returned a gradient of shape {grad.shape}; "
                f"it must match params {self.params.shape}"
            )
            raise ValueError(msg)
        sq = float(np.dot(grad, grad))
        if not math.isfinite(sq):  # a non-finite entry, or only a float32 overflow of the sum?
            sq = float(np.einsum("i,i->", grad, grad, dtype=np.float64))
        grad_norm = math.sqrt(sq) if math.isfinite(sq) else math.inf
        self._update(grad, math.isfinite(loss) and math.isfinite(sq))
        return FullStepOutput(loss, grad_norm)

    def _update(self, grad: np.ndarray, finite: bool) -> None:
        """The optimizer's step, or only its count (never feed it a non-finite gradient)."""
        if finite:
            self.optimizer.step(self.params, grad.astype(np.float32, copy=False))
        else:
            self.optimizer.skip_step()

    def lean_step(self, batch: Any) -> float:
        """A full step for a dormant engine: the loss only, no checks of the gradient (the
        engine's guarded steps between have checked its shape and norm)."""
        loss, grad = self.loss_and_grad(self.params, batch)
        loss = float(loss)
        self._update(grad, math.isfinite(loss))
        return loss

    def forward_loss(self, batch: Any) -> float:
        if self.loss_fn is not None:
            return _scalar_loss(self.loss_fn(self.params, batch), "loss_fn")
        return _scalar_loss(self.loss_and_grad(self.params, batch)[0], "loss_and_grad")

    def commit_params(self) -> None:
        return None  # the engine writes the user's array in place

    def optimizer_state(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        """Restore a saved state for a rollback: the moments come back, the schedule keeps
        its position (it counts every step taken)."""
        self.optimizer.load_state_dict({**state, "schedule_step": self.optimizer.schedule_step})

    def on_predicted_step(self) -> None:
        self.optimizer.skip_step()

    def all_reduce_mean(self, x: float) -> float:
        return x


class HybridTrainer(TrainerBase):
    """Hybrid trainer for a NumPy model: ``params`` is trained in place.

    Args:
        params: 1-D float32 array, C-contiguous and writeable; the engine moves it in place.
        loss_and_grad: ``(params, batch) -> (loss, grad)``, ``grad`` shaped like ``params``.
        optimizer: an :class:`hpcore.optim.SGD` or :class:`hpcore.optim.Adam`.
        config: the engine's configuration (defaults when omitted).
        loss_fn: ``(params, batch) -> loss`` for forward-only checks; without it
            ``loss_and_grad`` serves and the call is counted as a backward pass.
        group_sizes: sizes of consecutive parameter groups (e.g. one per layer tensor),
            summing to ``params.size``; the residual store corrects each group's forecast
            on its own. One group when omitted.

    Raises:
        ValueError: ``params`` is not a non-empty, writeable, contiguous 1-D float32 array.
    """

    def __init__(
        self,
        params: np.ndarray,
        loss_and_grad: LossAndGrad,
        optimizer: FlatOptimizer,
        config: HybridTrainerConfig | None = None,
        loss_fn: LossFn | None = None,
        group_sizes: list[int] | None = None,
    ) -> None:
        if not isinstance(params, np.ndarray):
            msg = f"params must be a NumPy array (got {type(params).__name__})"
            raise ValueError(msg)
        if params.ndim != 1 or params.dtype != np.float32:
            msg = (
                f"params must be a 1-D float32 array (got shape {params.shape}, "
                f"dtype {params.dtype}); flatten your model with np.concatenate(...).astype(np.float32)"
            )
            raise ValueError(msg)
        if params.size == 0:
            msg = "params is empty: there is nothing to train"
            raise ValueError(msg)
        if not (params.flags.c_contiguous and params.flags.writeable):
            msg = "params must be C-contiguous and writeable: it is trained in place"
            raise ValueError(msg)
        if not callable(loss_and_grad):
            msg = f"loss_and_grad must be callable (got {type(loss_and_grad).__name__})"
            raise ValueError(msg)
        if not isinstance(optimizer, FlatOptimizer):
            msg = f"optimizer must be an hpcore.optim optimizer (got {type(optimizer).__name__})"
            raise ValueError(msg)
        if config is None:
            config = HybridTrainerConfig()
        offsets = None
        if group_sizes is not None:
            sizes = [int(n) for n in group_sizes]
            if any(n <= 0 for n in sizes) or sum(sizes) != params.size:
                msg = (f"group_sizes must be positive and sum to params.size={params.size} "
                       f"(got {sizes})")
                raise ValueError(msg)
            offsets = np.concatenate([[0], np.cumsum(sizes)])
        self._port = NumpyPort(params, loss_and_grad, optimizer, loss_fn, offsets)
        self._engine = HybridEngine(self._port, config)

    @property
    def params(self) -> np.ndarray:
        """The trained parameter vector (the array passed in, updated in place)."""
        return self._port.params

    def state_dict(self) -> dict[str, Any]:
        """Parameters, optimizer and engine state (copies), for checkpoints and resume."""
        return {
            "params": self.params.copy(),
            "optimizer": self._port.optimizer.state_dict(),
            "engine": self._engine.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the sizes are checked before anything changes."""
        params = np.asarray(state["params"])
        if params.shape != self.params.shape or params.dtype != self.params.dtype:
            msg = (f"checkpoint holds params {params.shape} {params.dtype}, this trainer has "
                   f"{self.params.shape} {self.params.dtype}")
            raise ValueError(msg)
        if state["engine"]["size"] != self.params.size:
            msg = f"checkpoint engine state is for {state['engine']['size']} parameters"
            raise ValueError(msg)
        self._engine.load_state_dict(state["engine"])
        self._port.optimizer.load_state_dict(state["optimizer"])
        self.params[...] = params

    _checkpoint_state = state_dict
    _load_checkpoint_state = load_state_dict

