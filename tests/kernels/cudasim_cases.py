"""Numba CUDA twins against their references, run under the CUDA simulator.

Not collected by the main run (the name does not match ``test_*.py``): test_cuda_twins.py runs
this file in a subprocess with ``NUMBA_ENABLE_CUDASIM=1`` set before numba is imported,
because the parent process has already imported numba for the CPU twins. The simulator is
slow per thread, so the kernels are launched with tiny grids (2 blocks of 4 threads) and
sizes that still make every thread take several grid strides.

``HPCORE_CUDASIM_SABOTAGE=1`` swaps the MLP's scalar helper for a wrong one before the
kernels are built; test_cuda_twins.py checks that this run fails, so a pass above means the
kernels really ran.
"""

from __future__ import annotations

import os

import numba
import numpy as np
import pytest

from hpcore import kernels
from hpcore.kernels import _gpu, linucb, nowcast, residual

if not numba.config.ENABLE_CUDASIM and os.environ.get("HPCORE_CUDA_REAL") != "1":
    pytest.skip(
        "run me with NUMBA_ENABLE_CUDASIM=1 (see test_cuda_twins.py), or with "
        "HPCORE_CUDA_REAL=1 on a machine with a GPU (benchmarks/gpu_check.sh)",
        allow_module_level=True,
    )

if os.environ.get("HPCORE_CUDASIM_SABOTAGE") == "1":
    nowcast._mlp_row = numba.njit(lambda x, n, w1, b1, w2, b2: 0.0)

DTYPES = [np.float32, np.float64]
SIZES = [0, 1, 19]
TOL = {np.dtype(np.float32): {"rtol": 2e-6, "atol": 1e-6}, np.dtype(np.float64): {"rtol": 1e-10}}
GRAD_TOL = {"rtol": 1e-9, "atol": 1e-11}

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
sizes = pytest.mark.parametrize("n", SIZES, ids=lambda n: f"n{n}")


@pytest.mark.skipif(not numba.config.ENABLE_CUDASIM, reason="on a real GPU: no simulator")
def test_kernels_are_simulator_kernels():
    """The twins that run below are the simulator's kernels, not a host fallback."""
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    assert _gpu.launch_config(10**6) == (_gpu.SIM_BLOCKS, _gpu.SIM_THREADS)
    for module in (nowcast, linucb, residual):
        for name in module.CUDA_KERNELS:
            assert isinstance(getattr(module._cuda_kernels(), name), FakeCUDAKernel), name
    x = np.zeros((3, 2))
    with kernels.use("cuda"):
        assert kernels.lookup("mlp_forward", x) is nowcast.mlp_forward_cuda


@dtypes
@sizes
def test_mlp_forward(n, dtype):
    """MLP forward over N windows."""
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 5)).astype(dtype)
    w = nowcast.init_mlp(5, 3, rng)._replace(b2=np.array([0.5]))
    with kernels.use("cuda"):
        y = kernels.mlp_forward(x, w)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, nowcast.mlp_forward_ref(x, w), **TOL[np.dtype(dtype)])


@dtypes
@sizes
def test_mlp_backward(n, dtype):
    """MLP weight gradients over a sample with repeats."""
    rng = np.random.default_rng(n + 1)
    x = rng.standard_normal((n, 5)).astype(dtype)
    w = nowcast.init_mlp(5, 3, rng)
    idx = rng.integers(0, max(n, 1), size=min(n, 13))
    d = rng.standard_normal(idx.size)
    with kernels.use("cuda"):
        g = kernels.mlp_backward(x, idx, d, w)
    for a, b in zip(g, nowcast.mlp_backward_ref(x, idx, d, w), strict=True):
        np.testing.assert_allclose(a, b, **GRAD_TOL)


@dtypes
@sizes
def test_gru_forward(n, dtype):
    """GRU over N windows: forecasts and final hidden states."""
    rng = np.random.default_rng(n + 2)
    x = rng.standard_normal((n, 4)).astype(dtype)
    w = nowcast.init_gru(3, rng)
    with kernels.use("cuda"):
        y, h = kernels.gru_forward(x, w)
    y0, h0 = nowcast.gru_forward_ref(x, w)
    np.testing.assert_allclose(y, y0, **TOL[np.dtype(dtype)])
    np.testing.assert_allclose(h, h0, **TOL[np.dtype(dtype)])


@pytest.mark.parametrize("bptt", [None, 2], ids=["full", "bptt2"])
@dtypes
@sizes
def test_gru_backward(n, dtype, bptt):
    """GRU BPTT gradients, with an upstream hidden-state gradient."""
    rng = np.random.default_rng(n + 3)
    x = rng.standard_normal((n, 4)).astype(dtype)
    w = nowcast.init_gru(3, rng)
    idx = rng.integers(0, max(n, 1), size=min(n, 11))
    d, dh = rng.standard_normal(idx.size), rng.standard_normal((idx.size, 3))
    with kernels.use("cuda"):
        g = kernels.gru_backward(x, idx, d, w, dh, bptt)
    for a, b in zip(g, nowcast.gru_backward_ref(x, idx, d, w, dh, bptt), strict=True):
        np.testing.assert_allclose(a, b, **GRAD_TOL)


@dtypes
@sizes
def test_categorical_sample(n, dtype):
    """Gumbel-max draws, with non-finite logits."""
    rng = np.random.default_rng(n + 4)
    logits = rng.standard_normal((n, 4)).astype(dtype)
    if n > 2:
        logits[0, 1], logits[1] = np.inf, np.nan
    u = rng.uniform(size=(n, 4)).astype(dtype)
    with kernels.use("cuda"):
        got = kernels.categorical_sample(logits, u)
    np.testing.assert_array_equal(got, nowcast.categorical_sample_ref(logits, u))


@pytest.mark.parametrize("k,d", [(1, 1), (11, 3)], ids=["k1d1", "k11d3"])
def test_linucb(k, d):
    """Scores of all arms and a Sherman-Morrison update."""
    rng = np.random.default_rng(k)
    m = rng.standard_normal((k, d, d))
    a_inv = np.linalg.inv(np.einsum("kij,klj->kil", m, m) + np.eye(d))
    b, x = rng.standard_normal((k, d)), rng.standard_normal(d)
    ref_a, ref_b = a_inv.copy(), b.copy()
    with kernels.use("cuda"):
        scores = kernels.linucb_scores(a_inv, b, x, 0.6)
        kernels.linucb_update(a_inv, b, k - 1, x, 2.0)
    np.testing.assert_allclose(scores, linucb.linucb_scores_ref(ref_a, ref_b, x, 0.6), rtol=1e-12)
    linucb.linucb_update_ref(ref_a, ref_b, k - 1, x, 2.0)
    np.testing.assert_allclose(a_inv, ref_a, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(b, ref_b, rtol=1e-12)


@dtypes
@pytest.mark.parametrize("m", [0, 1, 21], ids=lambda m: f"m{m}")
def test_residual(m, dtype):
    """Similarity weights (one-block softmax) and the weighted correction."""
    rng = np.random.default_rng(m)
    keys = rng.standard_normal((m, 5)).astype(dtype)
    if m > 2:
        keys[1], keys[2] = np.nan, 0.0
    q = rng.standard_normal(5).astype(dtype)
    res = rng.standard_normal((m, 9)).astype(dtype)
    with kernels.use("cuda"):
        w = kernels.residual_weights(q, keys, 0.3)
        corr = kernels.residual_correct(w, res)
    np.testing.assert_allclose(w, residual.residual_weights_ref(q, keys, 0.3), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(corr, residual.residual_correct_ref(w, res), rtol=1e-12, atol=1e-14)
