"""Lazy access to the optional GPU toolkits: Numba CUDA (or its simulator) and CuPy.

Nothing here imports ``numba.cuda`` or ``cupy`` at module import; the first twin that needs
one asks for it. ``NUMBA_ENABLE_CUDASIM=1`` (set before numba is imported) makes
``numba.cuda`` the simulator, where kernels run as Python on host arrays; launch grids are
then kept tiny, because the simulator's cost grows with the threads launched.
"""

from __future__ import annotations

import functools
import types
from typing import Any

import numpy as np

# Threads per block for the Numba CUDA grid-stride kernels, and the most blocks a launch
# asks for: each thread loops over its share, so a bounded grid covers any N.
THREADS = 128
MAX_BLOCKS = 1024
# Launch shape under the simulator: 2 blocks of 4 threads still exercises the grid stride.
SIM_BLOCKS, SIM_THREADS = 2, 4


@functools.cache
def numba_cuda() -> types.ModuleType:
    """``numba.cuda`` (the simulator under ``NUMBA_ENABLE_CUDASIM=1``), imported on first use."""
    from numba import cuda

    return cuda


def simulating() -> bool:
    """True when Numba runs CUDA kernels in its simulator."""
    from numba.core import config

    return bool(config.ENABLE_CUDASIM)


def launch_config(n: int, threads: int = THREADS) -> tuple[int, int]:
    """``(blocks, threads)`` for a grid-stride kernel over ``n`` items."""
    if simulating():
        return SIM_BLOCKS, min(threads, SIM_THREADS)
    blocks = max(1, min(MAX_BLOCKS, -(-int(n) // threads)))
    return blocks, threads


_SIM_GLOBALS: dict[int, dict[str, Any]] = {}


def _sim_globals(module_globals: dict[str, Any]) -> dict[str, Any]:
    """A copy of a module's globals where every ``@numba.njit`` helper is its Python source.

    The simulator hands kernels wrapped host arrays, which compiled CPU helpers cannot take;
    as plain Python (sharing this patched namespace) the same helpers run on them.
    """
    key = id(module_globals)
    if key in _SIM_GLOBALS:
        return _SIM_GLOBALS[key]
    from numba.core.registry import CPUDispatcher

    patched = dict(module_globals)
    _SIM_GLOBALS[key] = patched
    for name, value in module_globals.items():
        if isinstance(value, CPUDispatcher):
            py = value.py_func
            home = patched if py.__globals__ is module_globals else _sim_globals(py.__globals__)
            patched[name] = types.FunctionType(
                py.__code__, home, py.__name__, py.__defaults__, py.__closure__
            )
    patched["cuda"] = numba_cuda()
    return patched


def cuda_kernel(fn: Any) -> Any:
    """``numba.cuda.jit(fn)`` for a module-level kernel written against the global ``cuda``.

    Kernel modules declare ``cuda = None`` and write kernels as plain functions that call
    the family's ``@numba.njit`` scalar helpers: on a GPU Numba compiles those helpers again
    as device functions (one source for the CPU loop and the kernel); under the simulator the
    kernel and its helpers run as Python.
    """
    cuda = numba_cuda()
    if simulating():
        g = _sim_globals(fn.__globals__)
        fn = types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__)
    else:
        fn.__globals__["cuda"] = cuda
    return cuda.jit(fn)


@functools.cache
def cupy_module() -> types.ModuleType | None:
    """CuPy when it is installed and sees a GPU (``cupy.is_available()``), else ``None``."""
    try:
        import cupy
    except ImportError:
        return None
    try:
        return cupy if cupy.is_available() else None
    except Exception:
        return None


def device_weights(xp: types.ModuleType, arrays: tuple[Any, ...]) -> tuple[Any, ...]:
    """Small weight arrays as contiguous float64 arrays of the module ``xp`` of the data.

    With NumPy data (tests, or the simulator) they stay host arrays; Numba CUDA copies host
    arguments to and from the device around a launch on a real GPU.
    """
    if xp is np:
        return tuple(np.ascontiguousarray(a, dtype=np.float64) for a in arrays)
    return tuple(xp.ascontiguousarray(xp.asarray(a, dtype=xp.float64)) for a in arrays)
