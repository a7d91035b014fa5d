"""LinUCB over jump horizons, as pure functions over a frozen state."""

from __future__ import annotations

import numpy as np
import pytest

from hpcore import bandit


class TestBandit:
    def test_jump_arms_are_tried_before_none(self):
        """Optimistic priors: the first choice is a jump arm, not "none"."""
        s = bandit.init([100, 50, 25])
        assert bandit.choose(s, bandit.context_vector(0.8, np.zeros(6))) != "none"

    @pytest.mark.parametrize("paying", ["average", 100], ids=["noise-kind", "drift-kind"])
    def test_prefers_the_arm_that_pays(self, paying):
        """With rewards per arm, the bandit settles on the one whose mean is positive."""
        rng = np.random.default_rng(1)
        s = bandit.init([100, 50, 25])
        x = bandit.context_vector(0.8, np.zeros(6))
        chosen = []
        for _ in range(60):
            arm = bandit.choose(s, x)
            gained = (1.0 if arm == paying else -0.5) + 0.3 * rng.normal()
            s = bandit.learn(s, arm, x, gained * 50, 50, False)
            chosen.append(arm)
        assert chosen[-10:].count(paying) >= 8

    def test_learning_leaves_the_old_state_unchanged(self):
        """learn returns a new state; the arrays of the old one are not touched."""
        s = bandit.init([100])
        a_inv = s.a_inv.copy()
        s2 = bandit.learn(s, 100, np.ones(4), 10.0, 50, False)
        np.testing.assert_array_equal(s.a_inv, a_inv)
        assert s2.pulls[1] == 1 and s.pulls[1] == 0

    def test_a_rollback_is_penalised(self):
        """The reward of a rolled-back jump is below that of the same kept jump."""
        assert bandit.reward(10.0, 50, True) == bandit.reward(10.0, 50, False) - 1.0
        assert bandit.reward(None, 50, False) == -1.0
