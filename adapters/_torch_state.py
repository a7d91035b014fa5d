"""Torch optimizer states for the hybrid optimizer: in-place copies, checks, checkpoint codec.

A saved optimizer state is copied into the live one (and back) tensor by tensor, so only one
copy is ever alive; a loaded one is checked against the parameters before anything changes;
torch tensors are taught to the checkpoint encoder (bfloat16 kept as its bits).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from hpcore.checkpoint import register_codec

__all__ = ["check_torch_state", "copy_state"]


def copy_state(dst: dict[Any, Any], src: dict[Any, Any]) -> bool:
    """Copy an optimizer's per-parameter state ``src`` into ``dst`` in place; False (nothing
    copied) unless both have the same parameters, keys, shapes and dtypes."""
    if dst.keys() != src.keys():
        return False
    for i, d in dst.items():
        s = src[i]
        if d.keys() != s.keys():
            return False
        for k, v in d.items():
            w = s[k]
            if isinstance(v, torch.Tensor) != isinstance(w, torch.Tensor):
                return False
            if isinstance(v, torch.Tensor) and (v.shape != w.shape or v.dtype != w.dtype
                                                or v.device != w.device):
                return False
    with torch.no_grad():
        for i, d in dst.items():
            for k, v in d.items():
                if isinstance(v, torch.Tensor):
                    v.copy_(src[i][k])
                else:
                    d[k] = copy.deepcopy(src[i][k])
    return True


def check_torch_state(sd: Any, params: list[torch.Tensor], what: str) -> None:
    """Every per-parameter state tensor of one or more dimensions has its parameter's shape,
    dtype and device, and is finite (``ValueError`` otherwise)."""
    state = sd.get("state") if isinstance(sd, dict) else None
    if not isinstance(state, dict):
        msg = f"the state's {what} has no per-parameter 'state' dict"
        raise ValueError(msg)
    for i, entry in state.items():
        if not (isinstance(i, int) and 0 <= i < len(params)) or not isinstance(entry, dict):
            msg = f"the state's {what} names parameter {i!r}, this optimizer has {len(params)}"
            raise ValueError(msg)
        p = params[i]
        for k, v in entry.items():
            if isinstance(v, torch.Tensor) and v.dim() > 0 and (
                    v.shape != p.shape or v.dtype != p.dtype or v.device != p.device
                    or not bool(torch.isfinite(v).all())):
                msg = (f"the state's {what} {k!r} of parameter {i} is {v.dtype} {tuple(v.shape)}"
                       f" (finite: {bool(torch.isfinite(v).all())}); the parameter is {p.dtype} "
                       f"{tuple(p.shape)}")
                raise ValueError(msg)


def _tensor_to_numpy(t: torch.Tensor) -> tuple[Any, str]:
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:  # NumPy has no bfloat16: keep the bits
        return t.view(torch.int16).numpy(), "bfloat16"
    return t.numpy(), str(t.dtype).removeprefix("torch.")


def _tensor_from_numpy(a: Any, tag: str) -> torch.Tensor:
    t = torch.from_numpy(a.copy())
    return t.view(torch.bfloat16) if tag == "bfloat16" else t


register_codec("torch", lambda x: isinstance(x, torch.Tensor), _tensor_to_numpy, _tensor_from_numpy)
