"""One flat buffer under a PyTorch optimizer's parameters, viewed by the core without a copy.

Every trainable parameter of the optimizer (``requires_grad=True``; the others are skipped,
as torch.optim skips them) becomes a view of one contiguous buffer (``p.data`` re-pointed;
optimizer state keyed by the parameter objects stays valid). The core sees the buffer
through DLPack: NumPy on CPU, CuPy on CUDA. Half-precision parameters get a float32 master
copy, which the core moves and which is pushed back (rounded) after each move.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from hpcore.adapters._dlpack import engine_view

__all__ = ["FlatParams", "optimizer_params"]

_PARAM_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def optimizer_params(optimizer: torch.optim.Optimizer) -> list[torch.nn.Parameter]:
    """The optimizer's trainable parameters, in param-group order, each once."""
    seen: set[int] = set()
    params = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    if not params:
        msg = ("the optimizer has no trainable parameters (none with requires_grad=True): "
               "there is nothing to train")
        raise ValueError(msg)
    return params


def _check_layout(params: list[torch.nn.Parameter]) -> None:
    """One dtype, one device, dense tensors: what a single flat buffer can view."""
    first = params[0]
    for i, p in enumerate(params):
        if p.layout is not torch.strided:
            msg = f"parameter {i} has layout {p.layout}; only dense (strided) tensors are supported"
            raise ValueError(msg)
        if p.dtype != first.dtype:
            msg = (f"trainable parameters have mixed dtypes: parameter 0 is {first.dtype}, "
                   f"parameter {i} is {p.dtype}; one flat buffer needs a single dtype "
                   "(call model.float())")
            raise ValueError(msg)
        if p.device != first.device:
            msg = (f"trainable parameters are on several devices: parameter 0 on {first.device}, "
                   f"parameter {i} on {p.device}; move the model to one device first")
            raise ValueError(msg)
    if first.dtype not in _PARAM_DTYPES:
        msg = (f"parameters are {first.dtype}; the hybrid optimizer takes float32, bfloat16 "
               "or float16 parameters (call model.float())")
        raise ValueError(msg)
    if first.device.type not in ("cpu", "cuda"):
        msg = f"parameters are on {first.device}; only cpu and cuda are supported"
        raise ValueError(msg)


class FlatParams:
    """The buffer, its float32 view for the core, and the gradients' norm.

    Args:
        params: the trainable parameters (re-laid out in place).
    """

    def __init__(self, params: list[torch.nn.Parameter]) -> None:
        _check_layout(params)
        self.params = params
        self.sizes = [p.numel() for p in params]
        device, dtype = params[0].device, params[0].dtype
        with torch.no_grad():
            self.flat = torch.empty(sum(self.sizes), dtype=dtype, device=device)
            offset = 0
            for p, n in zip(params, self.sizes, strict=True):
                view = self.flat[offset:offset + n].view(p.shape)
                view.copy_(p.data)
                p.data = view
                offset += n
        self._ptrs = [p.data_ptr() for p in params]
        self.master = self.flat.float() if dtype != torch.float32 else None
        self.theta = engine_view(self.master if self.master is not None else self.flat,
                                 device_kind=device.type)
        self.on_cpu = device.type == "cpu"

    def check_layout(self, every: bool = True) -> None:
        """Every parameter (or, cheaply, the first) still lives in the buffer (the model was
        not moved or cast after wrapping)."""
        pairs = zip(self.params, self._ptrs, strict=True) if every else [(self.params[0], self._ptrs[0])]
        for i, (p, ptr) in enumerate(pairs):
            if p.data_ptr() != ptr:
                msg = (f"parameter {i} no longer lives in the hybrid optimizer's flat buffer "
                       "(was the model moved or cast, or p.data replaced, after wrapping?); "
                       "wrap the optimizer after .to(device) and .float()")
                raise RuntimeError(msg)

    def grad_norm(self) -> float:
        """Norm of the gradients (``inf`` if any is non-finite; ``nan`` if none exists)."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return math.nan
        norms = torch._foreach_norm(grads)
        total = float(torch.linalg.vector_norm(torch.stack(norms).float()))
        return total if math.isfinite(total) else math.inf

    def after_update(self) -> None:
        """The optimizer moved the parameters: the master copy follows them."""
        if self.master is not None:
            with torch.no_grad():
                self.master.copy_(self.flat)

    def commit(self) -> None:
        """The core moved the float32 master: the half-precision parameters follow it."""
        if self.master is not None:
            with torch.no_grad():
                self.flat.copy_(self.master)

    def copy(self) -> torch.Tensor:
        """A float32 copy of the parameters as the core sees them."""
        src = self.master if self.master is not None else self.flat
        return src.detach().clone()

    def load(self, values: torch.Tensor) -> None:
        """Set the parameters from a float32 copy."""
        with torch.no_grad():
            if self.master is not None:
                self.master.copy_(values)
            self.flat.copy_(values)


def to_torch_tree(tree: Any) -> Any:
    """``tree`` with every NumPy array as a tensor (``torch.load(weights_only=True)`` reads it)."""
    if isinstance(tree, np.ndarray):
        return torch.from_numpy(np.array(tree, copy=True))
    if isinstance(tree, dict):
        return {k: to_torch_tree(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_torch_tree(v) for v in tree)
    return tree


def to_numpy_tree(tree: Any, keep: tuple[str, ...] = ()) -> Any:
    """The inverse of :func:`to_torch_tree` (the subtrees named in ``keep`` stay tensors)."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().cpu().numpy().copy()
    if isinstance(tree, dict):
        return {k: (v if k in keep else to_numpy_tree(v, keep)) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_numpy_tree(v, keep) for v in tree)
    return tree
