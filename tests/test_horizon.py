"""Horizon policies: pure ``init`` / ``choose`` / ``learn`` over small frozen states."""

from __future__ import annotations

import numpy as np

from hpcore import HybridTrainerConfig, horizon
from hpcore.bandit import BanditState

CTX = np.array([1.0, 0.9, 0.0, 0.0])


class TestDoubling:
    def test_starts_at_the_longest_and_doubles_on_paying_jumps(self):
        """The first jump is max_predict_steps; after a rollback halved it, a jump that paid
        doubles it."""
        s = horizon.init(HybridTrainerConfig(max_predict_steps=100, check_interval=25))
        s, arm = horizon.choose(s, CTX)
        assert arm == 100
        s = horizon.learn(s, arm, CTX, gained=None, taken=100, spent=50, rolled_back=True)
        s, _ = horizon.choose(s, CTX)  # the pause after the rollback
        s, arm = horizon.choose(s, CTX)
        assert arm == 50
        s = horizon.learn(s, arm, CTX, gained=40.0, taken=50, spent=50, rolled_back=False)
        assert horizon.choose(s, CTX)[1] == 100
        s = horizon.learn(s, 100, CTX, gained=90.0, taken=100, spent=50, rolled_back=False)
        assert horizon.choose(s, CTX)[1] == 100  # capped

    def test_failures_halve_and_back_off_exponentially(self):
        """A rollback halves the horizon and sits out 1, then 2, then 4 decision points."""
        s = horizon.init(HybridTrainerConfig(max_predict_steps=100, check_interval=25))
        pauses = []
        for _ in range(3):
            s = horizon.learn(s, 50, CTX, gained=None, taken=50, spent=50, rolled_back=True)
            pauses.append(horizon.idle_decisions(s))
            while horizon.idle_decisions(s):
                s, arm = horizon.choose(s, CTX)
                assert arm == "none"
        assert pauses == [1, 2, 4]
        assert horizon.choose(s, CTX)[1] == 25  # never below the shortest

    def test_a_jump_that_only_pays_for_itself_keeps_the_horizon(self):
        """A small positive gain neither doubles nor halves."""
        s = horizon.init(HybridTrainerConfig(max_predict_steps=100, check_interval=25))
        s2 = horizon.learn(s, 50, CTX, gained=5.0, taken=50, spent=50, rolled_back=False)
        assert s2 == s


class TestLinUCBPolicy:
    def test_the_bandit_is_chosen_by_the_config_and_never_idles(self):
        """horizon_policy='linucb' gives a bandit over halving horizons, none and average."""
        s = horizon.init(HybridTrainerConfig(horizon_policy="linucb", max_predict_steps=100,
                                             check_interval=25))
        assert isinstance(s, BanditState)
        assert s.arms == ("none", 100, 50, 25, "average")
        assert horizon.idle_decisions(s) == 0
