"""Nowcast kernels: MLP and GRU forward/backward and Gumbel-max sampling.

The references are checked against finite differences (backward) and a direct loop (GRU
cell); the Numba twins are checked against the references.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcore import kernels
from hpcore.kernels import nowcast

PROPS = settings(max_examples=25, deadline=None)
DTYPES = [np.float32, np.float64]
GRAD_TOL = {"rtol": 1e-9, "atol": 1e-11}


def _mlp(rng: np.random.Generator, c: int, h: int) -> nowcast.MLPWeights:
    w = nowcast.init_mlp(c, h, rng)
    return w._replace(b1=0.1 * rng.standard_normal(h), b2=np.array([0.3]))


def _gru(rng: np.random.Generator, h: int) -> nowcast.GRUWeights:
    w = nowcast.init_gru(h, rng)
    return w._replace(b_out=np.array([-0.2]))


def _numeric_grad(loss, weights, eps=1e-6):
    grads = []
    for i, a in enumerate(weights):
        g = np.zeros_like(a, dtype=np.float64)
        for j in range(a.size):
            p = [np.array(w, dtype=np.float64) for w in weights]
            p[i].reshape(-1)[j] += eps
            up = loss(type(weights)(*p))
            p[i].reshape(-1)[j] -= 2 * eps
            g.reshape(-1)[j] = (up - loss(type(weights)(*p))) / (2 * eps)
        grads.append(g)
    return grads


class TestReferences:
    """The references implement the documented maths."""

    def test_mlp_backward_is_the_gradient(self):
        """mlp_backward_ref equals central finite differences of sum dout * y[idx]."""
        rng = np.random.default_rng(0)
        x = rng.standard_normal((9, 4))
        w = _mlp(rng, 4, 3)
        idx, d = np.array([0, 3, 3, 8]), rng.standard_normal(4)
        got = nowcast.mlp_backward_ref(x, idx, d, w)
        want = _numeric_grad(lambda ww: d @ nowcast.mlp_forward_ref(x, ww)[idx], w)
        for g, n in zip(got, want, strict=True):
            np.testing.assert_allclose(g, n, rtol=1e-6, atol=1e-8)

    @pytest.mark.parametrize("bptt", [None, 2], ids=["full", "bptt2"])
    def test_gru_backward_is_the_gradient(self, bptt):
        """gru_backward_ref equals finite differences (full window) or less (truncated)."""
        rng = np.random.default_rng(1)
        x = rng.standard_normal((7, 5))
        w = _gru(rng, 3)
        idx, d, dh = np.array([1, 4, 6]), rng.standard_normal(3), rng.standard_normal((3, 3))

        def loss(ww):
            y, h = nowcast.gru_forward_ref(x, ww)
            return d @ y[idx] + np.sum(dh * h[idx])

        got = nowcast.gru_backward_ref(x, idx, d, w, dh, bptt)
        want = _numeric_grad(loss, w)
        if bptt is None:
            for g, n in zip(got, want, strict=True):
                np.testing.assert_allclose(g, n, rtol=1e-6, atol=1e-8)
        else:  # the readout sees no truncation; the recurrent weights see less of the window
            np.testing.assert_allclose(got.w_out, want[4], rtol=1e-6)
            assert not np.allclose(got.wh, want[1], rtol=1e-3)

    def test_gru_cell_matches_a_direct_loop(self):
        """One step of gru_forward_ref is the PyTorch GRU cell written out per unit."""
        rng = np.random.default_rng(2)
        w = _gru(rng, 2)
        x = np.array([[0.7]])
        y, h = nowcast.gru_forward_ref(x, w)
        sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
        z = sig(w.wx[0] * 0.7 + w.bx[0] + w.bh[0])
        r = sig(w.wx[1] * 0.7 + w.bx[1] + w.bh[1])
        n = np.tanh(w.wx[2] * 0.7 + w.bx[2] + r * w.bh[2])
        np.testing.assert_allclose(h[0], (1 - z) * n, rtol=1e-12)
        np.testing.assert_allclose(y, [h[0] @ w.w_out + w.b_out[0]], rtol=1e-12)

    def test_gumbel_max_follows_the_noise(self):
        """Equal logits: the class with the largest uniform draw wins; +inf logits always win."""
        u = np.array([[0.1, 0.9, 0.5], [0.99, 0.5, 0.5]])
        logits = np.array([[0.0, 0.0, 0.0], [0.0, np.inf, np.nan]])
        np.testing.assert_array_equal(nowcast.categorical_sample_ref(logits, u), [1, 1])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n", [0, 1, 37, 3000], ids=lambda n: f"n{n}")
class TestNumbaParity:
    """The Numba twins match the references (forwards in the windows' dtype)."""

    def test_mlp(self, n, dtype, tol):
        """Forward outputs and sampled gradients match."""
        rng = np.random.default_rng(n)
        x = rng.standard_normal((n, 6)).astype(dtype)
        w = _mlp(rng, 6, 5)
        idx = rng.integers(0, max(n, 1), size=min(n, 50))
        d = rng.standard_normal(idx.size)
        with kernels.use("numba"):
            y = kernels.mlp_forward(x, w)
            g = kernels.mlp_backward(x, idx, d, w)
        assert y.dtype == dtype
        np.testing.assert_allclose(y, nowcast.mlp_forward_ref(x, w), **tol(dtype))
        for a, b in zip(g, nowcast.mlp_backward_ref(x, idx, d, w), strict=True):
            np.testing.assert_allclose(a, b, **GRAD_TOL)

    @pytest.mark.parametrize("bptt", [None, 3], ids=["full", "bptt3"])
    def test_gru(self, n, dtype, bptt, tol):
        """Forward outputs, hidden states and BPTT gradients match."""
        rng = np.random.default_rng(n + 1)
        x = rng.standard_normal((n, 6)).astype(dtype)
        w = _gru(rng, 8)
        idx = rng.integers(0, max(n, 1), size=min(n, 40))
        d = rng.standard_normal(idx.size)
        dh = rng.standard_normal((idx.size, 8))
        with kernels.use("numba"):
            y, h = kernels.gru_forward(x, w)
            g = kernels.gru_backward(x, idx, d, w, dh, bptt)
        y0, h0 = nowcast.gru_forward_ref(x, w)
        np.testing.assert_allclose(y, y0, **tol(dtype))
        np.testing.assert_allclose(h, h0, **tol(dtype))
        for a, b in zip(g, nowcast.gru_backward_ref(x, idx, d, w, dh, bptt), strict=True):
            np.testing.assert_allclose(a, b, **GRAD_TOL)

    def test_categorical(self, n, dtype):
        """Gumbel-max draws are identical."""
        rng = np.random.default_rng(n + 2)
        logits = rng.standard_normal((n, 5)).astype(dtype)
        u = rng.uniform(size=(n, 5)).astype(dtype)
        with kernels.use("numba"):
            got = kernels.categorical_sample(logits, u)
        np.testing.assert_array_equal(got, nowcast.categorical_sample_ref(logits, u))


class TestProperties:
    """Hypothesis over shapes, including length-1 windows and non-finite inputs."""

    @PROPS
    @given(seed=st.integers(0, 2**31), n=st.integers(0, 12), c=st.integers(1, 6))
    def test_forward_twins_any_shape(self, seed, n, c):
        """MLP and GRU forwards agree for any N and window length, NaN rows stay NaN rows."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((n, c))
        if n:
            x[rng.integers(n), rng.integers(c)] = np.nan
        mw, gw = _mlp(rng, c, 3), _gru(rng, 4)
        np.testing.assert_allclose(
            nowcast.mlp_forward_numba(x, mw), nowcast.mlp_forward_ref(x, mw), rtol=1e-12, equal_nan=True
        )
        for a, b in zip(nowcast.gru_forward_numba(x, gw), nowcast.gru_forward_ref(x, gw), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, equal_nan=True)

    @PROPS
    @given(
        seed=st.integers(0, 2**31),
        n=st.integers(0, 10),
        k=st.integers(1, 6),
        special=st.sampled_from([np.nan, np.inf, -np.inf]),
    )
    def test_categorical_any_logits(self, seed, n, k, special):
        """Draws agree with non-finite logits; indices are in range."""
        rng = np.random.default_rng(seed)
        logits = rng.standard_normal((n, k))
        logits[rng.random((n, k)) < 0.3] = special
        u = rng.uniform(size=(n, k))
        got = nowcast.categorical_sample_numba(logits, u)
        np.testing.assert_array_equal(got, nowcast.categorical_sample_ref(logits, u))
        assert np.all((got >= 0) & (got < k))
