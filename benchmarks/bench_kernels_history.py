"""History and stats kernels: each twin against the NumPy reference at N = 1e4 .. 1e7.

Run: ``pytest benchmarks/ --benchmark-only`` (add ``-k n1e6`` for one size). Buffers are
float32, as the engine keeps them; ``extra_info["bytes"]`` is the least memory traffic of one
call (every buffer read or written once), from which benchmarks/conftest.py derives GB/s.
"""

from __future__ import annotations

import numpy as np
import pytest

from hpcore import kernels

pytestmark = pytest.mark.benchmark

SIZES = [10**4, 10**5, 10**6, 10**7]
BACKENDS = ["numpy", "numba", "cupy"]
C = 8  # snapshots in the ring
F32 = 4


def _case(op: str, n: int, xp):
    """(call, bytes moved per call) for ``op`` on fresh float32 buffers of length ``n``."""
    rng = np.random.default_rng(0)

    def vec():
        return xp.asarray(rng.standard_normal(n).astype(np.float32))

    if op == "ema_update":
        theta, ema = vec(), vec()
        return (lambda: kernels.ema_update(theta, ema, 0.99)), 3 * F32 * n
    if op == "ema_update_stats":
        bufs = [vec() for _ in range(4)]
        return (lambda: kernels.ema_update_stats(*bufs, 0.99)), 7 * F32 * n
    if op == "lincomb":
        ring = xp.asarray(rng.standard_normal((C, n)).astype(np.float32))
        w, base, out = xp.asarray(rng.standard_normal(C)), vec(), vec()
        return (lambda: kernels.lincomb(w, ring, base, 0.5, out)), (C + 2) * F32 * n
    if op == "axpy_path":
        theta, origin, direction = vec(), vec(), vec()
        return (lambda: kernels.axpy_path(theta, origin, direction, 0.3)), 3 * F32 * n
    if op == "copy":
        dst, src = vec(), vec()
        return (lambda: kernels.copy(dst, src)), 2 * F32 * n
    if op == "trend_r2":
        ring = xp.asarray(rng.standard_normal((C, n)).astype(np.float32))
        times = xp.asarray(np.arange(C) - (C - 1) / 2)
        return (lambda: kernels.trend_r2(ring, times)), C * F32 * n
    if op == "vector_stats":
        x = vec()
        return (lambda: kernels.vector_stats(x)), F32 * n
    raise ValueError(op)


def _xp(backend: str):
    if backend != "cupy":
        return np
    from hpcore.kernels._gpu import cupy_module

    cp = cupy_module()
    if cp is None:
        pytest.skip("cupy twin: cupy is not installed or sees no GPU (cupy.is_available())")
    return cp


def _sync(backend: str):
    if backend == "cupy":
        cp = _xp("cupy")
        return cp.cuda.Device().synchronize
    return lambda: None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"n{n:.0e}".replace("+0", ""))
@pytest.mark.parametrize(
    "op",
    ["ema_update", "ema_update_stats", "lincomb", "axpy_path", "copy", "trend_r2", "vector_stats"],
)
def test_history_kernel(benchmark, op, n, backend):
    xp = _xp(backend)
    call, nbytes = _case(op, n, xp)
    sync = _sync(backend)

    def timed():
        call()
        sync()  # GPU timings include the kernel, not just its launch

    with kernels.use(backend):
        timed()  # compile (Numba) or build the module (CuPy) outside the timing
        benchmark.group = f"{op} n={n:.0e}"
        benchmark.extra_info.update(op=op, n=n, backend=backend, bytes=nbytes)
        benchmark(timed)
