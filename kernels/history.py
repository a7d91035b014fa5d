"""History kernels: the averaged (slow) trajectory, snapshot combinations, moves along a path.

The NumPy functions ending in ``_ref`` are the specification; faster twins register under
the same op name. Every op works in place on preallocated buffers so the hot path allocates
nothing of size N.
"""

from __future__ import annotations

import functools
import types
from typing import Any

import numba
import numpy as np

from ._dispatch import NUMBA_MIN_SIZE, dispatch, get_array_module, register
from ._gpu import cupy_module


def ema_update_stats_ref(
    theta: np.ndarray,
    prev: np.ndarray,
    prev_update: np.ndarray,
    ema: np.ndarray,
    beta: float,
) -> tuple[float, float, int]:
    """One fused pass after a full step: update statistics, then advance the buffers.

    With ``u = theta - prev``: returns ``(||u||, cos(u, prev_update), #non-finite theta)``
    and sets ``prev_update = u``, ``prev = theta``, ``ema = beta * ema + (1 - beta) * theta``.
    The cosine is 0 when either update is zero. ``beta = 0`` makes ``ema`` track ``theta``.
    """
    u = theta.astype(np.float64) - prev
    pu = prev_update.astype(np.float64)
    nn = float(u @ u)
    pp = float(pu @ pu)
    dot = float(u @ pu)
    nonfinite = int(theta.size - np.count_nonzero(np.isfinite(theta)))
    cos = dot / np.sqrt(nn * pp) if nn > 0.0 and pp > 0.0 else 0.0
    prev_update[...] = u
    prev[...] = theta
    ema *= beta
    ema += (1.0 - beta) * theta
    return float(np.sqrt(nn)), float(cos), nonfinite


@register("ema_update_stats", "numpy")
def ema_update_stats_numpy(
    theta: np.ndarray,
    prev: np.ndarray,
    prev_update: np.ndarray,
    ema: np.ndarray,
    beta: float,
) -> tuple[float, float, int]:
    """The CPU fallback of :func:`ema_update_stats_ref` for small vectors.

    Same contract, in the buffers' own precision: BLAS dot products instead of float64
    copies (the reference's casts cost 3x the arithmetic at N ~ 1e4-1e5, where the Numba
    twin is not used). Falls back to float64 only when a sum overflowed.
    """
    u = np.subtract(theta, prev)
    nn, pp, dot = float(np.dot(u, u)), float(np.dot(prev_update, prev_update)), float(
        np.dot(u, prev_update))
    nonfinite = 0
    if not (np.isfinite(nn) and np.isfinite(pp) and np.isfinite(dot)):
        nonfinite = int(theta.size - np.count_nonzero(np.isfinite(theta)))
        u64, pu64 = u.astype(np.float64), prev_update.astype(np.float64)
        nn, pp, dot = float(u64 @ u64), float(pu64 @ pu64), float(u64 @ pu64)
    cos = dot / np.sqrt(nn * pp) if nn > 0.0 and pp > 0.0 else 0.0
    prev_update[...] = u
    prev[...] = theta
    np.multiply(theta, 1.0 - beta, out=u)
    ema *= beta
    ema += u
    return float(np.sqrt(nn)), float(cos), nonfinite


def ema_update_ref(theta: np.ndarray, ema: np.ndarray, beta: float) -> float:
    """``ema = beta * ema + (1 - beta) * theta``; returns ``sum(theta**2)`` (float64).

    The cheap per-step op: the sum is non-finite exactly when ``theta`` holds a non-finite
    entry (or is too large to square), which is the engine's per-step check; the update
    statistics are taken every ``snapshot_interval`` steps by :func:`ema_update_stats_ref`.
    """
    t = theta.astype(np.float64)
    ema[...] = beta * ema.astype(np.float64) + (1.0 - beta) * t
    with np.errstate(over="ignore", invalid="ignore"):
        return float(t @ t)


@register("ema_update", "numpy")
@register("ema_update", "cupy")
def ema_update_xp(theta: Any, ema: Any, beta: float) -> float:
    """:func:`ema_update_ref` in the buffers' own precision, for NumPy and CuPy arrays alike
    (two element-wise passes and a BLAS dot; the float64 sum only when the float32 one
    overflowed)."""
    ema *= beta
    ema += (1.0 - beta) * theta
    with np.errstate(over="ignore", invalid="ignore"):
        sq = float(theta @ theta)
    if not np.isfinite(sq):
        xp = get_array_module(theta)
        t = theta.astype(xp.float64)
        sq = float(t @ t)
    return sq


@register("lincomb", "numpy")
def lincomb_ref(
    weights: np.ndarray, ring: np.ndarray, base: np.ndarray, base_weight: float, out: np.ndarray
) -> None:
    """``out = sum_i weights[i] * ring[i] + base_weight * base`` (a GEMV over snapshots)."""
    acc = weights.astype(np.float64) @ ring.astype(np.float64)
    acc += base_weight * base
    out[...] = acc


@register("axpy_path", "numpy")
def axpy_path_ref(theta: np.ndarray, origin: np.ndarray, direction: np.ndarray, frac: float) -> None:
    """``theta = origin + frac * direction``: predicted step k of H sets ``frac = k / H``."""
    np.multiply(direction, frac, out=theta)
    theta += origin


@register("copy", "numpy")
def copy_ref(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[...] = src``: snapshot push, save and restore."""
    dst[...] = src


@register("trend_r2", "numpy")
def trend_r2_ref(ring: np.ndarray, centred_times: np.ndarray) -> tuple[float, float]:
    """Sums of squares of a per-row least-squares line through the snapshots.

    ``ring`` is (C, N); ``centred_times`` (C,) the snapshot times minus their mean.
    Returns ``(ss_total, ss_explained)`` summed over all N coordinates, so that
    ``ss_explained / ss_total`` is the share of the window's spread that the line explains.
    """
    r = ring.astype(np.float64)
    dev = r - r.mean(axis=0)
    ss_total = float(np.sum(dev * dev))
    tt = float(centred_times @ centred_times)
    if tt == 0.0:
        return ss_total, 0.0
    slope = centred_times.astype(np.float64) @ dev / tt
    ss_explained = float(slope @ slope) * tt
    return ss_total, ss_explained


# ---------------------------------------------------------------------------------------------
# Numba CPU twins: one fused pass each, parallel over blocks of coordinates.
#
# Bandwidth-bound loops: every twin reads and writes each element once. The loops over the
# snapshot ring work in blocks of ``_BLOCK`` coordinates so that the innermost loop runs along
# contiguous memory (and vectorises) while the ring rows are swept one after the other.

_BLOCK = 4096
_NJIT = {"parallel": True, "fastmath": False, "cache": True}
# The same bodies on one thread, for vectors too small to pay for the threads: reassociation
# lets the reductions vectorise; NaN and Inf keep their IEEE meaning (no "nnan"/"ninf").
_NJIT_SERIAL = {"fastmath": {"reassoc", "contract"}, "cache": True}
# One thread and no fastmath: element-wise updates stay bit-identical to NumPy's (no FMA).
_NJIT_EXACT = {"cache": True}


def _jit_as(body: Any, name: str, flags: dict[str, Any]) -> Any:
    """``body`` jitted with ``flags`` under a name of its own. Numba's on-disk cache keys a
    function by its qualified name and line, not by its flags: a serial and a parallel build
    of one body under one name load each other's machine code (the parallel twin then never
    starts its threads, or the serial one does)."""
    fn = types.FunctionType(body.__code__, body.__globals__, name, body.__defaults__,
                            body.__closure__)
    fn.__qualname__ = name
    return numba.njit(**flags)(fn)


def _finish_update_stats(nn: float, pp: float, dot: float, bad: float) -> tuple[float, float, int]:
    """Host-side end of every ``ema_update_stats`` twin: sums of squares to (norm, cos, count)."""
    cos = dot / np.sqrt(nn * pp) if nn > 0.0 and pp > 0.0 else 0.0
    return float(np.sqrt(nn)), float(cos), int(bad)


def _ema_update_stats_body(theta, prev, prev_update, ema, beta):  # pragma: no cover - jitted
    nn = 0.0
    pp = 0.0
    dot = 0.0
    bad = 0
    keep = 1.0 - beta
    for i in numba.prange(theta.size):
        t = np.float64(theta[i])
        u = t - np.float64(prev[i])
        pu = np.float64(prev_update[i])
        nn += u * u
        pp += pu * pu
        dot += u * pu
        if not np.isfinite(t):
            bad += 1
        prev_update[i] = u
        prev[i] = theta[i]
        ema[i] = beta * np.float64(ema[i]) + keep * t
    return nn, pp, dot, bad


_ema_update_stats_loop = numba.njit(**_NJIT)(_ema_update_stats_body)
_ema_update_stats_serial = _jit_as(_ema_update_stats_body, "_ema_update_stats_serial", _NJIT_SERIAL)


def _ema_update_body(theta, ema, beta):  # pragma: no cover - jitted
    sq = 0.0
    keep = 1.0 - beta
    for i in numba.prange(theta.size):
        t = np.float64(theta[i])
        sq += t * t
        ema[i] = beta * np.float64(ema[i]) + keep * t
    return sq


_ema_update_loop = numba.njit(**_NJIT)(_ema_update_body)
_ema_update_serial = _jit_as(_ema_update_body, "_ema_update_serial", _NJIT_SERIAL)


@register("ema_update", "numba")
def ema_update_numba(theta: np.ndarray, ema: np.ndarray, beta: float) -> float:
    """Numba twin of :func:`ema_update_ref`: one fused pass, parallel from ``NUMBA_MIN_SIZE``
    elements, a single vectorised thread below (no thread start-up; 1.7x NumPy's two passes
    at N = 1e5 on a 2-core VM)."""
    if theta.size >= NUMBA_MIN_SIZE:
        return float(_ema_update_loop(theta, ema, float(beta)))
    return float(_ema_update_serial(theta, ema, float(beta)))


@register("ema_update_stats", "numba")
def ema_update_stats_numba(
    theta: np.ndarray, prev: np.ndarray, prev_update: np.ndarray, ema: np.ndarray, beta: float
) -> tuple[float, float, int]:
    """Numba twin of :func:`ema_update_stats_ref`: one fused pass, parallel from
    ``NUMBA_MIN_SIZE`` elements, on one thread below."""
    loop = _ema_update_stats_loop if theta.size >= NUMBA_MIN_SIZE else _ema_update_stats_serial
    nn, pp, dot, bad = loop(theta, prev, prev_update, ema, float(beta))
    return _finish_update_stats(nn, pp, dot, bad)


def _lincomb_body(weights, ring, base, base_weight, out):  # pragma: no cover - jitted
    c, n = ring.shape
    nblocks = (n + _BLOCK - 1) // _BLOCK
    for blk in numba.prange(nblocks):
        lo = blk * _BLOCK
        hi = min(n, lo + _BLOCK)
        acc = np.zeros(hi - lo, dtype=np.float64)
        for i in range(c):
            w = np.float64(weights[i])
            for j in range(lo, hi):
                acc[j - lo] += w * ring[i, j]
        for j in range(lo, hi):
            out[j] = acc[j - lo] + base_weight * np.float64(base[j])


_lincomb_loop = numba.njit(**_NJIT)(_lincomb_body)
_lincomb_serial = _jit_as(_lincomb_body, "_lincomb_serial", _NJIT_SERIAL)


@register("lincomb", "numba")
def lincomb_numba(
    weights: np.ndarray, ring: np.ndarray, base: np.ndarray, base_weight: float, out: np.ndarray
) -> None:
    """Numba twin of :func:`lincomb_ref` (float64 accumulation, one pass over the ring, no
    float64 copy of it), parallel from ``NUMBA_MIN_SIZE`` coordinates, on one thread below."""
    loop = _lincomb_loop if out.size >= NUMBA_MIN_SIZE else _lincomb_serial
    loop(weights, ring, base, float(base_weight), out)


def _axpy_path_body(theta, origin, direction, frac):  # pragma: no cover - jitted
    for i in numba.prange(theta.size):
        theta[i] = origin[i] + frac * direction[i]


_axpy_path_loop = numba.njit(**_NJIT)(_axpy_path_body)
_axpy_path_serial = _jit_as(_axpy_path_body, "_axpy_path_serial", _NJIT_EXACT)


@register("axpy_path", "numba")
def axpy_path_numba(theta: np.ndarray, origin: np.ndarray, direction: np.ndarray, frac: float) -> None:
    """Numba twin of :func:`axpy_path_ref`.

    ``frac`` is rounded to the buffers' dtype first, as NumPy does with a Python scalar, so the
    result is bit-identical to the reference.
    """
    loop = _axpy_path_loop if theta.size >= NUMBA_MIN_SIZE else _axpy_path_serial
    loop(theta, origin, direction, theta.dtype.type(frac))


@numba.njit(**_NJIT)
def _copy_loop(dst, src):  # pragma: no cover - jitted
    for i in numba.prange(dst.size):
        dst[i] = src[i]


# Not registered: a copy is a memcpy, which NumPy already runs at memory bandwidth. On the
# 2-core reference VM this parallel loop measured 1.1x at N = 1e6 (cache-resident) and
# 0.6-0.8x at N = 1e7 (benchmarks/KERNELS.md), so dispatch keeps NumPy's copy; the loop stays
# for machines where one core cannot saturate memory, and is tested against the reference.
def copy_numba(dst: np.ndarray, src: np.ndarray) -> None:
    """Numba twin of :func:`copy_ref` (parallel copy of 1-D buffers; not registered)."""
    if dst.ndim != 1 or src.ndim != 1:
        dst[...] = src  # ring rows and other shapes: NumPy's copy is already one pass
        return
    _copy_loop(dst, src)


def _trend_r2_body(ring, times, tt):  # pragma: no cover - jitted
    c, n = ring.shape
    nblocks = (n + _BLOCK - 1) // _BLOCK
    ss_total = 0.0
    ss_slope = 0.0
    for blk in numba.prange(nblocks):
        lo = blk * _BLOCK
        hi = min(n, lo + _BLOCK)
        mean = np.zeros(hi - lo, dtype=np.float64)
        for i in range(c):
            for j in range(lo, hi):
                mean[j - lo] += ring[i, j]
        for j in range(lo, hi):
            mean[j - lo] /= c
        slope = np.zeros(hi - lo, dtype=np.float64)
        st = 0.0
        for i in range(c):
            ti = times[i]
            for j in range(lo, hi):
                d = ring[i, j] - mean[j - lo]
                st += d * d
                slope[j - lo] += ti * d
        ss = 0.0
        for j in range(lo, hi):
            ss += slope[j - lo] * slope[j - lo]
        ss_total += st
        ss_slope += ss
    return ss_total, ss_slope


_trend_r2_loop = numba.njit(**_NJIT)(_trend_r2_body)
_trend_r2_serial = _jit_as(_trend_r2_body, "_trend_r2_serial", _NJIT_SERIAL)


@register("trend_r2", "numba")
def trend_r2_numba(ring: np.ndarray, centred_times: np.ndarray) -> tuple[float, float]:
    """Numba twin of :func:`trend_r2_ref` (one pass over the ring, no float64 copy of it),
    parallel from ``NUMBA_MIN_SIZE`` elements, on one thread below."""
    times = np.ascontiguousarray(centred_times, dtype=np.float64)
    tt = float(times @ times)
    if ring.shape[0] == 0:
        return 0.0, 0.0
    loop = _trend_r2_loop if ring.size >= NUMBA_MIN_SIZE else _trend_r2_serial
    ss_total, ss_slope = loop(ring, times, tt)
    if tt == 0.0:
        return float(ss_total), 0.0
    # sum_j (t . dev_j / tt)^2 * tt == sum_j (t . dev_j)^2 / tt
    return float(ss_total), float(ss_slope / tt)


# ---------------------------------------------------------------------------------------------
# CuPy RawKernel twins. One CUDA C source for the family, compiled per element type ``T``;
# grid-stride loops, block reductions in shared memory, one atomicAdd per block on doubles.

CUPY_THREADS = 256
CUPY_MAX_BLOCKS = 1024
# No fused multiply-add: axpy_path and the buffer updates then round exactly as NumPy does.
CUPY_OPTIONS = ("--fmad=false",)

BLOCK_REDUCE_SOURCE = r"""
#define HP_THREADS 256
// Sum v over the block; the result is valid in thread 0. blockDim.x must be HP_THREADS.
__device__ double hp_block_sum(double v, double* sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = HP_THREADS / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}
"""

HISTORY_CUPY_SOURCE = (
    BLOCK_REDUCE_SOURCE
    + r"""
// out[0..3] += (||u||^2, ||prev_update||^2, u . prev_update, #non-finite theta)
extern "C" __global__ void ema_update_stats(
    const T* theta, T* prev, T* prev_update, T* ema, const double beta,
    const long long n, double* out)
{
    __shared__ double sh[HP_THREADS];
    double nn = 0.0, pp = 0.0, dot = 0.0, bad = 0.0;
    const double keep = 1.0 - beta;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const double t = (double)theta[i];
        const double u = t - (double)prev[i];
        const double pu = (double)prev_update[i];
        nn += u * u;
        pp += pu * pu;
        dot += u * pu;
        if (!isfinite(t)) bad += 1.0;
        prev_update[i] = (T)u;
        prev[i] = theta[i];
        ema[i] = (T)(beta * (double)ema[i] + keep * t);
    }
    nn = hp_block_sum(nn, sh);
    pp = hp_block_sum(pp, sh);
    dot = hp_block_sum(dot, sh);
    bad = hp_block_sum(bad, sh);
    if (threadIdx.x == 0) {
        atomicAdd(out + 0, nn);
        atomicAdd(out + 1, pp);
        atomicAdd(out + 2, dot);
        atomicAdd(out + 3, bad);
    }
}

// out = sum_i w[i] * ring[i, :] + base_weight * base
extern "C" __global__ void lincomb(
    const double* w, const T* ring, const T* base, const double base_weight,
    const int c, const long long n, T* out)
{
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < n;
         j += (long long)blockDim.x * gridDim.x) {
        double acc = 0.0;
        for (int i = 0; i < c; ++i) acc += w[i] * (double)ring[(long long)i * n + j];
        out[j] = (T)(acc + base_weight * (double)base[j]);
    }
}

// theta = origin + frac * direction, in T like the NumPy reference
extern "C" __global__ void axpy_path(
    T* theta, const T* origin, const T* direction, const T frac, const long long n)
{
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < n;
         j += (long long)blockDim.x * gridDim.x) {
        theta[j] = origin[j] + frac * direction[j];
    }
}

// out[0] += sum of squared deviations from the per-column mean; out[1] += sum_j (t . dev_j)^2
extern "C" __global__ void trend_r2(
    const T* ring, const double* times, const int c, const long long n, double* out)
{
    __shared__ double sh[HP_THREADS];
    double st = 0.0, ss = 0.0;
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < n;
         j += (long long)blockDim.x * gridDim.x) {
        double mean = 0.0;
        for (int i = 0; i < c; ++i) mean += (double)ring[(long long)i * n + j];
        mean /= c;
        double slope = 0.0;
        for (int i = 0; i < c; ++i) {
            const double d = (double)ring[(long long)i * n + j] - mean;
            st += d * d;
            slope += times[i] * d;
        }
        ss += slope * slope;
    }
    st = hp_block_sum(st, sh);
    ss = hp_block_sum(ss, sh);
    if (threadIdx.x == 0) {
        atomicAdd(out + 0, st);
        atomicAdd(out + 1, ss);
    }
}
"""
)

CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


def cupy_source(source: str, dtype: Any) -> str:
    """``source`` specialised to the element type of ``dtype`` (``typedef ... T``)."""
    ctype = CTYPES[np.dtype(dtype)]
    return f"typedef {ctype} T;\n{source}"


def cupy_grid(n: int) -> tuple[int]:
    """Blocks for a grid-stride CuPy launch over ``n`` items."""
    return (max(1, min(CUPY_MAX_BLOCKS, -(-int(n) // CUPY_THREADS))),)


@functools.cache
def cupy_raw_module(source: str, dtype: np.dtype) -> Any:
    """The compiled CuPy module of ``source`` for ``dtype`` (one compile per pair)."""
    cp = cupy_module()
    if cp is None:
        msg = "CuPy kernels need cupy with a visible GPU (cupy.is_available() is False)"
        raise RuntimeError(msg)
    return cp.RawModule(code=cupy_source(source, dtype), options=CUPY_OPTIONS)


def _kernel(name: str, dtype: Any) -> Any:
    return cupy_raw_module(HISTORY_CUPY_SOURCE, np.dtype(dtype)).get_function(name)


@register("ema_update_stats", "cupy")
def ema_update_stats_cupy(
    theta: Any, prev: Any, prev_update: Any, ema: Any, beta: float
) -> tuple[float, float, int]:
    """CuPy twin of :func:`ema_update_stats_ref` (fused pass, block reduction + atomicAdd)."""
    cp = cupy_module()
    out = cp.zeros(4, dtype=cp.float64)
    n = theta.size
    _kernel("ema_update_stats", theta.dtype)(
        cupy_grid(n),
        (CUPY_THREADS,),
        (theta, prev, prev_update, ema, np.float64(beta), np.int64(n), out),
    )
    nn, pp, dot, bad = (float(v) for v in out.get())
    return _finish_update_stats(nn, pp, dot, bad)


@register("lincomb", "cupy")
def lincomb_cupy(weights: Any, ring: Any, base: Any, base_weight: float, out: Any) -> None:
    """CuPy twin of :func:`lincomb_ref` (one thread per coordinate, float64 accumulation)."""
    cp = cupy_module()
    c, n = ring.shape
    w = cp.ascontiguousarray(cp.asarray(weights, dtype=cp.float64))
    _kernel("lincomb", out.dtype)(
        cupy_grid(n),
        (CUPY_THREADS,),
        (w, cp.ascontiguousarray(ring), base, np.float64(base_weight), np.int32(c), np.int64(n), out),
    )


@register("axpy_path", "cupy")
def axpy_path_cupy(theta: Any, origin: Any, direction: Any, frac: float) -> None:
    """CuPy twin of :func:`axpy_path_ref` (bit-identical: no FMA, ``frac`` rounded to T)."""
    n = theta.size
    _kernel("axpy_path", theta.dtype)(
        cupy_grid(n),
        (CUPY_THREADS,),
        (theta, origin, direction, theta.dtype.type(frac), np.int64(n)),
    )


@register("copy", "cupy")
def copy_cupy(dst: Any, src: Any) -> None:
    """CuPy twin of :func:`copy_ref` (a device-to-device copy; no kernel needed)."""
    cupy_module().copyto(dst, src)


@register("trend_r2", "cupy")
def trend_r2_cupy(ring: Any, centred_times: Any) -> tuple[float, float]:
    """CuPy twin of :func:`trend_r2_ref` (one thread per coordinate, block reduction)."""
    cp = cupy_module()
    times = cp.ascontiguousarray(cp.asarray(centred_times, dtype=cp.float64))
    tt = float(times @ times)
    c, n = ring.shape
    if c == 0:
        return 0.0, 0.0
    out = cp.zeros(2, dtype=cp.float64)
    _kernel("trend_r2", ring.dtype)(
        cupy_grid(n),
        (CUPY_THREADS,),
        (cp.ascontiguousarray(ring), times, np.int32(c), np.int64(n), out),
    )
    ss_total, ss_slope = (float(v) for v in out.get())
    if tt == 0.0:
        return ss_total, 0.0
    return ss_total, ss_slope / tt


def ema_update_stats(
    theta: Any, prev: Any, prev_update: Any, ema: Any, beta: float
) -> tuple[float, float, int]:
    """Dispatching entry point of :func:`ema_update_stats_ref`."""
    return dispatch("ema_update_stats", theta)(theta, prev, prev_update, ema, beta)


def ema_update(theta: Any, ema: Any, beta: float) -> float:
    """Dispatching entry point of :func:`ema_update_ref`."""
    return dispatch("ema_update", theta)(theta, ema, beta)


def lincomb(weights: Any, ring: Any, base: Any, base_weight: float, out: Any) -> None:
    """Dispatching entry point of :func:`lincomb_ref`."""
    dispatch("lincomb", out)(weights, ring, base, base_weight, out)


def axpy_path(theta: Any, origin: Any, direction: Any, frac: float) -> None:
    """Dispatching entry point of :func:`axpy_path_ref`."""
    dispatch("axpy_path", theta)(theta, origin, direction, frac)


def copy(dst: Any, src: Any) -> None:
    """Dispatching entry point of :func:`copy_ref`."""
    dispatch("copy", dst)(dst, src)


def trend_r2(ring: Any, centred_times: Any) -> tuple[float, float]:
    """Dispatching entry point of :func:`trend_r2_ref`."""
    return dispatch("trend_r2", ring)(ring, centred_times)


# ---------------------------------------------------------------------------------------------
# shift: a kept jump moves every stored snapshot (and the average) by its displacement.


@register("shift", "numpy")
@register("shift", "cupy")
def shift_xp(x: Any, direction: Any, scale: float) -> None:
    """``x += scale * direction`` in place (NumPy and CuPy alike; one temporary of x's size)."""
    x += direction * x.dtype.type(scale)


def _shift_body(x, direction, scale):  # pragma: no cover - jitted
    for i in numba.prange(x.size):
        x[i] = x[i] + scale * direction[i]


_shift_loop = numba.njit(**_NJIT)(_shift_body)
_shift_serial = _jit_as(_shift_body, "_shift_serial", _NJIT_EXACT)


@register("shift", "numba")
def shift_numba(x: np.ndarray, direction: np.ndarray, scale: float) -> None:
    """Numba twin of :func:`shift_xp` (no temporary; ``scale`` rounded to x's dtype first, so
    the result is bit-identical to the reference)."""
    loop = _shift_loop if x.size >= NUMBA_MIN_SIZE else _shift_serial
    loop(x, direction, x.dtype.type(scale))


def shift(x: Any, direction: Any, scale: float) -> None:
    """``x += scale * direction`` through the dispatch (snapshot shift by a kept jump)."""
    dispatch("shift", x)(x, direction, scale)
