"""History kernels: the averaged (slow) trajectory, snapshot combinations, moves along a path.

The NumPy functions ending in ``_ref`` are the specification; faster twins register under
the same op name. Every op works in place on preallocated buffers so the hot path allocates
nothing of size N.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._dispatch import lookup, register


@register("ema_update_stats", "numpy")
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


def ema_update_stats(
    theta: Any, prev: Any, prev_update: Any, ema: Any, beta: float
) -> tuple[float, float, int]:
    """Dispatching entry point of :func:`ema_update_stats_ref`."""
    return lookup("ema_update_stats", theta)(theta, prev, prev_update, ema, beta)


def lincomb(weights: Any, ring: Any, base: Any, base_weight: float, out: Any) -> None:
    """Dispatching entry point of :func:`lincomb_ref`."""
    lookup("lincomb", out)(weights, ring, base, base_weight, out)


def axpy_path(theta: Any, origin: Any, direction: Any, frac: float) -> None:
    """Dispatching entry point of :func:`axpy_path_ref`."""
    lookup("axpy_path", theta)(theta, origin, direction, frac)


def copy(dst: Any, src: Any) -> None:
    """Dispatching entry point of :func:`copy_ref`."""
    lookup("copy", dst)(dst, src)


def trend_r2(ring: Any, centred_times: Any) -> tuple[float, float]:
    """Dispatching entry point of :func:`trend_r2_ref`."""
    return lookup("trend_r2", ring)(ring, centred_times)
