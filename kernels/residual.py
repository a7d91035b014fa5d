"""Residual-store kernels: similarity weights over stored state keys, weighted correction.

The residual store keeps, for each past jump, the state key ``s_t`` it was taken in and the
per-group residual it left. A new forecast is corrected by the residuals of similar states:
weights are a softmax over temperature of the cosine similarity between the current key and
each stored key, and the correction is the weighted sum of the stored residuals.

A stored key (or the query) that is not finite takes no part: its weight is 0; with no finite
similarity at all every weight is 0 and the correction is 0.
"""

from __future__ import annotations

import functools
import math
import types
from typing import Any

import numba
import numpy as np

from ._dispatch import dispatch, get_array_module, register
from ._gpu import cuda_kernel, launch_config

# numba.cuda, bound on first use of a CUDA twin (see _gpu.cuda_kernel); never imported here.
cuda: Any = None

# Threads of the one-block softmax kernel (a power of two: the tree reduction halves it).
SOFTMAX_THREADS = 64


@register("residual_weights", "numpy")
def residual_weights_ref(query: np.ndarray, keys: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax over ``cos(query, keys[m]) / temperature``; 0 for non-finite similarities.

    A zero key or query has similarity 0 (not NaN).

    Args:
        query: (d,) state key now.
        keys: (M, d) stored keys; M may be 0.
        temperature: > 0; small values pick the nearest key.

    Returns:
        (M,) float64 weights summing to 1, or all zero when no similarity is finite.

    Example:
        >>> keys = np.array([[1.0, 0.0], [0.0, 1.0]])
        >>> residual_weights_ref(np.array([1.0, 0.0]), keys, temperature=1.0).round(4)
        array([0.7311, 0.2689])
    """
    q = np.asarray(query, dtype=np.float64)
    k = np.asarray(keys, dtype=np.float64)
    with np.errstate(all="ignore"):
        dot = k @ q
        den = np.sqrt(np.einsum("md,md->m", k, k)) * np.sqrt(q @ q)
        ok = np.isfinite(dot) & np.isfinite(den)
        cos = np.where(den > 0.0, dot / np.where(den > 0.0, den, 1.0), 0.0)
        logits = np.where(ok, cos / temperature, -np.inf)
    if logits.size == 0 or not np.isfinite(logits.max()):
        return np.zeros(logits.shape[0])
    e = np.exp(logits - logits.max())
    return e / e.sum()


@register("residual_correct", "numpy")
def residual_correct_ref(weights: np.ndarray, residuals: np.ndarray) -> np.ndarray:
    """``sum_m weights[m] * residuals[m]`` over the entries with a non-zero weight.

    Entries of weight 0 are skipped, so a non-finite residual that no similar state points to
    cannot poison the correction.

    Args:
        weights: (M,) from :func:`residual_weights_ref`.
        residuals: (M, G) stored per-group residuals.

    Returns:
        (G,) float64 correction.

    Example:
        >>> residual_correct_ref(np.array([0.25, 0.75, 0.0]), np.array([[4.0], [0.0], [np.nan]]))
        array([1.])
    """
    w = np.asarray(weights, dtype=np.float64)
    r = np.asarray(residuals, dtype=np.float64)
    used = w != 0.0
    return w[used] @ r[used]


# ---------------------------------------------------------------------------------------------
# Scalar maths, one @numba.njit source for the CPU loops and the CUDA kernels.


@numba.njit(cache=True)
def _cos_logit(query, keys, m, qnorm, temperature):  # pragma: no cover - jitted
    dot = 0.0
    kk = 0.0
    for j in range(query.shape[0]):
        kj = numba.float64(keys[m, j])
        dot += numba.float64(query[j]) * kj
        kk += kj * kj
    den = math.sqrt(kk) * qnorm
    if not (math.isfinite(dot) and math.isfinite(den)):
        return -math.inf
    if den > 0.0:
        return dot / den / temperature
    return 0.0


@numba.njit(cache=True)
def _query_norm(query):  # pragma: no cover - jitted
    qq = 0.0
    for j in range(query.shape[0]):
        qq += numba.float64(query[j]) * numba.float64(query[j])
    return math.sqrt(qq)


@numba.njit(cache=True)
def _weighted_col(weights, residuals, g):  # pragma: no cover - jitted
    acc = 0.0
    for m in range(weights.shape[0]):
        w = numba.float64(weights[m])
        if w != 0.0:
            acc += w * numba.float64(residuals[m, g])
    return acc


# ---------------------------------------------------------------------------------------------
# Numba CPU twins. M and G are small (a bounded store, a few parameter groups): serial loops.


@numba.njit(cache=True)
def _weights_loop(query, keys, temperature, out):  # pragma: no cover - jitted
    qn = _query_norm(query)
    mx = -math.inf
    for m in range(keys.shape[0]):
        out[m] = _cos_logit(query, keys, m, qn, temperature)
        if out[m] > mx:
            mx = out[m]
    if mx == -math.inf:
        out[:] = 0.0
        return
    total = 0.0
    for m in range(keys.shape[0]):
        out[m] = math.exp(out[m] - mx)
        total += out[m]
    for m in range(keys.shape[0]):
        out[m] /= total


@numba.njit(cache=True)
def _correct_loop(weights, residuals, out):  # pragma: no cover - jitted
    for g in range(residuals.shape[1]):
        out[g] = _weighted_col(weights, residuals, g)


@register("residual_weights", "numba")
def residual_weights_numba(query: np.ndarray, keys: np.ndarray, temperature: float) -> np.ndarray:
    """Numba twin of :func:`residual_weights_ref`."""
    out = np.empty(keys.shape[0], dtype=np.float64)
    _weights_loop(query, keys, float(temperature), out)
    return out


@register("residual_correct", "numba")
def residual_correct_numba(weights: np.ndarray, residuals: np.ndarray) -> np.ndarray:
    """Numba twin of :func:`residual_correct_ref`."""
    out = np.empty(residuals.shape[1], dtype=np.float64)
    _correct_loop(weights, residuals, out)
    return out


# ---------------------------------------------------------------------------------------------
# Numba CUDA twins: logits grid-stride over keys, then a one-block softmax (shared-memory tree
# reductions for the max and the sum); the correction is grid-stride over groups.


def _logits_kernel(query, keys, temperature, out):  # pragma: no cover - device code
    qn = _query_norm(query)
    for m in range(cuda.grid(1), keys.shape[0], cuda.gridsize(1)):
        out[m] = _cos_logit(query, keys, m, qn, temperature)


def _softmax_kernel(w):  # pragma: no cover - device code
    sh = cuda.shared.array(SOFTMAX_THREADS, numba.float64)
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    m = w.shape[0]
    mx = -math.inf
    for i in range(t, m, nt):
        if w[i] > mx:
            mx = w[i]
    sh[t] = mx
    cuda.syncthreads()
    s = nt // 2
    while s > 0:
        if t < s and sh[t + s] > sh[t]:
            sh[t] = sh[t + s]
        cuda.syncthreads()
        s //= 2
    mx = sh[0]
    cuda.syncthreads()
    acc = 0.0
    for i in range(t, m, nt):
        e = math.exp(w[i] - mx) if mx > -math.inf else 0.0
        w[i] = e
        acc += e
    sh[t] = acc
    cuda.syncthreads()
    s = nt // 2
    while s > 0:
        if t < s:
            sh[t] += sh[t + s]
        cuda.syncthreads()
        s //= 2
    total = sh[0]
    if total > 0.0:
        for i in range(t, m, nt):
            w[i] = w[i] / total


def _correct_kernel(weights, residuals, out):  # pragma: no cover - device code
    for g in range(cuda.grid(1), residuals.shape[1], cuda.gridsize(1)):
        out[g] = _weighted_col(weights, residuals, g)


CUDA_KERNELS = {
    "residual_logits": _logits_kernel,
    "residual_softmax": _softmax_kernel,
    "residual_correct": _correct_kernel,
}


@functools.cache
def _cuda_kernels() -> types.SimpleNamespace:
    return types.SimpleNamespace(**{k: cuda_kernel(fn) for k, fn in CUDA_KERNELS.items()})


@register("residual_weights", "cuda")
def residual_weights_cuda(query: Any, keys: Any, temperature: float) -> Any:
    """Numba CUDA twin of :func:`residual_weights_ref` (two launches: logits, softmax)."""
    xp = get_array_module(keys)
    out = xp.empty(keys.shape[0], dtype=xp.float64)
    k = _cuda_kernels()
    blocks, threads = launch_config(keys.shape[0])
    k.residual_logits[blocks, threads](query, keys, float(temperature), out)
    _, threads = launch_config(keys.shape[0], threads=SOFTMAX_THREADS)
    k.residual_softmax[1, threads](out)
    return out


@register("residual_correct", "cuda")
def residual_correct_cuda(weights: Any, residuals: Any) -> Any:
    """Numba CUDA twin of :func:`residual_correct_ref` (one thread per group)."""
    xp = get_array_module(residuals)
    out = xp.empty(residuals.shape[1], dtype=xp.float64)
    blocks, threads = launch_config(residuals.shape[1])
    _cuda_kernels().residual_correct[blocks, threads](weights, residuals, out)
    return out


def residual_weights(query: Any, keys: Any, temperature: float) -> Any:
    """Dispatching entry point of :func:`residual_weights_ref`."""
    return dispatch("residual_weights", keys)(query, keys, temperature)


def residual_correct(weights: Any, residuals: Any) -> Any:
    """Dispatching entry point of :func:`residual_correct_ref`."""
    return dispatch("residual_correct", residuals)(weights, residuals)
