"""Nowcast kernels: a tiny MLP or GRU applied to each parameter's window, weights shared.

Every parameter (row ``n`` of ``windows``, shape ``(N, C)``, already normalised) is a
sample; all rows share one small set of weights (WNN's and NiNo's shape). The forward passes
are elementwise over N, which is what the parallel and GPU twins are for; the backward passes
sum weight gradients over a sampled subset ``idx`` of rows.

Functions are pure: weights come in as a small named tuple of arrays, gradients go out as
the same named tuple (float64). Maths runs in float64 whatever the dtype of ``windows``;
outputs that are per parameter take the dtype of ``windows``.

Conventions of the layers (PyTorch's, so weights can be cross-checked there):

- MLP: ``y = w2 . tanh(x @ w1 + b1) + b2``.
- GRU cell, scalar input ``x_t`` per step, hidden ``h`` of size ``Hd``, gates ``g`` in
  (z, r, n) = (0, 1, 2)::

      z = sigmoid(wx[0] x_t + bx[0] + wh[0] @ h + bh[0])
      r = sigmoid(wx[1] x_t + bx[1] + wh[1] @ h + bh[1])
      n = tanh(wx[2] x_t + bx[2] + r * (wh[2] @ h + bh[2]))
      h' = (1 - z) * n + z * h

  run from ``h = 0`` over the C steps of the window, then a readout
  ``y = w_out . h_C + b_out``.
- Categorical sampling by the Gumbel-max trick on noise passed in, so it is deterministic.

References:
    Jang, Gu, Poole (2017), Categorical Reparameterization with Gumbel-Softmax.
    Cho et al. (2014), Learning Phrase Representations using RNN Encoder-Decoder (GRU).
    Hafner et al. (2023), Mastering Diverse Domains through World Models (DreamerV3).
    Knyazev et al. (2025), Accelerating Training with Neuron Interaction and Nowcasting
    Networks (NiNo); Jang et al. (2023), Learning to Boost Training by Periodic Nowcasting
    Near Future Weights (WNN).
"""

from __future__ import annotations

import functools
import math
import types
from typing import Any, NamedTuple

import numba
import numpy as np

from ._dispatch import dispatch, get_array_module, register
from ._gpu import cuda_kernel, device_weights, launch_config

# numba.cuda, bound on first use of a CUDA twin (see _gpu.cuda_kernel); never imported here.
cuda: Any = None

# Uniform noise is clipped into [_EPS, 1 - _EPS] before the Gumbel transform.
GUMBEL_EPS = 1e-12


class MLPWeights(NamedTuple):
    """Weights (or their gradients) of the per-parameter MLP."""

    w1: Any  # (C, H) window-to-hidden
    b1: Any  # (H,)
    w2: Any  # (H,) hidden-to-output
    b2: Any  # (1,)


class GRUWeights(NamedTuple):
    """Weights (or their gradients) of the per-parameter GRU with a linear readout."""

    wx: Any  # (3, Hd) input weights of the z, r, n gates (one scalar input per step)
    wh: Any  # (3, Hd, Hd) recurrent weights; wh[g, j, k] maps h[k] into gate g, unit j
    bx: Any  # (3, Hd) input biases
    bh: Any  # (3, Hd) recurrent biases (bh[2] sits inside the reset product)
    w_out: Any  # (Hd,) readout
    b_out: Any  # (1,)


def init_mlp(window: int, hidden: int, rng: np.random.Generator) -> MLPWeights:
    """Glorot-uniform MLP weights (float64) for windows of length ``window``.

    Example:
        >>> w = init_mlp(8, 16, np.random.default_rng(0))
        >>> [a.shape for a in w]
        [(8, 16), (16,), (16,), (1,)]
    """
    lim1 = math.sqrt(6.0 / (window + hidden))
    lim2 = math.sqrt(6.0 / (hidden + 1))
    return MLPWeights(
        rng.uniform(-lim1, lim1, (window, hidden)),
        np.zeros(hidden),
        rng.uniform(-lim2, lim2, hidden),
        np.zeros(1),
    )


def init_gru(hidden: int, rng: np.random.Generator) -> GRUWeights:
    """GRU weights (float64) drawn like PyTorch's: uniform in ``+-1/sqrt(hidden)``.

    Example:
        >>> w = init_gru(8, np.random.default_rng(0))
        >>> [a.shape for a in w]
        [(3, 8), (3, 8, 8), (3, 8), (3, 8), (8,), (1,)]
    """
    k = 1.0 / math.sqrt(hidden)
    return GRUWeights(
        rng.uniform(-k, k, (3, hidden)),
        rng.uniform(-k, k, (3, hidden, hidden)),
        rng.uniform(-k, k, (3, hidden)),
        rng.uniform(-k, k, (3, hidden)),
        rng.uniform(-k, k, hidden),
        np.zeros(1),
    )


# ---------------------------------------------------------------------------------------------
# NumPy references (the specification)


def _sigmoid_ref(a: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@register("mlp_forward", "numpy")
def mlp_forward_ref(windows: np.ndarray, weights: MLPWeights) -> np.ndarray:
    """Forecast of every row: ``y[n] = w2 . tanh(windows[n] @ w1 + b1) + b2``.

    Args:
        windows: (N, C) normalised windows, one row per parameter.
        weights: :class:`MLPWeights`.

    Returns:
        (N,) forecasts, in the dtype of ``windows``.

    Example:
        >>> w = init_mlp(4, 3, np.random.default_rng(0))
        >>> mlp_forward_ref(np.zeros((2, 4), np.float32), w)
        array([0., 0.], dtype=float32)
    """
    w1, b1, w2, b2 = (np.asarray(a, dtype=np.float64) for a in weights)
    hid = np.tanh(windows.astype(np.float64) @ w1 + b1)
    return (hid @ w2 + b2[0]).astype(windows.dtype)


@register("mlp_backward", "numpy")
def mlp_backward_ref(
    windows: np.ndarray, idx: np.ndarray, dout: np.ndarray, weights: MLPWeights
) -> MLPWeights:
    """Weight gradients of ``sum_s dout[s] * y[idx[s]]`` (a vector-Jacobian product).

    The caller picks the loss: for ``L = sum_s 0.5 * (y[idx[s]] - target[s])**2`` pass
    ``dout = y[idx] - target``. A row sampled twice counts twice.

    Args:
        windows: (N, C) normalised windows.
        idx: (S,) integer rows of the sample.
        dout: (S,) upstream gradient ``dL/dy`` of each sampled row.
        weights: :class:`MLPWeights`.

    Returns:
        :class:`MLPWeights` of float64 gradients, summed over the sample.
    """
    w1, b1, w2, _ = (np.asarray(a, dtype=np.float64) for a in weights)
    x = windows[np.asarray(idx, dtype=np.int64)].astype(np.float64)
    d = np.asarray(dout, dtype=np.float64)
    t = np.tanh(x @ w1 + b1)
    da = (d[:, None] * w2) * (1.0 - t * t)
    return MLPWeights(x.T @ da, da.sum(axis=0), t.T @ d, np.array([d.sum()]))


def _gru_gates_ref(xt: np.ndarray, h: np.ndarray, w: tuple[np.ndarray, ...]) -> tuple:
    wx, wh, bx, bh = w[:4]
    z = _sigmoid_ref(xt[:, None] * wx[0] + bx[0] + h @ wh[0].T + bh[0])
    r = _sigmoid_ref(xt[:, None] * wx[1] + bx[1] + h @ wh[1].T + bh[1])
    g = h @ wh[2].T + bh[2]
    n = np.tanh(xt[:, None] * wx[2] + bx[2] + r * g)
    return z, r, n, g


@register("gru_forward", "numpy")
def gru_forward_ref(windows: np.ndarray, weights: GRUWeights) -> tuple[np.ndarray, np.ndarray]:
    """Run the GRU over every row's window from ``h = 0``; read out one forecast per row.

    Args:
        windows: (N, C) normalised windows; step t of row n feeds ``windows[n, t]``.
        weights: :class:`GRUWeights`.

    Returns:
        ``(y, h)``: (N,) forecasts and (N, Hd) final hidden states, in the dtype of
        ``windows`` (the hidden state feeds a categorical latent head, for example).

    Example:
        >>> w = init_gru(4, np.random.default_rng(0))
        >>> y, h = gru_forward_ref(np.zeros((3, 5), np.float32), w)
        >>> y.shape, h.shape
        ((3,), (3, 4))
    """
    w = tuple(np.asarray(a, dtype=np.float64) for a in weights)
    x = windows.astype(np.float64)
    h = np.zeros((x.shape[0], w[0].shape[1]))
    for t in range(x.shape[1]):
        z, _, n, _ = _gru_gates_ref(x[:, t], h, w)
        h = (1.0 - z) * n + z * h
    y = h @ w[4] + w[5][0]
    return y.astype(windows.dtype), h.astype(windows.dtype)


@register("gru_backward", "numpy")
def gru_backward_ref(
    windows: np.ndarray,
    idx: np.ndarray,
    dout: np.ndarray,
    weights: GRUWeights,
    dh: np.ndarray | None = None,
    bptt: int | None = None,
) -> GRUWeights:
    """Weight gradients of ``sum_s dout[s] * y[idx[s]] + dh[s] . h[idx[s]]`` by BPTT.

    Back-propagation through time over the window of each sampled row, truncated to its last
    ``bptt`` steps (``None``: the whole window); earlier steps still run forward.

    Args:
        windows: (N, C) normalised windows.
        idx: (S,) integer rows of the sample.
        dout: (S,) upstream gradient of the readout of each sampled row.
        weights: :class:`GRUWeights`.
        dh: optional (S, Hd) upstream gradient of the final hidden state (a latent head).
        bptt: number of steps the gradient flows back through (``None`` or >= C: all).

    Returns:
        :class:`GRUWeights` of float64 gradients, summed over the sample.
    """
    w = tuple(np.asarray(a, dtype=np.float64) for a in weights)
    wx, wh, _, _, w_out, _ = w
    x = windows[np.asarray(idx, dtype=np.int64)].astype(np.float64)
    s_count, c = x.shape
    hd = wx.shape[1]
    d = np.asarray(dout, dtype=np.float64)
    hs = [np.zeros((s_count, hd))]
    for t in range(c):
        z, _, n, _ = _gru_gates_ref(x[:, t], hs[-1], w)
        hs.append((1.0 - z) * n + z * hs[-1])
    g_wx, g_wh = np.zeros_like(wx), np.zeros_like(wh)
    g_bx, g_bh = np.zeros_like(wx), np.zeros_like(wx)
    g_wout = hs[-1].T @ d
    g_bout = np.array([d.sum()])
    dht = d[:, None] * w_out
    if dh is not None:
        dht = dht + np.asarray(dh, dtype=np.float64)
    stop = 0 if bptt is None else max(0, c - int(bptt))
    for t in range(c - 1, stop - 1, -1):
        h = hs[t]
        z, r, n, g = _gru_gates_ref(x[:, t], h, w)
        da_z = dht * (h - n) * z * (1.0 - z)
        da_n = dht * (1.0 - z) * (1.0 - n * n)
        da_r = da_n * g * r * (1.0 - r)
        dg = da_n * r
        for gate, da in enumerate((da_z, da_r, da_n)):
            g_wx[gate] += da.T @ x[:, t]
            g_bx[gate] += da.sum(axis=0)
        for gate, da in enumerate((da_z, da_r, dg)):
            g_bh[gate] += da.sum(axis=0)
            g_wh[gate] += da.T @ h
        dht = dht * z + da_z @ wh[0] + da_r @ wh[1] + dg @ wh[2]
    return GRUWeights(g_wx, g_wh, g_bx, g_bh, g_wout, g_bout)


@register("categorical_sample", "numpy")
def categorical_sample_ref(logits: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Gumbel-max draw per row: ``argmax_k(logits - log(-log(u)))``.

    ``uniform`` (same shape as ``logits``, (N, K)) is the noise, clipped into
    ``[GUMBEL_EPS, 1 - GUMBEL_EPS]``; passing it in keeps the draw deterministic. A NaN
    score never wins; a row with no finite or infinite winner (all NaN) draws class 0.

    Returns:
        (N,) int64 class indices.

    Example:
        >>> categorical_sample_ref(np.array([[0.0, 5.0]]), np.array([[0.5, 0.5]]))
        array([1])
    """
    u = np.clip(np.asarray(uniform, dtype=np.float64), GUMBEL_EPS, 1.0 - GUMBEL_EPS)
    score = np.asarray(logits, dtype=np.float64) - np.log(-np.log(u))
    score = np.where(np.isnan(score), -np.inf, score)
    if score.shape[1] == 0:
        return np.zeros(score.shape[0], dtype=np.int64)
    return np.argmax(score, axis=1).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Scalar maths, one @numba.njit source for the CPU loops and the CUDA kernels.


@numba.njit(cache=True)
def _sigmoid(a):  # pragma: no cover - jitted
    if a >= 0.0:
        return 1.0 / (1.0 + math.exp(-a))
    e = math.exp(a)
    return e / (1.0 + e)


@numba.njit(cache=True)
def _mlp_row(x, n, w1, b1, w2, b2):  # pragma: no cover - jitted
    c, hdim = w1.shape
    y = b2[0]
    for h in range(hdim):
        a = b1[h]
        for i in range(c):
            a += numba.float64(x[n, i]) * w1[i, h]
        y += w2[h] * math.tanh(a)
    return y


@numba.njit(cache=True)
def _mlp_row_grad(x, n, d, w1, b1, w2, gw1, gb1, gw2, gb2):  # pragma: no cover - jitted
    # Adds the gradient of d * y[n] to gw1 (C, H), gb1 (H,), gw2 (H,), gb2 (1,).
    c, hdim = w1.shape
    gb2[0] += d
    for h in range(hdim):
        a = b1[h]
        for i in range(c):
            a += numba.float64(x[n, i]) * w1[i, h]
        t = math.tanh(a)
        gw2[h] += d * t
        da = d * w2[h] * (1.0 - t * t)
        gb1[h] += da
        for i in range(c):
            gw1[i, h] += da * numba.float64(x[n, i])


@numba.njit(cache=True)
def _gru_gates(xt, h, j, wx, wh, bx, bh):  # pragma: no cover - jitted
    # Unit j's update gate z, reset gate r, recurrent candidate term g and candidate nn;
    # shared by the forward cell and its backward so the two cannot drift apart.
    az = wx[0, j] * xt + bx[0, j] + bh[0, j]
    ar = wx[1, j] * xt + bx[1, j] + bh[1, j]
    g = bh[2, j]
    for k in range(h.shape[0]):
        az += wh[0, j, k] * h[k]
        ar += wh[1, j, k] * h[k]
        g += wh[2, j, k] * h[k]
    z = _sigmoid(az)
    r = _sigmoid(ar)
    return z, r, g, math.tanh(wx[2, j] * xt + bx[2, j] + r * g)


@numba.njit(cache=True)
def _gru_cell(xt, h, hn, wx, wh, bx, bh):  # pragma: no cover - jitted
    # hn = GRU(xt, h); h and hn are (Hd,) float64 rows.
    hd = h.shape[0]
    for j in range(hd):
        z, _r, _g, nn = _gru_gates(xt, h, j, wx, wh, bx, bh)
        hn[j] = (1.0 - z) * nn + z * h[j]


@numba.njit(cache=True)
def _gru_row(x, n, wx, wh, bx, bh, w_out, b_out, hbuf, hout):  # pragma: no cover - jitted
    # Runs row n's window; hbuf (2, Hd) float64 scratch; writes h_C to hout, returns y.
    hd = wx.shape[1]
    for j in range(hd):
        hbuf[0, j] = 0.0
    cur = 0
    for t in range(x.shape[1]):
        _gru_cell(numba.float64(x[n, t]), hbuf[cur], hbuf[1 - cur], wx, wh, bx, bh)
        cur = 1 - cur
    y = b_out[0]
    for j in range(hd):
        y += w_out[j] * hbuf[cur, j]
        hout[j] = hbuf[cur, j]
    return y


@numba.njit(cache=True)
def _gru_cell_grad(xt, h, tmp, wx, wh, bx, bh, gwx, gwh, gbx, gbh):  # pragma: no cover
    # One step back: tmp[4] holds dL/dh' on entry, tmp[5] dL/dh on exit; tmp is (6, Hd).
    hd = h.shape[0]
    for j in range(hd):
        z, r, g, nn = _gru_gates(xt, h, j, wx, wh, bx, bh)
        dhj = tmp[4, j]
        da_z = dhj * (h[j] - nn) * z * (1.0 - z)
        da_n = dhj * (1.0 - z) * (1.0 - nn * nn)
        da_r = da_n * g * r * (1.0 - r)
        dg = da_n * r
        tmp[0, j] = da_z
        tmp[1, j] = da_r
        tmp[3, j] = dg
        tmp[5, j] = dhj * z
        gwx[0, j] += da_z * xt
        gwx[1, j] += da_r * xt
        gwx[2, j] += da_n * xt
        gbx[0, j] += da_z
        gbx[1, j] += da_r
        gbx[2, j] += da_n
        gbh[0, j] += da_z
        gbh[1, j] += da_r
        gbh[2, j] += dg
        for k in range(hd):
            gwh[0, j, k] += da_z * h[k]
            gwh[1, j, k] += da_r * h[k]
            gwh[2, j, k] += dg * h[k]
    for k in range(hd):
        s = tmp[5, k]
        for j in range(hd):
            s += tmp[0, j] * wh[0, j, k] + tmp[1, j] * wh[1, j, k] + tmp[3, j] * wh[2, j, k]
        tmp[5, k] = s


@numba.njit(cache=True)
def _gru_row_grad(
    x, n, dy, dh, s, stop, wx, wh, bx, bh, w_out, hs, tmp, gwx, gwh, gbx, gbh, gwo, gbo
):  # pragma: no cover - jitted
    # Adds the gradient of dy * y[n] + dh[s] . h[n] into the g* rows; hs (C+1, Hd) scratch.
    c = x.shape[1]
    hd = wx.shape[1]
    for j in range(hd):
        hs[0, j] = 0.0
    for t in range(c):
        _gru_cell(numba.float64(x[n, t]), hs[t], hs[t + 1], wx, wh, bx, bh)
    gbo[0] += dy
    for j in range(hd):
        gwo[j] += dy * hs[c, j]
        tmp[4, j] = dy * w_out[j] + dh[s, j]
    for t in range(c - 1, stop - 1, -1):
        _gru_cell_grad(numba.float64(x[n, t]), hs[t], tmp, wx, wh, bx, bh, gwx, gwh, gbx, gbh)
        for j in range(hd):
            tmp[4, j] = tmp[5, j]


@numba.njit(cache=True)
def _gumbel_argmax(logits, u, n, eps):  # pragma: no cover - jitted
    best = -math.inf
    arg = 0
    for k in range(logits.shape[1]):
        uu = numba.float64(u[n, k])
        if uu < eps:  # an explicit clip: min/max of floats failed to type on the CUDA target
            uu = eps
        elif uu > 1.0 - eps:
            uu = 1.0 - eps
        v = numba.float64(logits[n, k]) - math.log(-math.log(uu))
        if v > best:
            best = v
            arg = k
    return arg


# ---------------------------------------------------------------------------------------------
# Numba CPU twins: parallel over rows; the backward passes give each worker its own partial
# gradient rows (and scratch), summed afterwards, so there are no races and no atomics.

_PAR = {"parallel": True, "fastmath": False, "cache": True}


def _workers(n: int) -> int:
    return max(1, min(n, 4 * numba.get_num_threads()))


@numba.njit(**_PAR)
def _mlp_forward_loop(x, w1, b1, w2, b2, out):  # pragma: no cover - jitted
    for i in numba.prange(x.shape[0]):
        out[i] = _mlp_row(x, i, w1, b1, w2, b2)


@numba.njit(**_PAR)
def _mlp_backward_loop(x, idx, dout, w1, b1, w2, gw1, gb1, gw2, gb2):  # pragma: no cover
    nw = gw1.shape[0]
    s_count = idx.shape[0]
    for k in numba.prange(nw):
        for s in range(k * s_count // nw, (k + 1) * s_count // nw):
            _mlp_row_grad(x, idx[s], dout[s], w1, b1, w2, gw1[k], gb1[k], gw2[k], gb2[k])


@numba.njit(**_PAR)
def _gru_forward_loop(x, wx, wh, bx, bh, w_out, b_out, hbuf, y, hout):  # pragma: no cover
    nw = hbuf.shape[0]
    n = x.shape[0]
    for k in numba.prange(nw):
        for i in range(k * n // nw, (k + 1) * n // nw):
            y[i] = _gru_row(x, i, wx, wh, bx, bh, w_out, b_out, hbuf[k], hout[i])


@numba.njit(**_PAR)
def _gru_backward_loop(
    x, idx, dout, dh, stop, wx, wh, bx, bh, w_out, hs, tmp, gwx, gwh, gbx, gbh, gwo, gbo
):  # pragma: no cover - jitted
    nw = hs.shape[0]
    s_count = idx.shape[0]
    for k in numba.prange(nw):
        for s in range(k * s_count // nw, (k + 1) * s_count // nw):
            _gru_row_grad(
                x, idx[s], dout[s], dh, s, stop, wx, wh, bx, bh, w_out,
                hs[k], tmp[k], gwx[k], gwh[k], gbx[k], gbh[k], gwo[k], gbo[k],
            )  # fmt: skip


@numba.njit(**_PAR)
def _categorical_loop(logits, u, eps, out):  # pragma: no cover - jitted
    for i in numba.prange(logits.shape[0]):
        out[i] = _gumbel_argmax(logits, u, i, eps)


def _sample_args(idx: Any, dout: Any, xp: types.ModuleType) -> tuple[Any, Any]:
    return (
        xp.ascontiguousarray(xp.asarray(idx, dtype=xp.int64)),
        xp.ascontiguousarray(xp.asarray(dout, dtype=xp.float64)),
    )


def _dh_arg(dh: Any, s_count: int, hd: int, xp: types.ModuleType) -> Any:
    if dh is None:
        return xp.zeros((s_count, hd), dtype=xp.float64)
    return xp.ascontiguousarray(xp.asarray(dh, dtype=xp.float64))


def _bptt_stop(c: int, bptt: int | None) -> int:
    return 0 if bptt is None else max(0, c - int(bptt))


def _partials(nw: int, like: tuple[Any, ...], xp: types.ModuleType) -> tuple[Any, ...]:
    return tuple(xp.zeros((nw, *a.shape), dtype=xp.float64) for a in like)


@register("mlp_forward", "numba")
def mlp_forward_numba(windows: np.ndarray, weights: MLPWeights) -> np.ndarray:
    """Numba twin of :func:`mlp_forward_ref` (parallel over rows)."""
    w = device_weights(np, weights)
    out = np.empty(windows.shape[0], dtype=windows.dtype)
    _mlp_forward_loop(windows, *w, out)
    return out


@register("mlp_backward", "numba")
def mlp_backward_numba(
    windows: np.ndarray, idx: np.ndarray, dout: np.ndarray, weights: MLPWeights
) -> MLPWeights:
    """Numba twin of :func:`mlp_backward_ref` (per-worker partial gradients, then summed)."""
    w = device_weights(np, weights)
    ix, d = _sample_args(idx, dout, np)
    parts = _partials(_workers(ix.shape[0]), w, np)
    _mlp_backward_loop(windows, ix, d, w[0], w[1], w[2], *parts)
    return MLPWeights(*(p.sum(axis=0) for p in parts))


@register("gru_forward", "numba")
def gru_forward_numba(windows: np.ndarray, weights: GRUWeights) -> tuple[np.ndarray, np.ndarray]:
    """Numba twin of :func:`gru_forward_ref` (parallel over rows, float64 hidden state)."""
    w = device_weights(np, weights)
    n = windows.shape[0]
    hd = w[0].shape[1]
    hbuf = np.empty((_workers(n), 2, hd))
    y = np.empty(n, dtype=windows.dtype)
    h = np.empty((n, hd), dtype=windows.dtype)
    _gru_forward_loop(windows, *w, hbuf, y, h)
    return y, h


@register("gru_backward", "numba")
def gru_backward_numba(
    windows: np.ndarray,
    idx: np.ndarray,
    dout: np.ndarray,
    weights: GRUWeights,
    dh: np.ndarray | None = None,
    bptt: int | None = None,
) -> GRUWeights:
    """Numba twin of :func:`gru_backward_ref` (per-worker scratch and partial gradients)."""
    w = device_weights(np, weights)
    ix, d = _sample_args(idx, dout, np)
    c = windows.shape[1]
    hd = w[0].shape[1]
    nw = _workers(ix.shape[0])
    hs = np.empty((nw, c + 1, hd))
    tmp = np.empty((nw, 6, hd))
    parts = _partials(nw, w, np)
    _gru_backward_loop(
        windows, ix, d, _dh_arg(dh, ix.shape[0], hd, np), _bptt_stop(c, bptt), *w[:5],
        hs, tmp, *parts,
    )  # fmt: skip
    return GRUWeights(*(p.sum(axis=0) for p in parts))


@register("categorical_sample", "numba")
def categorical_sample_numba(logits: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Numba twin of :func:`categorical_sample_ref` (parallel over rows)."""
    out = np.empty(logits.shape[0], dtype=np.int64)
    _categorical_loop(logits, uniform, GUMBEL_EPS, out)
    return out


# ---------------------------------------------------------------------------------------------
# Numba CUDA twins: grid-stride kernels calling the same scalar helpers. Each thread of the
# backward kernels owns one row of the partial-gradient and scratch arrays.


def _mlp_forward_kernel(x, w1, b1, w2, b2, out):  # pragma: no cover - device code
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        out[i] = _mlp_row(x, i, w1, b1, w2, b2)


def _mlp_backward_kernel(x, idx, dout, w1, b1, w2, gw1, gb1, gw2, gb2):  # pragma: no cover
    k = cuda.grid(1)
    for s in range(k, idx.shape[0], cuda.gridsize(1)):
        _mlp_row_grad(x, idx[s], dout[s], w1, b1, w2, gw1[k], gb1[k], gw2[k], gb2[k])


def _gru_forward_kernel(x, wx, wh, bx, bh, w_out, b_out, hbuf, y, hout):  # pragma: no cover
    k = cuda.grid(1)
    for i in range(k, x.shape[0], cuda.gridsize(1)):
        y[i] = _gru_row(x, i, wx, wh, bx, bh, w_out, b_out, hbuf[k], hout[i])


def _gru_backward_kernel(
    x, idx, dout, dh, stop, wx, wh, bx, bh, w_out, hs, tmp, gwx, gwh, gbx, gbh, gwo, gbo
):  # pragma: no cover - device code
    k = cuda.grid(1)
    for s in range(k, idx.shape[0], cuda.gridsize(1)):
        _gru_row_grad(
            x, idx[s], dout[s], dh, s, stop, wx, wh, bx, bh, w_out,
            hs[k], tmp[k], gwx[k], gwh[k], gbx[k], gbh[k], gwo[k], gbo[k],
        )  # fmt: skip


def _categorical_kernel(logits, u, eps, out):  # pragma: no cover - device code
    for i in range(cuda.grid(1), logits.shape[0], cuda.gridsize(1)):
        out[i] = _gumbel_argmax(logits, u, i, eps)


CUDA_KERNELS = {
    "mlp_forward": _mlp_forward_kernel,
    "mlp_backward": _mlp_backward_kernel,
    "gru_forward": _gru_forward_kernel,
    "gru_backward": _gru_backward_kernel,
    "categorical_sample": _categorical_kernel,
}


@functools.cache
def _cuda_kernels() -> types.SimpleNamespace:
    return types.SimpleNamespace(**{k: cuda_kernel(fn) for k, fn in CUDA_KERNELS.items()})


@register("mlp_forward", "cuda")
def mlp_forward_cuda(windows: Any, weights: MLPWeights) -> Any:
    """Numba CUDA twin of :func:`mlp_forward_ref` (grid-stride over rows)."""
    xp = get_array_module(windows)
    w = device_weights(xp, weights)
    out = xp.empty(windows.shape[0], dtype=windows.dtype)
    blocks, threads = launch_config(windows.shape[0])
    _cuda_kernels().mlp_forward[blocks, threads](windows, *w, out)
    return out


@register("mlp_backward", "cuda")
def mlp_backward_cuda(windows: Any, idx: Any, dout: Any, weights: MLPWeights) -> MLPWeights:
    """Numba CUDA twin of :func:`mlp_backward_ref` (per-thread partial gradients, summed)."""
    xp = get_array_module(windows)
    w = device_weights(xp, weights)
    ix, d = _sample_args(idx, dout, xp)
    blocks, threads = launch_config(ix.shape[0])
    parts = _partials(blocks * threads, w, xp)
    _cuda_kernels().mlp_backward[blocks, threads](windows, ix, d, w[0], w[1], w[2], *parts)
    return MLPWeights(*(p.sum(axis=0) for p in parts))


@register("gru_forward", "cuda")
def gru_forward_cuda(windows: Any, weights: GRUWeights) -> tuple[Any, Any]:
    """Numba CUDA twin of :func:`gru_forward_ref` (grid-stride over rows)."""
    xp = get_array_module(windows)
    w = device_weights(xp, weights)
    n = windows.shape[0]
    hd = w[0].shape[1]
    blocks, threads = launch_config(n)
    hbuf = xp.empty((blocks * threads, 2, hd), dtype=xp.float64)
    y = xp.empty(n, dtype=windows.dtype)
    h = xp.empty((n, hd), dtype=windows.dtype)
    _cuda_kernels().gru_forward[blocks, threads](windows, *w, hbuf, y, h)
    return y, h


@register("gru_backward", "cuda")
def gru_backward_cuda(
    windows: Any,
    idx: Any,
    dout: Any,
    weights: GRUWeights,
    dh: Any = None,
    bptt: int | None = None,
) -> GRUWeights:
    """Numba CUDA twin of :func:`gru_backward_ref` (per-thread scratch, partials summed)."""
    xp = get_array_module(windows)
    w = device_weights(xp, weights)
    ix, d = _sample_args(idx, dout, xp)
    c = windows.shape[1]
    hd = w[0].shape[1]
    blocks, threads = launch_config(ix.shape[0])
    nt = blocks * threads
    hs = xp.empty((nt, c + 1, hd), dtype=xp.float64)
    tmp = xp.empty((nt, 6, hd), dtype=xp.float64)
    parts = _partials(nt, w, xp)
    _cuda_kernels().gru_backward[blocks, threads](
        windows, ix, d, _dh_arg(dh, ix.shape[0], hd, xp), _bptt_stop(c, bptt), *w[:5],
        hs, tmp, *parts,
    )  # fmt: skip
    return GRUWeights(*(p.sum(axis=0) for p in parts))


@register("categorical_sample", "cuda")
def categorical_sample_cuda(logits: Any, uniform: Any) -> Any:
    """Numba CUDA twin of :func:`categorical_sample_ref` (grid-stride over rows)."""
    xp = get_array_module(logits)
    out = xp.empty(logits.shape[0], dtype=xp.int64)
    blocks, threads = launch_config(logits.shape[0])
    _cuda_kernels().categorical_sample[blocks, threads](logits, uniform, GUMBEL_EPS, out)
    return out


# ---------------------------------------------------------------------------------------------
# Dispatching entry points (what the predictors call)


def mlp_forward(windows: Any, weights: MLPWeights) -> Any:
    """Dispatching entry point of :func:`mlp_forward_ref`."""
    return dispatch("mlp_forward", windows)(windows, weights)


def mlp_backward(windows: Any, idx: Any, dout: Any, weights: MLPWeights) -> MLPWeights:
    """Dispatching entry point of :func:`mlp_backward_ref`."""
    return dispatch("mlp_backward", windows)(windows, idx, dout, weights)


def gru_forward(windows: Any, weights: GRUWeights) -> tuple[Any, Any]:
    """Dispatching entry point of :func:`gru_forward_ref`."""
    return dispatch("gru_forward", windows)(windows, weights)


def gru_backward(
    windows: Any,
    idx: Any,
    dout: Any,
    weights: GRUWeights,
    dh: Any = None,
    bptt: int | None = None,
) -> GRUWeights:
    """Dispatching entry point of :func:`gru_backward_ref`."""
    return dispatch("gru_backward", windows)(windows, idx, dout, weights, dh, bptt)


def categorical_sample(logits: Any, uniform: Any) -> Any:
    """Dispatching entry point of :func:`categorical_sample_ref`."""
    return dispatch("categorical_sample", logits)(logits, uniform)
