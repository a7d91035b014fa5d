"""Kernel registry and backend dispatch: one place decides which twin runs an op.

A backend is picked from where the array lives (NumPy or CuPy) and what is installed;
``use("numba")`` (also a context manager) overrides the choice for tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import functools
import time
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _threads

BACKENDS = ("numpy", "numba", "cuda", "cupy")
# Below this many elements the NumPy path wins on a 2-core CPU: the parallel loop's thread
# start-up costs more than the work (measured: 0.16 ms vs 0.13 ms at 1e5, 1.6 vs 2.7 at 1e6).
NUMBA_MIN_SIZE = 1 << 19
# Ops with much work per element (a small network per row) pay for the threads far sooner.
HEAVY_OPS = frozenset({"mlp_forward", "mlp_backward", "gru_forward", "gru_backward"})
HEAVY_MIN_SIZE = 1 << 13
# Ops whose Numba twin has a single-thread path for small vectors: Numba at every size.
# The line's GEMV and the confidence's sums measured 4-7x NumPy's float64 path on one thread
# at 1e5-5e5 coordinates (a jump's start); the element-wise updates stay with NumPy.
SERIAL_OPS = frozenset({"ema_update", "ema_update_stats", "lincomb", "trend_r2"})

_REGISTRY: dict[tuple[str, str], Callable[..., Any]] = {}
_override: str | None = None
# Twins whose first call compiles or loads machine code (Numba's runtime and on-disk cache,
# CUDA modules, CuPy's NVRTC): that call's time is start-up, not the op's cost per call.
JIT_BACKENDS = frozenset({"numba", "cuda", "cupy"})
_JIT_TWINS: set[Callable[..., Any]] = set()
_settled: set[Callable[..., Any]] = set()  # twins called here before, or not JIT-compiled
_start_up = [0.0]


def register(op: str, backend: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator that records ``fn`` as the ``backend`` twin of ``op``."""
    if backend not in BACKENDS:
        msg = f"unknown kernel backend {backend!r}; expected one of {BACKENDS}"
        raise ValueError(msg)

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTRY[(op, backend)] = fn
        if backend in JIT_BACKENDS:
            _JIT_TWINS.add(fn)
        return fn

    return deco


def registered(op: str) -> tuple[str, ...]:
    """Backends that have a twin for ``op``."""
    return tuple(b for b in BACKENDS if (op, b) in _REGISTRY)


def _is_cupy(x: Any) -> bool:
    return type(x).__module__.startswith("cupy")


def get_array_module(x: Any) -> types.ModuleType:
    """NumPy or CuPy, whichever owns ``x`` (the boundary check of CONVENTIONS.md)."""
    if _is_cupy(x):
        import cupy

        return cupy
    return np


def to_host(x: Any) -> np.ndarray:
    """A NumPy copy (CuPy arrays) or view (NumPy arrays) of ``x``."""
    if _is_cupy(x):
        return x.get()
    return np.asarray(x)


class _Use(contextlib.AbstractContextManager):
    def __init__(self, previous: str | None) -> None:
        self._previous = previous

    def __exit__(self, *exc: object) -> None:
        global _override
        _override = self._previous


def use(backend: str | None) -> contextlib.AbstractContextManager:
    """Force ``backend`` for every op that has it (``None`` or ``"auto"`` restores auto).

    Works as a plain call or as ``with kernels.use("numba"): ...``.
    """
    global _override
    if backend == "auto":
        backend = None
    if backend is not None and backend not in BACKENDS:
        msg = f"unknown kernel backend {backend!r}; expected one of {BACKENDS} or 'auto'"
        raise ValueError(msg)
    previous, _override = _override, backend
    return _Use(previous)


def _auto_backend(op: str, x: Any) -> str:
    if _is_cupy(x):
        for b in ("cupy", "cuda"):
            if (op, b) in _REGISTRY:
                return b
        msg = f"kernel {op!r} has no GPU twin; move the array to the host first"
        raise RuntimeError(msg)
    threshold = (0 if op in SERIAL_OPS else HEAVY_MIN_SIZE if op in HEAVY_OPS
                 else NUMBA_MIN_SIZE)
    if (op, "numba") in _REGISTRY and getattr(x, "size", 0) >= threshold:
        return "numba"
    return "numpy"


def lookup(op: str, x: Any) -> Callable[..., Any]:
    """The twin of ``op`` that should run on array ``x``."""
    backend = _override if _override is not None else _auto_backend(op, x)
    fn = _REGISTRY.get((op, backend))
    if fn is None:
        if _override is not None and (op, "numpy") in _REGISTRY and not _is_cupy(x):
            # An override names a preference; ops without that twin use the reference.
            return _REGISTRY[(op, "numpy")]
        msg = f"kernel {op!r} has no {backend!r} twin (has: {registered(op)})"
        raise RuntimeError(msg)
    if backend == "numba" and not _threads._applied[0]:
        _follow_threads_once()
    return fn


def _follow_threads_once() -> None:
    """Before the first Numba twin runs: its threads follow the framework's (see _threads);
    the thread launch this does is start-up time."""
    t0 = time.perf_counter()
    _threads.on_numba_dispatch()
    _start_up[0] += time.perf_counter() - t0


def dispatch(op: str, x: Any) -> Callable[..., Any]:
    """:func:`lookup`, for calling: a JIT twin's first call here is timed as start-up."""
    fn = lookup(op, x)
    if fn in _settled:
        return fn
    if fn not in _JIT_TWINS:
        _settled.add(fn)
        return fn
    return _first_call(fn)


def _first_call(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, its call timed as start-up (the first of this twin in this process)."""

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            if fn not in _settled:
                _settled.add(fn)
                _start_up[0] += time.perf_counter() - t0

    return timed


def start_up_seconds() -> float:
    """Seconds this process spent in the first call of each op's JIT twin (Numba's runtime
    start, cache loads, compilation): time paid once, which a per-call cost must leave out."""
    return _start_up[0]
