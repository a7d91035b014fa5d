"""Residual-store kernels: similarity weights and weighted correction against the reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hpcore import kernels
from hpcore.kernels import residual

PROPS = settings(max_examples=50, deadline=None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("m", [0, 1, 5, 300], ids=lambda m: f"m{m}")
class TestParity:
    """The Numba twin matches the reference (float64 results for either input dtype)."""

    def test_weights(self, m, dtype):
        """Weights match, including a NaN key (weight 0) and a zero key (similarity 0)."""
        rng = np.random.default_rng(m)
        keys = rng.standard_normal((m, 7)).astype(dtype)
        if m > 2:
            keys[1] = np.nan
            keys[2] = 0.0
        q = rng.standard_normal(7).astype(dtype)
        expected = residual.residual_weights_ref(q, keys, 0.2)
        with kernels.use("numba"):
            got = kernels.residual_weights(q, keys, 0.2)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
        if m > 2:
            assert expected[1] == 0.0
            assert expected.sum() == pytest.approx(1.0)

    def test_correct(self, m, dtype):
        """The correction matches; an infinite residual with weight 0 is ignored."""
        rng = np.random.default_rng(m + 1)
        w = residual.residual_weights_ref(rng.standard_normal(3), rng.standard_normal((m, 3)), 1.0)
        res = rng.standard_normal((m, 4)).astype(dtype)
        if m > 1:
            w[0] = 0.0
            res[0] = np.inf
        expected = residual.residual_correct_ref(w, res)
        with kernels.use("numba"):
            got = kernels.residual_correct(w, res)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
        assert np.isfinite(got).all()


class TestProperties:
    """Hypothesis over store sizes, key dimensions and any values."""

    @PROPS
    @given(
        data=st.data(),
        m=st.integers(0, 12),
        d=st.integers(1, 6),
        temperature=st.floats(0.01, 10.0),
    )
    def test_weights_any_input(self, data, m, d, temperature):
        """Weights are a distribution (or all zero), twins agree, non-finite keys get 0."""
        keys = data.draw(hnp.arrays(np.float64, (m, d), elements=st.floats(-1e6, 1e6) | st.just(np.nan)))
        q = data.draw(hnp.arrays(np.float64, d, elements=st.floats(-1e6, 1e6)))
        w = residual.residual_weights_ref(q, keys, temperature)
        np.testing.assert_allclose(residual.residual_weights_numba(q, keys, temperature), w, atol=1e-12)
        assert np.all(w >= 0.0)
        assert w.sum() == pytest.approx(1.0) or w.sum() == 0.0
        assert np.all(w[~np.isfinite(keys).all(axis=1)] == 0.0)

    def test_nearest_key_wins_at_low_temperature(self):
        """A tiny temperature puts all the weight on the most similar key."""
        keys = np.array([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0]])
        w = residual.residual_weights_numba(np.array([0.5, 0.6]), keys, 1e-3)
        np.testing.assert_allclose(w, [0.0, 1.0, 0.0], atol=1e-12)
