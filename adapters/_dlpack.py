"""Zero-copy views of a framework's flat parameter buffer for the engine (DESIGN section 3).

The engine works on NumPy arrays (CPU) or CuPy arrays (GPU). A framework tensor becomes one of
them through DLPack, sharing memory: the engine's writes are the model's parameters. A GPU
tensor without CuPy is refused here, at construction, rather than copied to the host per step.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

__all__ = ["engine_view"]


def _cupy_ready() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    import cupy

    try:
        return bool(cupy.is_available())
    except Exception:  # a broken CUDA install reads as "not available"
        return False


def engine_view(tensor: Any, *, device_kind: str) -> Any:
    """A NumPy (``device_kind="cpu"``) or CuPy (``"cuda"``) array sharing ``tensor``'s memory.

    Args:
        tensor: a 1-D contiguous array that implements ``__dlpack__``.
        device_kind: ``"cpu"`` or ``"cuda"``, where ``tensor`` lives.

    Returns:
        The engine's view; writes through it change ``tensor``.

    Raises:
        RuntimeError: the tensor is on a GPU and CuPy is missing or sees no GPU, or the
            view does not share memory (a copy would silently decouple engine and model).
        ValueError: any other device.
    """
    if device_kind == "cpu":
        view = np.from_dlpack(tensor)
        if not view.flags.writeable:
            msg = "the DLPack view of the parameter buffer is read-only; the engine must write it"
            raise RuntimeError(msg)
        return view
    if device_kind == "cuda":
        if not _cupy_ready():
            msg = (
                "the model's parameters are on a CUDA device, and the engine needs CuPy to view "
                "them without a copy; install it with pip install "
                '"hybrid-predict-trainer[cuda]" (or a cupy-cuda wheel matching your CUDA)'
            )
            raise RuntimeError(msg)
        import cupy

        return cupy.from_dlpack(tensor)
    msg = f"parameters on a {device_kind!r} device are not supported (only cpu and cuda)"
    raise ValueError(msg)
