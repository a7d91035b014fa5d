"""LinUCB kernels: upper-confidence scores of all arms, Sherman-Morrison update of one arm.

Disjoint LinUCB with a full matrix per arm: arm ``a`` keeps ``A_a = I * lambda + sum x x^T``
and ``b_a = sum r x``; the kernels work on ``A_a^{-1}`` directly (``a_inv``, (K, d, d)) and
keep it current with the Sherman-Morrison identity, so no matrix is ever inverted.

References:
    Li, Chu, Langford, Schapire (2010), A Contextual-Bandit Approach to Personalized News
    Article Recommendation, WWW 2010 (Algorithm 1).
    Sherman, Morrison (1950), Adjustment of an Inverse Matrix Corresponding to a Change in
    One Element of a Given Matrix.
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


@register("linucb_scores", "numpy")
def linucb_scores_ref(a_inv: np.ndarray, b: np.ndarray, x: np.ndarray, alpha: float) -> np.ndarray:
    """Score of every arm: ``theta_a . x + alpha * sqrt(x^T A_a^{-1} x)``, ``theta_a = A_a^{-1} b_a``.

    A variance that rounding pushed below zero counts as zero.

    Args:
        a_inv: (K, d, d) inverse design matrices.
        b: (K, d) reward-weighted context sums.
        x: (d,) context.
        alpha: width of the confidence bonus.

    Returns:
        (K,) float64 scores; the arm to play is their argmax.

    Example:
        >>> a_inv = np.stack([np.eye(2), 0.5 * np.eye(2)])
        >>> b = np.array([[1.0, 0.0], [0.0, 0.0]])
        >>> linucb_scores_ref(a_inv, b, np.array([1.0, 0.0]), alpha=2.0).round(4)
        array([3.    , 1.4142])
    """
    a = np.asarray(a_inv, dtype=np.float64)
    xx = np.asarray(x, dtype=np.float64)
    theta = np.einsum("kij,kj->ki", a, np.asarray(b, dtype=np.float64))
    var = np.einsum("i,kij,j->k", xx, a, xx)
    return theta @ xx + alpha * np.sqrt(np.maximum(var, 0.0))


@register("linucb_update", "numpy")
def linucb_update_ref(a_inv: np.ndarray, b: np.ndarray, arm: int, x: np.ndarray, reward: float) -> None:
    """In place, for arm ``arm`` only: ``A^{-1} <- (A + x x^T)^{-1}``, ``b <- b + reward * x``.

    Sherman-Morrison: ``(A + x x^T)^{-1} = A^{-1} - (A^{-1} x)(x^T A^{-1}) / (1 + x^T A^{-1} x)``.

    Example:
        >>> a_inv, b = np.stack([np.eye(2)]), np.zeros((1, 2))
        >>> linucb_update_ref(a_inv, b, 0, np.array([1.0, 0.0]), reward=1.0)
        >>> a_inv[0], b[0]
        (array([[0.5, 0. ],
               [0. , 1. ]]), array([1., 0.]))
    """
    a = a_inv[arm].astype(np.float64)
    xx = np.asarray(x, dtype=np.float64)
    u = a @ xx
    v = xx @ a
    a_inv[arm] = a - np.outer(u, v) / (1.0 + xx @ u)
    b[arm] += reward * xx


# ---------------------------------------------------------------------------------------------
# Scalar maths, one @numba.njit source for the CPU loops and the CUDA kernels.


@numba.njit(cache=True)
def _arm_score(a_inv, b, arm, x, alpha):  # pragma: no cover - jitted
    d = x.shape[0]
    mean = 0.0
    var = 0.0
    for i in range(d):
        ti = 0.0
        vi = 0.0
        for j in range(d):
            aij = a_inv[arm, i, j]
            ti += aij * b[arm, j]
            vi += aij * x[j]
        mean += ti * x[i]
        var += vi * x[i]
    if var < 0.0:
        var = 0.0
    return mean + alpha * math.sqrt(var)


@numba.njit(cache=True)
def _sm_uv(a_inv, arm, x, i, uv):  # pragma: no cover - jitted
    # uv[0, i] = (A^{-1} x)_i, uv[1, i] = (x^T A^{-1})_i
    u = 0.0
    v = 0.0
    for j in range(x.shape[0]):
        u += a_inv[arm, i, j] * x[j]
        v += x[j] * a_inv[arm, j, i]
    uv[0, i] = u
    uv[1, i] = v


@numba.njit(cache=True)
def _sm_apply(a_inv, b, arm, x, reward, uv, e):  # pragma: no cover - jitted
    # Entry e of the update: e < d*d is A^{-1}[e // d, e % d], the next d are b.
    d = x.shape[0]
    if e < d * d:
        den = 1.0
        for j in range(d):
            den += x[j] * uv[0, j]
        i = e // d
        j = e - i * d
        a_inv[arm, i, j] = a_inv[arm, i, j] - uv[0, i] * uv[1, j] / den
    else:
        i = e - d * d
        b[arm, i] = b[arm, i] + reward * x[i]


# ---------------------------------------------------------------------------------------------
# Numba CPU twins. K and d are small (a handful of horizons, a state of a few dozen numbers):
# threads would cost more than they save, so these loops are serial.


@numba.njit(cache=True)
def _scores_loop(a_inv, b, x, alpha, out):  # pragma: no cover - jitted
    for arm in range(a_inv.shape[0]):
        out[arm] = _arm_score(a_inv, b, arm, x, alpha)


@numba.njit(cache=True)
def _update_loop(a_inv, b, arm, x, reward, uv):  # pragma: no cover - jitted
    d = x.shape[0]
    for i in range(d):
        _sm_uv(a_inv, arm, x, i, uv)
    for e in range(d * d + d):
        _sm_apply(a_inv, b, arm, x, reward, uv, e)


def _context(x: Any, xp: types.ModuleType) -> Any:
    return xp.ascontiguousarray(xp.asarray(x, dtype=xp.float64))


@register("linucb_scores", "numba")
def linucb_scores_numba(a_inv: np.ndarray, b: np.ndarray, x: np.ndarray, alpha: float) -> np.ndarray:
    """Numba twin of :func:`linucb_scores_ref`."""
    out = np.empty(a_inv.shape[0], dtype=np.float64)
    _scores_loop(a_inv, b, _context(x, np), float(alpha), out)
    return out


@register("linucb_update", "numba")
def linucb_update_numba(a_inv: np.ndarray, b: np.ndarray, arm: int, x: np.ndarray, reward: float) -> None:
    """Numba twin of :func:`linucb_update_ref`."""
    xx = _context(x, np)
    uv = np.empty((2, xx.shape[0]))
    _update_loop(a_inv, b, int(arm), xx, float(reward), uv)


# ---------------------------------------------------------------------------------------------
# Numba CUDA twins: grid-stride over arms; the update is two launches (A^{-1} x and x^T A^{-1}
# first, then every entry), the launch boundary standing in for a grid-wide barrier.


def _scores_kernel(a_inv, b, x, alpha, out):  # pragma: no cover - device code
    for arm in range(cuda.grid(1), a_inv.shape[0], cuda.gridsize(1)):
        out[arm] = _arm_score(a_inv, b, arm, x, alpha)


def _uv_kernel(a_inv, arm, x, uv):  # pragma: no cover - device code
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        _sm_uv(a_inv, arm, x, i, uv)


def _apply_kernel(a_inv, b, arm, x, reward, uv):  # pragma: no cover - device code
    d = x.shape[0]
    for e in range(cuda.grid(1), d * d + d, cuda.gridsize(1)):
        _sm_apply(a_inv, b, arm, x, reward, uv, e)


CUDA_KERNELS = {
    "linucb_scores": _scores_kernel,
    "linucb_uv": _uv_kernel,
    "linucb_apply": _apply_kernel,
}


@functools.cache
def _cuda_kernels() -> types.SimpleNamespace:
    return types.SimpleNamespace(**{k: cuda_kernel(fn) for k, fn in CUDA_KERNELS.items()})


@register("linucb_scores", "cuda")
def linucb_scores_cuda(a_inv: Any, b: Any, x: Any, alpha: float) -> Any:
    """Numba CUDA twin of :func:`linucb_scores_ref` (one thread per arm)."""
    xp = get_array_module(a_inv)
    out = xp.empty(a_inv.shape[0], dtype=xp.float64)
    blocks, threads = launch_config(a_inv.shape[0])
    _cuda_kernels().linucb_scores[blocks, threads](a_inv, b, _context(x, xp), float(alpha), out)
    return out


@register("linucb_update", "cuda")
def linucb_update_cuda(a_inv: Any, b: Any, arm: int, x: Any, reward: float) -> None:
    """Numba CUDA twin of :func:`linucb_update_ref` (two grid-stride launches)."""
    xp = get_array_module(a_inv)
    xx = _context(x, xp)
    d = xx.shape[0]
    uv = xp.empty((2, d), dtype=xp.float64)
    k = _cuda_kernels()
    blocks, threads = launch_config(d)
    k.linucb_uv[blocks, threads](a_inv, int(arm), xx, uv)
    blocks, threads = launch_config(d * d + d)
    k.linucb_apply[blocks, threads](a_inv, b, int(arm), xx, float(reward), uv)


def linucb_scores(a_inv: Any, b: Any, x: Any, alpha: float) -> Any:
    """Dispatching entry point of :func:`linucb_scores_ref`."""
    return dispatch("linucb_scores", a_inv)(a_inv, b, x, alpha)


def linucb_update(a_inv: Any, b: Any, arm: int, x: Any, reward: float) -> None:
    """Dispatching entry point of :func:`linucb_update_ref`."""
    dispatch("linucb_update", a_inv)(a_inv, b, arm, x, reward)
