"""LinUCB kernels: scores and Sherman-Morrison update against the reference and np.linalg."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcore import kernels
from hpcore.kernels import linucb

PROPS = settings(max_examples=30, deadline=None)


def _bandit(rng: np.random.Generator, k: int, d: int) -> tuple[np.ndarray, ...]:
    m = rng.standard_normal((k, d, d))
    a = np.einsum("kij,klj->kil", m, m) + np.eye(d)
    return a, np.linalg.inv(a), rng.standard_normal((k, d)), rng.standard_normal(d)


@pytest.mark.parametrize("k,d", [(1, 1), (4, 6), (9, 17)], ids=lambda v: str(v))
class TestParity:
    """The Numba twin matches the reference; the reference matches the definitions."""

    def test_scores(self, k, d, tol):
        """Scores match the reference and theta.x + alpha sqrt(x^T A^-1 x) computed by hand."""
        _, a_inv, b, x = _bandit(np.random.default_rng(d), k, d)
        expected = linucb.linucb_scores_ref(a_inv, b, x, 0.8)
        by_hand = [(a_inv[i] @ b[i]) @ x + 0.8 * np.sqrt(x @ a_inv[i] @ x) for i in range(k)]
        np.testing.assert_allclose(expected, by_hand, **tol(np.float64))
        with kernels.use("numba"):
            np.testing.assert_allclose(kernels.linucb_scores(a_inv, b, x, 0.8), expected, rtol=1e-12)

    def test_update(self, k, d):
        """Sherman-Morrison leaves A^-1 equal to inv(A + x x^T) for the chosen arm only."""
        a, a_inv, b, x = _bandit(np.random.default_rng(d + 1), k, d)
        arm = k - 1
        ref_a, ref_b = a_inv.copy(), b.copy()
        linucb.linucb_update_ref(ref_a, ref_b, arm, x, 0.5)
        np.testing.assert_allclose(ref_a[arm], np.linalg.inv(a[arm] + np.outer(x, x)), atol=1e-10)
        np.testing.assert_array_equal(ref_a[:arm], a_inv[:arm])
        np.testing.assert_allclose(ref_b[arm], b[arm] + 0.5 * x)
        with kernels.use("numba"):
            kernels.linucb_update(a_inv, b, arm, x, 0.5)
        np.testing.assert_allclose(a_inv, ref_a, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(b, ref_b, rtol=1e-12)


class TestProperties:
    """Hypothesis over arm counts, dimensions and update sequences."""

    @PROPS
    @given(seed=st.integers(0, 2**31), k=st.integers(1, 5), d=st.integers(1, 8))
    def test_repeated_updates_track_the_inverse(self, seed, k, d):
        """After several updates A^-1 still inverts the accumulated design matrix."""
        rng = np.random.default_rng(seed)
        a = np.stack([np.eye(d)] * k)
        a_inv, b = a.copy(), np.zeros((k, d))
        for _ in range(5):
            arm, x = int(rng.integers(k)), rng.standard_normal(d)
            a[arm] += np.outer(x, x)
            linucb.linucb_update_numba(a_inv, b, arm, x, 1.0)
        np.testing.assert_allclose(a_inv, np.linalg.inv(a), atol=1e-9)
        got = linucb.linucb_scores_numba(a_inv, b, np.ones(d), 1.0)
        np.testing.assert_allclose(got, linucb.linucb_scores_ref(a_inv, b, np.ones(d), 1.0))

    def test_negative_rounding_variance_counts_as_zero(self):
        """A slightly indefinite A^-1 gives no NaN bonus."""
        a_inv = np.array([[[-1e-18]]])
        for fn in (linucb.linucb_scores_ref, linucb.linucb_scores_numba):
            assert fn(a_inv, np.zeros((1, 1)), np.ones(1), 1.0).tolist() == [0.0]
