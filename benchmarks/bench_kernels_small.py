"""Nowcast, LinUCB and residual kernels: each CPU twin against the NumPy reference.

Default sizes: N = 1e5 parameters with windows of C = 8 snapshots (MLP hidden 16, GRU hidden
8), backward passes over a sample of 4096 rows; LinUCB with K = 8 arms in d = 16; a residual
store of M = 256 keys of d = 16 with G = 8 groups. Run: ``pytest benchmarks/ --benchmark-only``.
The Numba CUDA twins are not timed here (no GPU on the reference machine; the simulator's
timings mean nothing).
"""

from __future__ import annotations

import numpy as np
import pytest

from hpcore import kernels

pytestmark = pytest.mark.benchmark

N, C, S = 10**5, 8, 4096
K, D = 8, 16
M, G = 256, 8


def _cases():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C)).astype(np.float32)
    idx = rng.integers(0, N, S)
    dout = rng.standard_normal(S)
    mlp = kernels.init_mlp(C, 16, rng)
    gru = kernels.init_gru(8, rng)
    logits, u = rng.standard_normal((N, 32)), rng.uniform(size=(N, 32))
    m = rng.standard_normal((K, D, D))
    a_inv = np.linalg.inv(np.einsum("kij,klj->kil", m, m) + np.eye(D))
    b, ctx = rng.standard_normal((K, D)), rng.standard_normal(D)
    keys, q, res = rng.standard_normal((M, D)), rng.standard_normal(D), rng.standard_normal((M, G))
    w = kernels.residual_weights(q, keys, 0.5)
    return {
        f"mlp_forward N={N:.0e}": lambda: kernels.mlp_forward(x, mlp),
        f"mlp_backward S={S}": lambda: kernels.mlp_backward(x, idx, dout, mlp),
        f"gru_forward N={N:.0e}": lambda: kernels.gru_forward(x, gru),
        f"gru_backward S={S}": lambda: kernels.gru_backward(x, idx, dout, gru),
        f"categorical_sample N={N:.0e} K=32": lambda: kernels.categorical_sample(logits, u),
        f"linucb_scores K={K} d={D}": lambda: kernels.linucb_scores(a_inv, b, ctx, 1.0),
        f"linucb_update K={K} d={D}": lambda: kernels.linucb_update(a_inv, b, 3, ctx, 0.1),
        f"residual_weights M={M} d={D}": lambda: kernels.residual_weights(q, keys, 0.5),
        f"residual_correct M={M} G={G}": lambda: kernels.residual_correct(w, res),
    }


CASES = sorted(_cases())


@pytest.fixture(scope="module")
def cases():
    return _cases()


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("case", CASES)
def test_small_kernel(benchmark, cases, case, backend):
    call = cases[case]
    with kernels.use(backend):
        call()  # compile outside the timing
        benchmark.group = case
        benchmark(call)
