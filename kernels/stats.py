"""Stats kernels: fused norm, max-abs and non-finite count of a vector."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from ._dispatch import dispatch, register
from ._gpu import cupy_module
from .history import (
    BLOCK_REDUCE_SOURCE,
    CUPY_THREADS,
    cupy_grid,
    cupy_raw_module,
)


@register("vector_stats", "numpy")
def vector_stats_ref(x: np.ndarray) -> tuple[float, float, int]:
    """``(L2 norm over finite entries, max |x| over finite entries, #non-finite)``; zeros if empty."""
    finite = np.isfinite(x)
    nonfinite = int(x.size - np.count_nonzero(finite))
    xf = np.where(finite, x, 0).astype(np.float64).reshape(-1)
    if xf.size == 0:
        return 0.0, 0.0, nonfinite
    return float(np.sqrt(xf @ xf)), float(np.max(np.abs(xf))), nonfinite


@numba.njit(parallel=True, fastmath=False, cache=True)
def _vector_stats_loop(x):  # pragma: no cover - jitted
    ss = 0.0
    mx = 0.0
    bad = 0
    for i in numba.prange(x.size):
        v = np.float64(x[i])
        if np.isfinite(v):
            ss += v * v
            mx = max(mx, abs(v))
        else:
            bad += 1
    return ss, mx, bad


@register("vector_stats", "numba")
def vector_stats_numba(x: np.ndarray) -> tuple[float, float, int]:
    """Numba twin of :func:`vector_stats_ref` (one fused parallel pass)."""
    ss, mx, bad = _vector_stats_loop(x.reshape(-1))
    return float(np.sqrt(ss)), float(mx), int(bad)


STATS_CUPY_SOURCE = (
    BLOCK_REDUCE_SOURCE
    + r"""
// Max of v >= 0 over the block; the result is valid in thread 0.
__device__ double hp_block_max(double v, double* sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = HP_THREADS / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] = fmax(sh[threadIdx.x], sh[threadIdx.x + s]);
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

// out[0] += sum of finite x^2; out[1] = max(out[1], max finite |x|); out[2] += #non-finite.
// out[1] starts at 0.0: for non-negative doubles the bit patterns order like the values, so
// an unsigned 64-bit atomicMax on the bits is a max on the values.
extern "C" __global__ void vector_stats(const T* x, const long long n, double* out)
{
    __shared__ double sh[HP_THREADS];
    double ss = 0.0, mx = 0.0, bad = 0.0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const double v = (double)x[i];
        if (isfinite(v)) {
            ss += v * v;
            mx = fmax(mx, fabs(v));
        } else {
            bad += 1.0;
        }
    }
    ss = hp_block_sum(ss, sh);
    bad = hp_block_sum(bad, sh);
    mx = hp_block_max(mx, sh);
    if (threadIdx.x == 0) {
        atomicAdd(out + 0, ss);
        atomicMax((unsigned long long*)(out + 1), (unsigned long long)__double_as_longlong(mx));
        atomicAdd(out + 2, bad);
    }
}
"""
)


@register("vector_stats", "cupy")
def vector_stats_cupy(x: Any) -> tuple[float, float, int]:
    """CuPy twin of :func:`vector_stats_ref` (fused pass, block reductions + atomics)."""
    cp = cupy_module()
    flat = cp.ascontiguousarray(x).reshape(-1)
    out = cp.zeros(3, dtype=cp.float64)
    n = flat.size
    kernel = cupy_raw_module(STATS_CUPY_SOURCE, np.dtype(flat.dtype)).get_function("vector_stats")
    kernel(cupy_grid(n), (CUPY_THREADS,), (flat, np.int64(n), out))
    ss, mx, bad = (float(v) for v in out.get())
    return float(np.sqrt(ss)), mx, int(bad)


def vector_stats(x: Any) -> tuple[float, float, int]:
    """Dispatching entry point of :func:`vector_stats_ref`."""
    return dispatch("vector_stats", x)(x)
