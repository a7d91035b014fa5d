"""PyTorch adapter: the hybrid trainer around a user's ``nn.Module``, optimizer and scheduler.

At construction every trainable parameter is moved into one contiguous float32 buffer (each
``p.data`` becomes a view of it) and the gradients into a second one; the engine sees the
parameter buffer through DLPack, without a copy (NumPy on CPU, CuPy on CUDA). The user's
optimizer and learning-rate scheduler keep working on the same parameter objects.

Example:
    >>> import torch
    >>> from hpcore.adapters.torch import HybridTrainer
    >>> model = torch.nn.Linear(2, 1)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> def loss_fn(model, batch):
    ...     x, y = batch
    ...     return torch.nn.functional.mse_loss(model(x), y)
    >>> trainer = HybridTrainer(model, opt, loss_fn)
    >>> result = trainer.step((torch.ones(4, 2), torch.zeros(4, 1)))
    >>> result.phase.value
    'warmup'
"""

from __future__ import annotations

import copy
import importlib
import itertools
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only without torch
    msg = (
        "hpcore.adapters.torch needs PyTorch; install it with "
        'pip install "hybrid-predict-trainer[torch]"'
    )
    raise ImportError(msg) from exc

from hpcore.adapters._dlpack import engine_view
from hpcore.checkpoint import register_codec
from hpcore.config import HybridTrainerConfig
from hpcore.engine import HybridEngine
from hpcore.port import FullStepOutput
from hpcore.trainer import TrainerBase

__all__ = ["HybridTrainer", "TorchPort"]

LossFn = Callable[[torch.nn.Module, Any], torch.Tensor]

# Parameter dtypes a flat buffer may hold; half precision gets a float32 master copy.
_PARAM_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_AUTOCAST_DTYPES = (torch.bfloat16, torch.float16)


def _check_loss(value: Any, where: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        msg = f"{where} must return a scalar torch.Tensor (got {type(value).__name__})"
        raise TypeError(msg)
    if value.numel() != 1:
        msg = (
            f"{where} must return a scalar tensor (got shape {tuple(value.shape)}); "
            "reduce it, e.g. with .mean()"
        )
        raise ValueError(msg)
    return value


def _trainable_parameters(model: torch.nn.Module) -> tuple[list[str], list[torch.nn.Parameter]]:
    """Named trainable parameters in the module's registration order (shared ones once)."""
    names, params = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            names.append(name)
            params.append(p)
    if not params:
        msg = (
            f"{type(model).__name__} has no trainable parameters (none with requires_grad=True): "
            "there is nothing to train"
        )
        raise ValueError(msg)
    return names, params


def _check_layout(names: list[str], params: list[torch.nn.Parameter]) -> None:
    """One dtype (float32), one device, dense tensors: what a single flat buffer can view."""
    first_name, first = names[0], params[0]
    for name, p in zip(names, params, strict=True):
        if p.layout is not torch.strided:
            msg = f"parameter {name!r} has layout {p.layout}; only dense (strided) tensors are supported"
            raise ValueError(msg)
        if p.dtype != first.dtype:
            msg = (
                f"trainable parameters have mixed dtypes: {first_name!r} is {first.dtype}, "
                f"{name!r} is {p.dtype}; one flat buffer needs a single dtype (call model.float())"
            )
            raise ValueError(msg)
        if p.device != first.device:
            msg = (
                f"trainable parameters are on several devices: {first_name!r} on {first.device}, "
                f"{name!r} on {p.device}; move the model to one device before wrapping it"
            )
            raise ValueError(msg)
    if first.dtype not in _PARAM_DTYPES:
        msg = (
            f"parameter {first_name!r} is {first.dtype}; the hybrid trainer takes float32, "
            "bfloat16 or float16 parameters (call model.float(), or model.to(torch.bfloat16))"
        )
        raise ValueError(msg)
    if first.device.type not in ("cpu", "cuda"):
        msg = f"parameter {first_name!r} is on {first.device}; only cpu and cuda are supported"
        raise ValueError(msg)


def _dynamo_compile_clock() -> Callable[[], float] | None:
    """A clock of ``torch.compile``'s compilation time (dynamo's capture, inductor's compiles,
    as dynamo records them; torch loads that module with its optimizers' first step), or
    ``None`` where this torch has no such records. The engine only looks for the clock to
    move during a port call."""
    try:
        utils = importlib.import_module("torch._dynamo.utils")
    except Exception:  # a private module: any failure to load it means no clock
        return None
    metrics = getattr(utils, "compilation_time_metrics", None)
    if not isinstance(metrics, dict):
        return None

    def clock() -> float:
        return sum(metrics.get("_compile.compile_inner", ())) + \
            sum(metrics.get("compile_fx_inner", ()))

    return clock


class TorchPort:
    """The engine's port over an ``nn.Module`` whose parameters live in one flat buffer.

    Args:
        model: the module; its trainable parameters are re-laid out in place.
        optimizer: any ``torch.optim.Optimizer`` over (a subset of) those parameters.
        loss_fn: ``(model, batch) -> scalar tensor``.
        scheduler: optional learning-rate scheduler, stepped once per training step.
        autocast: ``torch.bfloat16`` or ``torch.float16`` runs ``loss_fn`` under
            ``torch.autocast`` (full steps and probes alike); ``None`` runs it as is.
    """

    forward_costs_backward = False

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: LossFn,
        scheduler: Any = None,
        autocast: torch.dtype | None = None,
    ) -> None:
        names, params = _trainable_parameters(model)
        _check_layout(names, params)
        known = {id(p) for p in params}
        for gi, group in enumerate(optimizer.param_groups):
            for pi, p in enumerate(group["params"]):
                if id(p) not in known:
                    msg = (
                        f"optimizer param_groups[{gi}]['params'][{pi}] (shape {tuple(p.shape)}) "
                        "is not a trainable parameter of the model; build the optimizer from "
                        "model.parameters()"
                    )
                    raise ValueError(msg)
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.scheduler = scheduler
        clock = _dynamo_compile_clock()
        if clock is not None:  # a torch.compile'd model: its compilations are one-off costs
            self.compile_seconds = clock
        self.names = names
        self.params = params
        device = params[0].device
        dtype = params[0].dtype
        self.autocast = autocast
        sizes = [p.numel() for p in params]
        self.group_offsets = [0, *itertools.accumulate(sizes)]
        total = sum(sizes)
        with torch.no_grad():
            self.flat = torch.empty(total, dtype=dtype, device=device)
            self.flat_grad = torch.zeros(total, dtype=dtype, device=device)
            self._grad_views: list[torch.Tensor] = []
            offset = 0
            # Optimizer state is keyed by the parameter objects, which keep their identity:
            # re-pointing p.data leaves any existing state (momenta, Adam moments) valid.
            for p, n in zip(params, sizes, strict=True):
                view = self.flat[offset : offset + n].view(p.shape)
                view.copy_(p.data)
                p.data = view
                self._grad_views.append(self.flat_grad[offset : offset + n].view(p.shape))
                offset += n
        self._data_ptrs = [p.data_ptr() for p in params]
        cpu32 = device.type == "cpu" and dtype == torch.float32
        self._grad_np = self.flat_grad.numpy() if cpu32 else None  # shares the memory
        # Half-precision parameters: the engine moves a float32 master copy, synchronised
        # after every full step and pushed back (rounded) by commit_params.
        self.master = self.flat.float() if dtype != torch.float32 else None
        self._theta = engine_view(self.master if self.master is not None else self.flat,
                                  device_kind=device.type)
        self._buffers = [b for b in model.buffers()]

    # ------------------------------------------------------------------ port
    def flat_params(self) -> Any:
        return self._theta

    def _attach_grads(self) -> None:
        """Point every ``p.grad`` back into the flat grad buffer (``zero_grad`` may drop it)."""
        self.flat_grad.zero_()
        views = zip(self.names, self.params, self._grad_views, self._data_ptrs, strict=True)
        for name, p, g, ptr in views:
            if p.data_ptr() != ptr:
                msg = (
                    f"parameter {name!r} no longer lives in the trainer's flat buffer (was the "
                    "model moved or cast, or p.data replaced, after wrapping?); wrap the model "
                    "after .to(device) and .float()"
                )
                raise RuntimeError(msg)
            if p.grad is not g:
                p.grad = g

    def _grad_norm(self) -> float:
        """Norm of the flat gradient: on a float32 CPU buffer through NumPy's dot over the
        shared memory (about 3x faster than torch's norm for a small model, whose step it
        is paid on), elsewhere, and where the float32 sum of squares overflows, by torch."""
        if self._grad_np is not None:
            with np.errstate(over="ignore", invalid="ignore"):
                sq = float(np.dot(self._grad_np, self._grad_np))
            if math.isfinite(sq):
                return math.sqrt(sq)
        return float(torch.linalg.vector_norm(self.flat_grad, dtype=torch.float32))

    def _loss(self, batch: Any) -> torch.Tensor:
        if self.autocast is None:
            return _check_loss(self.loss_fn(self.model, batch), "loss_fn")
        with torch.autocast(device_type=self.flat.device.type, dtype=self.autocast):
            return _check_loss(self.loss_fn(self.model, batch), "loss_fn")

    def full_step(self, batch: Any) -> FullStepOutput:
        self._attach_grads()
        with torch.enable_grad():
            loss = self._loss(batch)
            if not loss.requires_grad:
                msg = (
                    "loss_fn returned a tensor that does not require grad: it does not depend "
                    "on the trainable parameters (was it computed under torch.no_grad()?)"
                )
                raise ValueError(msg)
            loss.backward()
        loss_value = float(loss.detach())
        for p, g in zip(self.params, self._grad_views, strict=True):
            if p.grad is not g:  # a hook replaced or dropped the grad: gather it back
                if p.grad is None:
                    g.zero_()
                else:
                    g.copy_(p.grad)
                p.grad = g
        grad_norm = self._grad_norm()
        self._update(math.isfinite(loss_value) and math.isfinite(grad_norm))
        return FullStepOutput(loss_value, grad_norm)

    def _update(self, finite: bool) -> None:
        """The optimizer's and the scheduler's step, or the scheduler's alone: a non-finite
        loss or gradient is never fed to the optimizer, and the schedule still advances."""
        if finite:
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
        else:
            self._step_scheduler_alone()
        if self.master is not None:
            with torch.no_grad():
                self.master.copy_(self.flat)

    def lean_step(self, batch: Any) -> float:
        """A full step for a dormant engine, as the plain loop takes it: fresh gradients
        (``p.grad = None``, nothing zeroed or gathered into the flat buffer), no gradient
        norm. A non-finite loss skips the optimizer's step; a non-finite gradient under a
        finite loss shows in the next step's loss, which the engine guards."""
        for p in self.params:
            p.grad = None
        with torch.enable_grad():
            loss = self._loss(batch)
            loss.backward()
        loss_value = float(loss.detach())
        self._update(math.isfinite(loss_value))
        return loss_value

    def forward_loss(self, batch: Any) -> float:
        # Keep the user's train/eval mode; in train mode a forward would update BatchNorm's
        # running statistics, so buffers are put back as they were.
        saved = [b.clone() for b in self._buffers] if self.model.training else None
        try:
            with torch.no_grad():
                return float(self._loss(batch))
        finally:
            if saved is not None:
                with torch.no_grad():
                    for b, s in zip(self._buffers, saved, strict=True):
                        b.copy_(s)

    def commit_params(self) -> None:
        if self.master is not None:  # float32 master -> half-precision parameters
            with torch.no_grad():
                self.flat.copy_(self.master)

    def optimizer_state(self) -> dict[str, Any]:
        return copy.deepcopy(self.optimizer.state_dict())

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        """Restore a saved state for a rollback: the moments come back, the hyperparameters
        (``lr``, momentum...) stay as the scheduler has set them now. The scheduler is not
        rolled back (it counts every step taken), and one that steps from the current rate
        (``CosineAnnealingLR``) would carry a restored rate through the rest of the run."""
        hyper = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        # torch's load_state_dict keeps same-device tensors by reference and then updates them
        # in place; a private copy keeps the saved state reusable for a later rollback.
        self.optimizer.load_state_dict(copy.deepcopy(state))
        for group, now in zip(self.optimizer.param_groups, hyper, strict=True):
            group.update(now)

    def _step_scheduler_alone(self) -> None:
        """Advance the schedule without an optimizer step (torch warns about the order)."""
        if self.scheduler is None:
            return
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)`")
            self.scheduler.step()

    def on_predicted_step(self) -> None:
        self._step_scheduler_alone()

    def all_reduce_mean(self, x: float) -> float:
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()):
            return x
        t = torch.tensor([x], dtype=torch.float64, device=self.flat.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t) / dist.get_world_size()


def _tensor_to_numpy(t: torch.Tensor) -> tuple[Any, str]:
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:  # NumPy has no bfloat16: keep the bits
        return t.view(torch.int16).numpy(), "bfloat16"
    return t.numpy(), str(t.dtype).removeprefix("torch.")


def _tensor_from_numpy(a: Any, tag: str) -> torch.Tensor:
    t = torch.from_numpy(a.copy())
    return t.view(torch.bfloat16) if tag == "bfloat16" else t


register_codec("torch", lambda x: isinstance(x, torch.Tensor), _tensor_to_numpy, _tensor_from_numpy)


def _to_device(tree: Any, device: torch.device) -> Any:
    """``tree`` with every tensor moved to ``device`` (a probe batch read from disk)."""
    if isinstance(tree, torch.Tensor):
        return tree.to(device)
    if isinstance(tree, dict):
        return {k: _to_device(v, device) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_to_device(v, device) for v in tree)
    return tree


class HybridTrainer(TrainerBase):
    """Hybrid trainer for a PyTorch model: some steps are predicted instead of computed.

    Args:
        model: the ``nn.Module``; its trainable parameters are moved into one flat float32
            buffer (``p.data`` views), so wrap it after ``.to(device)``. Buffers (BatchNorm
            statistics) and the train/eval mode stay the user's.
        optimizer: any ``torch.optim.Optimizer`` over the model's parameters (SGD, Adam,
            AdamW...); it is stepped on full steps only.
        loss_fn: ``(model, batch) -> scalar tensor``.
        config: the engine's configuration (defaults when omitted).
        scheduler: optional learning-rate scheduler, stepped on every step, predicted ones
            included, so a schedule keeps its meaning in steps.
        autocast: ``torch.bfloat16`` or ``torch.float16`` to run ``loss_fn`` under
            ``torch.autocast`` (mixed precision); predicted updates are always applied in
            float32, to a float32 master copy when the parameters themselves are half
            precision.

    Raises:
        ValueError: no trainable parameters, mixed dtypes or devices, non-float32
            parameters, optimizer parameters outside the model, a scheduler that needs a
            metric (``ReduceLROnPlateau``).
        RuntimeError: parameters on CUDA without CuPy (the engine would need a host copy).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: LossFn,
        config: HybridTrainerConfig | None = None,
        scheduler: Any = None,
        autocast: torch.dtype | None = None,
    ) -> None:
        if autocast is not None and autocast not in _AUTOCAST_DTYPES:
            msg = f"autocast must be torch.bfloat16, torch.float16 or None (got {autocast!r})"
            raise ValueError(msg)
        if not isinstance(model, torch.nn.Module):
            msg = f"model must be a torch.nn.Module (got {type(model).__name__})"
            raise ValueError(msg)
        if not isinstance(optimizer, torch.optim.Optimizer):
            msg = f"optimizer must be a torch.optim.Optimizer (got {type(optimizer).__name__})"
            raise ValueError(msg)
        if not callable(loss_fn):
            msg = f"loss_fn must be callable as loss_fn(model, batch) (got {type(loss_fn).__name__})"
            raise ValueError(msg)
        if scheduler is not None:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                msg = (
                    "ReduceLROnPlateau needs a metric at each step; step it yourself from your "
                    "loop (with the losses in StepResult) instead of passing it as scheduler"
                )
                raise ValueError(msg)
            if not callable(getattr(scheduler, "step", None)):
                msg = f"scheduler must have a step() method (got {type(scheduler).__name__})"
                raise ValueError(msg)
        if config is None:
            config = HybridTrainerConfig()
        self._port = TorchPort(model, optimizer, loss_fn, scheduler, autocast)
        self._engine = HybridEngine(self._port, config)

    @property
    def model(self) -> torch.nn.Module:
        """The wrapped model (trained in place)."""
        return self._port.model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The user's optimizer."""
        return self._port.optimizer

    @property
    def flat_params(self) -> torch.Tensor:
        """The flat float32 buffer every trainable parameter is a view of."""
        return self._port.flat

    def state_dict(self) -> dict[str, Any]:
        """The engine's own state (phase, history, policy); the model's and optimizer's
        state dicts are saved by the user as usual."""
        return self._engine.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the engine's state from :meth:`state_dict`."""
        self._engine.load_state_dict(state)

    def _checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint file holds: the engine's state and the model's, optimizer's
        and scheduler's state dicts (resuming needs all four)."""
        sched = self._port.scheduler
        return {
            "engine": self._engine.state_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if sched is None else sched.state_dict(),
            "master": None if self._port.master is None else self._port.master.clone(),
        }

    def _load_checkpoint_state(self, state: dict[str, Any]) -> None:
        device = self._port.flat.device
        engine = dict(state["engine"])
        engine["probe"] = _to_device(engine["probe"], device)
        self.model.load_state_dict(state["model"])  # copies into the flat buffer's views
        self.optimizer.load_state_dict(state["optimizer"])
        if self._port.scheduler is not None and state["scheduler"] is not None:
            self._port.scheduler.load_state_dict(state["scheduler"])
        self._engine.load_state_dict(engine)
        if self._port.master is not None:
            with torch.no_grad():
                self._port.master.copy_(state["master"] if state.get("master") is not None
                                        else self._port.flat)
