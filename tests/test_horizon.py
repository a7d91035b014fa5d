"""Horizon policies: pure ``init`` / ``choose`` / ``learn`` over small frozen states."""

from __future__ import annotations

import numpy as np
import pytest

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
        """A small positive gain neither doubles nor halves: it joins the pool."""
        s = horizon.init(HybridTrainerConfig(max_predict_steps=100, check_interval=25))
        s = horizon.learn(s, 100, CTX, gained=None, taken=100, spent=50, rolled_back=True)
        s, _ = horizon.choose(s, CTX)
        s2 = horizon.learn(s, 50, CTX, gained=5.0, taken=50, spent=50, rolled_back=False,
                           ahead=0.001)
        assert (s2.horizon, s2.pause, s2.gained, s2.taken) == (50, 0, 5.0, 50)

    def test_only_a_rollback_halves_not_kept_jumps_behind_the_trend(self):
        """Kept jumps behind the trend (within the judge's margin, one by one) keep the
        horizon however many there are; a rollback halves it and sits out."""
        s = horizon.init(HybridTrainerConfig(max_predict_steps=100, check_interval=25))
        for _ in range(6):
            s = horizon.learn(s, 100, CTX, gained=-20.0, taken=100, spent=50, rolled_back=False,
                              ahead=-0.01)
        assert (s.horizon, s.pause, s.jumps, s.ahead) == (100, 0, 6, pytest.approx(-0.06))
        s = horizon.learn(s, 100, CTX, gained=None, taken=100, spent=50, rolled_back=True)
        assert (s.horizon, s.pause, s.jumps) == (50, 1, 0)

    def test_pooled_gains_double_the_horizon(self):
        """Two jumps whose pooled share of skipped steps reaches GOOD_RATIO double it, though
        one of them alone did not."""
        s = horizon.init(HybridTrainerConfig(max_predict_steps=100, check_interval=25))
        s = horizon.learn(s, 100, CTX, gained=None, taken=100, spent=50, rolled_back=True)
        s, _ = horizon.choose(s, CTX)
        kw = {"taken": 50, "spent": 50, "rolled_back": False}
        s = horizon.learn(s, 50, CTX, gained=10.0, ahead=0.002, **kw)
        assert s.horizon == 50
        s = horizon.learn(s, 50, CTX, gained=60.0, ahead=0.01, **kw)
        assert (s.horizon, s.taken) == (100, 0)

    def test_jumps_that_lost_no_ground_regrow_the_horizon(self):
        """After a rollback halved it, REGROW_JUMPS kept jumps whose pooled loss is not
        behind the trend double it, whatever the (noisily priced) share of steps."""
        s = horizon.init(HybridTrainerConfig(max_predict_steps=100, check_interval=25))
        s = horizon.learn(s, 100, CTX, gained=None, taken=100, spent=50, rolled_back=True)
        s, _ = horizon.choose(s, CTX)
        kw = {"taken": 50, "spent": 50, "rolled_back": False}
        s = horizon.learn(s, 50, CTX, gained=5.0, ahead=0.004, **kw)
        assert s.horizon == 50
        s = horizon.learn(s, 50, CTX, gained=-3.75, ahead=-0.003, **kw)
        assert (s.horizon, s.jumps) == (100, 0)

    def test_a_gain_the_rate_cannot_price_counts_only_in_loss(self):
        """Without a significant trend rate the jump's steps stay out of the share."""
        s = horizon.init(HybridTrainerConfig(max_predict_steps=100, check_interval=25))
        s = horizon.learn(s, 100, CTX, gained=0.0, taken=100, spent=50, rolled_back=False,
                          ahead=0.02, rate_known=False)
        assert (s.gained, s.taken, s.ahead) == (0.0, 0, 0.02)


class TestLinUCBPolicy:
    def test_the_bandit_is_chosen_by_the_config_and_never_idles(self):
        """horizon_policy='linucb' gives a bandit over halving horizons, none and average."""
        s = horizon.init(HybridTrainerConfig(horizon_policy="linucb", max_predict_steps=100,
                                             check_interval=25))
        assert isinstance(s, BanditState)
        assert s.arms == ("none", 100, 50, 25, "average")
        assert horizon.idle_decisions(s) == 0
