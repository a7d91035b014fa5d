"""PyTorch adapter: :class:`HybridOptimizer` wraps your optimizer; your loop stays yours.

Example:
    >>> import torch
    >>> from hpcore.adapters.torch import HybridOptimizer
    >>> model = torch.nn.Linear(2, 1)
    >>> opt = HybridOptimizer(torch.optim.SGD(model.parameters(), lr=0.1))
    >>> x, y = torch.ones(4, 2), torch.zeros(4, 1)
    >>> for _ in range(3):
    ...     if opt.need_grads:
    ...         loss = torch.nn.functional.mse_loss(model(x), y)
    ...         loss.backward()
    ...         opt.step(loss)
    ...     else:
    ...         opt.step()
    ...     opt.zero_grad()
    >>> opt.statistics().backward_passes
    3
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only without torch
    msg = ('hpcore.adapters.torch needs PyTorch; install it with '
           'pip install "hybrid-predict-trainer[torch]"')
    raise ImportError(msg) from exc

from hpcore.adapters._torch_flat import FlatParams, optimizer_params, to_numpy_tree, to_torch_tree
from hpcore.adapters._torch_state import check_torch_state, copy_state
from hpcore.config import HybridTrainerConfig, config_or_default
from hpcore.core import HybridCore, group_offsets
from hpcore.types import StepResult
from hpcore.wrapper import WrapperBase

__all__ = ["HybridOptimizer", "HybridTrainer", "HybridTrainerConfig"]

_KEEP = ("saved_optimizer_state",)  # subtrees of the core's state that stay torch objects


class _Port:
    """The core's view of the inner optimizer and of torch.distributed."""

    def __init__(self, optimizer: torch.optim.Optimizer, flat: FlatParams) -> None:
        self.optimizer = optimizer
        self.flat = flat

    def optimizer_state(self, reuse: dict[str, Any] | None = None) -> dict[str, Any]:
        """A copy of the optimizer's state, written into ``reuse`` (an earlier copy of the
        same layout) where it can: no second copy is ever alive at once."""
        live = self.optimizer.state_dict()
        if reuse is not None and copy_state(reuse["state"], live["state"]):
            return reuse
        return copy.deepcopy(live)

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        """The moments come back (copied into the live tensors where the layout matches);
        the hyperparameters (``lr``...) stay as the user's scheduler has set them."""
        if copy_state(self.optimizer.state_dict()["state"], state["state"]):
            return
        hyper = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(copy.deepcopy(state))
        for group, now in zip(self.optimizer.param_groups, hyper, strict=True):
            group.update(now)

    def advance_steps(self, steps: int) -> None:
        """Every parameter's ``step`` counter (Adam's, AdamW's bias correction) moves on."""
        for st in self.optimizer.state.values():
            step = st.get("step")
            if isinstance(step, torch.Tensor):
                step.add_(steps)
            elif isinstance(step, (int, float)):
                st["step"] = step + steps

    def commit_params(self) -> None:
        self.flat.commit()

    def sync_params(self) -> None:
        return None  # the buffer is the parameters (the master copy follows every step)

    def all_reduce_mean(self, values: tuple[float, ...]) -> tuple[float, ...]:
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()):
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.flat.flat.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return tuple(float(v) / dist.get_world_size() for v in t)


def _loss_value(loss: Any) -> float:
    if isinstance(loss, torch.Tensor):
        if loss.numel() != 1:
            msg = f"loss must be a scalar (got a tensor of shape {tuple(loss.shape)}); reduce it"
            raise ValueError(msg)
        return float(loss.detach())
    if isinstance(loss, (int, float)) and not isinstance(loss, bool):
        return float(loss)
    msg = f"loss must be a scalar tensor or a number (got {type(loss).__name__})"
    raise TypeError(msg)


def _group_keys(state: dict[str, Any]) -> list[tuple[int, frozenset[str]]]:
    return [(len(g["params"]), frozenset(k for k in g if k != "params"))
            for g in state["param_groups"]]


class HybridOptimizer(torch.optim.Optimizer, WrapperBase):
    """A ``torch.optim.Optimizer`` that predicts some of ``optimizer``'s steps.

    It shares the inner optimizer's ``param_groups`` and ``state``, so LR schedulers,
    gradient clipping, ``GradScaler`` and checkpoint code accept it. Step it with the loss
    after your backward when :attr:`need_grads`, bare otherwise.

    Args:
        optimizer: any ``torch.optim.Optimizer``; its trainable parameters are moved into
            one flat buffer (``p.data`` becomes a view), so wrap after ``model.to(device)``.
        config: the controller's configuration (defaults when omitted).
        probe: optional zero-argument callable returning a forward-only loss on a fixed
            probe set; called only at checks and judgements, under ``torch.no_grad()``.

    Raises:
        ValueError: no trainable parameters, mixed dtypes or devices, a bad config.
        TypeError: ``optimizer`` is not a torch optimizer, or is a HybridOptimizer.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, config: HybridTrainerConfig | None = None,
                 *, probe: Callable[[], Any] | None = None) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer) or isinstance(optimizer, HybridOptimizer):
            msg = f"optimizer must be a torch.optim.Optimizer (got {type(optimizer).__name__})"
            raise TypeError(msg)
        config = config_or_default(config)
        params = optimizer_params(optimizer)
        torch.optim.Optimizer.__init__(self, params, dict(optimizer.defaults))
        self.param_groups = optimizer.param_groups  # shared: schedulers set lr on the inner
        self.state = optimizer.state
        self.optimizer = optimizer
        self._flat = FlatParams(params)
        self._port = _Port(optimizer, self._flat)
        self._user_probe = probe
        self._core = HybridCore(self._flat.theta, self._port, config,
                                probe=None if probe is None else self._probe,
                                offsets=group_offsets(self._flat.sizes))

    @property
    def flat_params(self) -> torch.Tensor:
        """The flat buffer every trainable parameter is a view of."""
        return self._flat.flat

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if hasattr(self, "_core"):
            msg = ("the hybrid optimizer's flat layout is fixed at construction: add the "
                   "parameter group to the inner optimizer before wrapping it")
            raise RuntimeError(msg)
        super().add_param_group(param_group)

    def _probe(self) -> float:
        with torch.no_grad():
            return _loss_value(self._user_probe())

    def zero_grad(self, set_to_none: bool = True) -> None:
        """The inner optimizer's ``zero_grad``."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self, loss: Any = None, closure: Callable[[], Any] | None = None) -> StepResult:
        """One training step.

        When :attr:`need_grads`: after your backward, with the loss (a tensor, read only where
        a decision needs it, and on CPU every step to keep non-finite ones out of the
        optimizer), or with a ``closure`` that computes it and runs the backward. Otherwise
        bare: the parameters move along the jump.
        """
        if not self._core.need_grads:
            if loss is not None or closure is not None:
                msg = ("this step is predicted (need_grads is False): call step() without a "
                       "loss, and skip the forward and backward")
                raise RuntimeError(msg)
            result = self._core.predicted()
            self._after_step()
            return result
        observed = self._core.reads_loss
        self._flat.check_layout(every=observed)
        if closure is not None:
            if loss is not None:
                msg = "pass either a loss or a closure to step(), not both"
                raise ValueError(msg)
            with torch.enable_grad():
                loss = closure()
        if not any(p.grad is not None for p in self._flat.params):
            msg = "no gradients: run loss.backward() before step(loss) when need_grads is True"
            raise RuntimeError(msg)
        # The loss is read where a decision needs it, and on CPU every step (free there) to
        # keep a non-finite one out of the optimizer; the gradients' norm where the core uses
        # it (a non-finite gradient elsewhere shows in the next loss, or in the parameters at
        # the next check, which restores the last good state).
        read = self._flat.on_cpu or observed
        value = _loss_value(loss) if (read and loss is not None) else math.nan
        grad_norm = self._flat.grad_norm() if self._core.reads_grad_norm else math.nan
        bad = (read and loss is not None and not math.isfinite(value)) or grad_norm == math.inf
        self._core.before_full()
        if not bad:
            self.optimizer.step()
            self._flat.after_update()
        result = self._core.after_full(value, grad_norm, bad_step=bad,
                                       lr=float(self.optimizer.param_groups[0]["lr"]))
        self._after_step()
        return result

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, as tensors, numbers and strings (``torch.save`` /
        ``torch.load(..., weights_only=True)`` work): the inner optimizer's state, the
        trainable parameters and the hybrid state. Buffers (BatchNorm statistics) live in
        ``model.state_dict()``."""
        return {"optimizer": self.optimizer.state_dict(), "params": self._flat.copy(),
                "hybrid": to_torch_tree(self._core.state_dict())}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`. The whole state is checked first; a refused load
        (``ValueError``) leaves weights, optimizer and counters as they were."""
        if not isinstance(state_dict, dict) or set(state_dict) != {"optimizer", "params", "hybrid"}:
            got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            msg = f"not a HybridOptimizer state dict (keys {got}; expected hybrid, optimizer, params)"
            raise ValueError(msg)
        params = state_dict["params"]
        if not isinstance(params, torch.Tensor) or params.shape != self._flat.flat.shape:
            msg = (f"state holds parameters of shape {getattr(params, 'shape', None)}, this "
                   f"optimizer has {tuple(self._flat.flat.shape)}")
            raise ValueError(msg)
        inner = state_dict["optimizer"]
        try:
            same = _group_keys(inner) == _group_keys(self.optimizer.state_dict())
        except (KeyError, TypeError) as exc:
            msg = f"the state's optimizer part is not a torch optimizer state dict ({exc!r})"
            raise ValueError(msg) from None
        if not same:
            msg = (f"the state is of another optimizer or layout (param groups "
                   f"{_group_keys(inner)}, this optimizer has {_group_keys(self.optimizer.state_dict())})")
            raise ValueError(msg)
        hybrid = to_numpy_tree(state_dict["hybrid"], _KEEP)
        check_torch_state(inner, self._flat.params, "optimizer")
        if isinstance(hybrid, dict) and isinstance(hybrid.get("saved_optimizer_state"), dict):
            check_torch_state(hybrid["saved_optimizer_state"], self._flat.params,
                               "saved optimizer state")
        saved = (copy.deepcopy(self.optimizer.state_dict()), self._flat.copy(),
                 self._core.state_dict())
        try:
            self.optimizer.load_state_dict(inner)
            self._core.load_state_dict(hybrid)
            self._flat.load(params.to(self._flat.flat.device, torch.float32))
        except Exception as exc:
            self.optimizer.load_state_dict(saved[0])
            self._flat.load(saved[1])
            self._core.load_state_dict(saved[2])
            if isinstance(exc, ValueError):
                raise
            msg = f"the state could not be loaded ({exc!r}); nothing was changed"
            raise ValueError(msg) from exc


class HybridTrainer(WrapperBase):
    """Convenience over :class:`HybridOptimizer`: ``step(batch)`` runs the whole step.

    Args:
        model: the ``nn.Module`` (trained in place; its train/eval mode stays yours).
        optimizer: any ``torch.optim.Optimizer`` over the model's parameters.
        loss_fn: ``(model, batch) -> scalar tensor``.
        config: the controller's configuration.
        scheduler: optional LR scheduler over ``optimizer``, stepped once after every step,
            predicted ones included (a schedule keeps its meaning in steps). Leave it out and
            step your own scheduler where you want it (a per-epoch one, say).
        probe: as in :class:`HybridOptimizer`.
        autocast: ``torch.bfloat16`` or ``torch.float16`` runs ``loss_fn`` under
            ``torch.autocast``.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
                 config: HybridTrainerConfig | None = None, *, scheduler: Any = None,
                 probe: Callable[[], Any] | None = None, autocast: torch.dtype | None = None) -> None:
        if not isinstance(model, torch.nn.Module):
            msg = f"model must be a torch.nn.Module (got {type(model).__name__})"
            raise ValueError(msg)
        if not callable(loss_fn):
            msg = f"loss_fn must be callable as loss_fn(model, batch) (got {type(loss_fn).__name__})"
            raise ValueError(msg)
        if autocast not in (None, torch.bfloat16, torch.float16):
            msg = f"autocast must be torch.bfloat16, torch.float16 or None (got {autocast!r})"
            raise ValueError(msg)
        if scheduler is not None and not callable(getattr(scheduler, "step", None)):
            msg = f"scheduler must have a step() method (got {type(scheduler).__name__})"
            raise ValueError(msg)
        self.model, self.loss_fn, self.scheduler, self.autocast = model, loss_fn, scheduler, autocast
        self.optimizer = HybridOptimizer(optimizer, config, probe=probe)
        self.optimizer._autosave = False  # this trainer's checkpoints hold the model too
        self._core = self.optimizer._core

    def step(self, batch: Any) -> StepResult:
        """One training step on ``batch`` (a predicted step does not use it)."""
        opt = self.optimizer
        if opt.need_grads:
            if self.autocast is None:
                loss = self.loss_fn(self.model, batch)
            else:
                with torch.autocast(opt.flat_params.device.type, dtype=self.autocast):
                    loss = self.loss_fn(self.model, batch)
            if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
                msg = "loss_fn must return a scalar tensor that depends on the trainable parameters"
                raise ValueError(msg)
            loss.backward()
            result = opt.step(loss)
        else:
            result = opt.step()
        opt.zero_grad()
        if self.scheduler is not None:
            self.scheduler.step()
        self._after_step()
        return result

    def state_dict(self) -> dict[str, Any]:
        """Model, hybrid optimizer and scheduler state: everything needed to resume."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the optimizer part is checked before anything changes)."""
        if not isinstance(state, dict) or not {"model", "optimizer"} <= set(state):
            msg = "not a HybridTrainer state dict (needs 'model' and 'optimizer')"
            raise ValueError(msg)
        saved = (copy.deepcopy(self.model.state_dict()), self.optimizer.state_dict(),
                 None if self.scheduler is None else self.scheduler.state_dict())
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state.get("scheduler") is not None:
                self.scheduler.load_state_dict(state["scheduler"])
        except Exception as exc:
            self.model.load_state_dict(saved[0])
            self.optimizer.load_state_dict(saved[1])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(saved[2])
            if isinstance(exc, ValueError):
                raise
            msg = f"the state could not be loaded ({exc!r}); nothing was changed"
            raise ValueError(msg) from exc
