"""The Lookahead wrapper against a hand computation."""

from __future__ import annotations

import numpy as np
import pytest

from hpcore.bench.lookahead import Lookahead


def make(k, alpha, lr=0.1):
    p = np.array([0.0, 2.0])
    target = np.array([1.0, 0.0])

    def sgd(_batch):  # gradient descent on 0.5 * ||p - target||^2
        p[:] -= lr * (p - target)

    def set_flat(v):
        p[:] = v

    return p, Lookahead(sgd, lambda: p.copy(), set_flat, k=k, alpha=alpha)


class TestLookahead:
    def test_matches_hand_computation(self):
        """k=2, alpha=0.5: fast 0 -> 0.1 -> 0.19, slow 0.095; then 0.1855, 0.26695 -> 0.180975."""
        p, la = make(k=2, alpha=0.5)
        la.step(None)
        np.testing.assert_allclose(p, [0.1, 1.8])
        la.step(None)
        np.testing.assert_allclose(p, [0.095, 0.5 * 2.0 + 0.5 * 1.62])
        la.step(None)
        la.step(None)
        # first coordinate: 0.095 -> 0.1855 -> 0.26695; slow 0.095 + 0.5 * (0.26695 - 0.095)
        assert p[0] == pytest.approx(0.180975)
        np.testing.assert_allclose(la.slow, p)
        assert la.count == 4

    def test_alpha_one_is_the_plain_loop(self):
        """alpha=1 keeps the fast weights: the same as the inner optimizer alone."""
        p, la = make(k=5, alpha=1.0)
        for _ in range(7):
            la.step(None)
        expected = np.array([1.0, 0.0]) + (np.array([0.0, 2.0]) - np.array([1.0, 0.0])) * 0.9**7
        np.testing.assert_allclose(p, expected)

    @pytest.mark.parametrize("k,alpha,match", [(0, 0.5, r"'k' must be an int >= 1 \(got 0\)"),
                                               (5, 0.0, r"'alpha' must be in \(0, 1\] \(got 0.0\)")])
    def test_rejects_bad_hyperparameters(self, k, alpha, match):
        """k and alpha are checked at construction."""
        with pytest.raises(ValueError, match=match):
            make(k=k, alpha=alpha)
