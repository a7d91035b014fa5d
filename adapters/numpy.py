"""NumPy adapter: the hybrid optimizer around an :mod:`hpcore.optim` optimizer and a flat vector.

The loop stays yours: compute the loss and gradient when ``opt.need_grads``, pass them to
``opt.step(grad, loss)``; otherwise call ``opt.step()`` (a predicted step).

Example:
    >>> import numpy as np
    >>> from hpcore.adapters.numpy import HybridOptimizer
    >>> from hpcore.optim import SGD
    >>> params = np.zeros(2, np.float32)
    >>> opt = HybridOptimizer(params, SGD(lr=0.1))
    >>> for _ in range(3):
    ...     if opt.need_grads:
    ...         r = params - 1.0
    ...         result = opt.step(2 * r, float(r @ r))
    ...     else:
    ...         result = opt.step()
    >>> params.round(3).tolist()
    [0.488, 0.488]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from hpcore.config import HybridTrainerConfig, config_or_default
from hpcore.core import HybridCore, group_offsets
from hpcore.optim import FlatOptimizer
from hpcore.types import StepResult
from hpcore.wrapper import WrapperBase

__all__ = ["HybridOptimizer", "HybridTrainer", "HybridTrainerConfig"]

LossAndGrad = Callable[[np.ndarray, Any], tuple[float, np.ndarray]]


def _scalar_loss(value: Any, where: str) -> float:
    if isinstance(value, (float, np.floating, int)) and not isinstance(value, bool):
        return float(value)
    arr = np.asarray(value)
    if arr.size != 1 or not np.issubdtype(arr.dtype, np.number):
        msg = f"{where} must be a scalar number (got {type(value).__name__} of shape {arr.shape})"
        raise ValueError(msg)
    return float(arr.reshape(()))


def _check_params(params: Any) -> np.ndarray:
    if not isinstance(params, np.ndarray):
        msg = f"params must be a NumPy array (got {type(params).__name__})"
        raise ValueError(msg)
    if params.ndim != 1 or params.dtype != np.float32:
        msg = (f"params must be a 1-D float32 array (got shape {params.shape}, dtype "
               f"{params.dtype}); flatten your model with np.concatenate(...).astype(np.float32)")
        raise ValueError(msg)
    if params.size == 0:
        msg = "params is empty: there is nothing to train"
        raise ValueError(msg)
    if not (params.flags.c_contiguous and params.flags.writeable):
        msg = "params must be C-contiguous and writeable: it is trained in place"
        raise ValueError(msg)
    return params


class _Port:
    """The core's view of the optimizer: its state for rollbacks; params are shared."""

    def __init__(self, optimizer: FlatOptimizer) -> None:
        self.optimizer = optimizer

    def optimizer_state(self, reuse: Any = None) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        """The moments come back; the schedule keeps its position (it counts every step)."""
        self.optimizer.load_state_dict({**state, "schedule_step": self.optimizer.schedule_step})

    def advance_steps(self, steps: int) -> None:
        self.optimizer.advance_count(steps)

    def commit_params(self) -> None:
        return None  # the core moves the user's array in place

    def sync_params(self) -> None:
        return None

    def all_reduce_mean(self, values: tuple[float, ...]) -> tuple[float, ...]:
        return values


class HybridOptimizer(WrapperBase):
    """Some steps of ``optimizer`` are predicted instead of computed; ``params`` moves in place.

    Args:
        params: 1-D float32 array, C-contiguous and writeable (the model's flat parameters).
        optimizer: an :class:`hpcore.optim.SGD` or :class:`hpcore.optim.Adam`; its learning
            rate schedule advances on every step, predicted ones included.
        config: the controller's configuration (defaults when omitted).
        probe: optional zero-argument callable returning a forward-only loss on a fixed
            probe set at the current ``params``; called only at checks and judgements.
        group_sizes: sizes of consecutive parameter groups (e.g. one per layer), summing to
            ``params.size``; the residual store corrects each group on its own.

    Raises:
        ValueError: bad ``params``, optimizer, config or group sizes.
    """

    def __init__(self, params: np.ndarray, optimizer: FlatOptimizer,
                 config: HybridTrainerConfig | None = None, *,
                 probe: Callable[[], float] | None = None,
                 group_sizes: list[int] | None = None) -> None:
        self.params = _check_params(params)
        if not isinstance(optimizer, FlatOptimizer):
            msg = f"optimizer must be an hpcore.optim optimizer (got {type(optimizer).__name__})"
            raise ValueError(msg)
        config = config_or_default(config)
        offsets = None
        if group_sizes is not None:
            sizes = [int(n) for n in group_sizes]
            if any(n <= 0 for n in sizes) or sum(sizes) != params.size:
                msg = (f"group_sizes must be positive and sum to params.size={params.size} "
                       f"(got {sizes})")
                raise ValueError(msg)
            offsets = group_offsets(sizes)
        self.optimizer = optimizer
        self._core = HybridCore(params, _Port(optimizer), config, probe=probe, offsets=offsets)

    def step(self, grad: np.ndarray | None = None, loss: Any = None) -> StepResult:
        """One training step: with ``grad`` (and ``loss``) after your backward when
        :attr:`need_grads`, bare on a predicted step.

        A non-finite loss or gradient is never fed to the optimizer: the step counts, the
        schedule advances, and a divergence event is recorded.
        """
        if not self._core.need_grads:
            if grad is not None:
                msg = "this step is predicted (need_grads is False): call step() without a gradient"
                raise RuntimeError(msg)
            result = self._core.predicted()
            self.optimizer.skip_step()
            self._after_step()
            return result
        if grad is None:
            msg = "this step needs gradients (need_grads is True): call step(grad, loss)"
            raise RuntimeError(msg)
        g = np.asarray(grad)
        if g.shape != self.params.shape:
            msg = f"grad has shape {g.shape}; it must match params {self.params.shape}"
            raise ValueError(msg)
        value = math.nan if loss is None else _scalar_loss(loss, "loss")
        with np.errstate(over="ignore", invalid="ignore"):
            sq = float(np.dot(g, g))
        if not math.isfinite(sq):  # a non-finite entry, or only a float32 overflow of the sum?
            sq = float(np.einsum("i,i->", g, g, dtype=np.float64))
        bad = not (math.isfinite(sq) and (loss is None or math.isfinite(value)))
        self._core.before_full()
        lr = self.optimizer.lr  # the rate this step uses (the schedule moves on with it)
        if bad:
            self.optimizer.skip_step()
        else:
            self.optimizer.step(self.params, g.astype(np.float32, copy=False))
        result = self._core.after_full(value, math.sqrt(sq) if math.isfinite(sq) else math.inf,
                                       bad_step=bad, lr=lr)
        self._after_step()
        return result

    def state_dict(self) -> dict[str, Any]:
        """Parameters, optimizer and hybrid state (copies): everything needed to resume."""
        return {"params": self.params.copy(), "optimizer": self.optimizer.state_dict(),
                "hybrid": self._core.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; a refused state (``ValueError``) changes nothing."""
        if not isinstance(state, dict) or set(state) != {"params", "optimizer", "hybrid"}:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            msg = f"not a HybridOptimizer state dict (keys {got}; expected hybrid, optimizer, params)"
            raise ValueError(msg)
        params = np.asarray(state["params"])
        if params.shape != self.params.shape or params.dtype != self.params.dtype:
            msg = (f"state holds params {params.shape} {params.dtype}, this optimizer has "
                   f"{self.params.shape} {self.params.dtype}")
            raise ValueError(msg)
        if not np.all(np.isfinite(params)):
            msg = "state holds non-finite parameters"
            raise ValueError(msg)
        self.optimizer.check_state(state["optimizer"], self.params.size)
        hybrid = state["hybrid"]
        if isinstance(hybrid, dict) and "saved_optimizer_state" in hybrid:
            self.optimizer.check_state(hybrid["saved_optimizer_state"], self.params.size)
        saved_opt = self.optimizer.state_dict()
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self._core.load_state_dict(state["hybrid"])
        except Exception as exc:
            self.optimizer.load_state_dict(saved_opt)
            if isinstance(exc, ValueError):
                raise
            msg = f"the state's optimizer part could not be loaded ({exc!r}); nothing was changed"
            raise ValueError(msg) from exc
        self.params[...] = params


class HybridTrainer(WrapperBase):
    """Convenience over :class:`HybridOptimizer`: ``step(batch)`` runs the whole step.

    Args:
        params: the flat float32 parameters (trained in place).
        loss_and_grad: ``(params, batch) -> (loss, grad)``.
        optimizer: an :mod:`hpcore.optim` optimizer.
        config: the controller's configuration.
        probe: as in :class:`HybridOptimizer`.
        group_sizes: as in :class:`HybridOptimizer`.
    """

    def __init__(self, params: np.ndarray, loss_and_grad: LossAndGrad, optimizer: FlatOptimizer,
                 config: HybridTrainerConfig | None = None, *,
                 probe: Callable[[], float] | None = None,
                 group_sizes: list[int] | None = None) -> None:
        if not callable(loss_and_grad):
            msg = f"loss_and_grad must be callable (got {type(loss_and_grad).__name__})"
            raise ValueError(msg)
        self.optimizer = HybridOptimizer(params, optimizer, config, probe=probe,
                                         group_sizes=group_sizes)
        self.loss_and_grad = loss_and_grad
        self._core = self.optimizer._core
        self.state_dict = self.optimizer.state_dict
        self.load_state_dict = self.optimizer.load_state_dict

    @property
    def params(self) -> np.ndarray:
        """The trained parameter vector (the array passed in, updated in place)."""
        return self.optimizer.params

    def step(self, batch: Any) -> StepResult:
        """One training step on ``batch`` (a predicted step does not use it)."""
        if not self.optimizer.need_grads:
            return self.optimizer.step()
        out = self.loss_and_grad(self.params, batch)
        if not (isinstance(out, tuple) and len(out) == 2):
            msg = f"loss_and_grad must return (loss, grad) (got {type(out).__name__})"
            raise ValueError(msg)
        return self.optimizer.step(out[1], out[0])
