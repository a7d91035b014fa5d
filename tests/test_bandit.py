"""LinUCB horizon bandit: learns which jump pays, and to stop jumping where none does."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import structlog

from hpcore import HybridTrainerConfig, LinearConfig
from hpcore.adapters.numpy import HybridTrainer
from hpcore.bandit import HorizonBandit, context_vector
from hpcore.optim import SGD


@pytest.fixture(autouse=True)
def quiet():
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    yield
    structlog.reset_defaults()


def lg(p, c):
    r = p.astype(np.float64) - c
    return 0.5 * float(r @ r), r.astype(np.float32)


def lf(p, c):
    r = p.astype(np.float64) - c
    return 0.5 * float(r @ r)


CFG = HybridTrainerConfig(
    warmup_steps=20, full_steps=30, max_predict_steps=40, correct_steps=10, history_size=4,
    snapshot_interval=5, check_interval=10, predictor=LinearConfig(window=4),
    horizon_policy="linucb", cost_model="steps",  # the bandit learns from losses alone here
    floor=None,  # the bandit, not the floor guard, must learn to stop
)


def train(lr: float, target_of_step, steps: int = 3000):
    trainer = HybridTrainer(np.zeros(50, np.float32), lg, SGD(lr), CFG, loss_fn=lf)
    for i in range(steps):
        trainer.step(target_of_step(i))
    return trainer


class TestHorizonBandit:
    def test_drift_prefers_the_longest_horizon(self):
        """Where slow drift dominates, the longest forecast horizon comes to win."""
        rng = np.random.default_rng(0)
        trainer = train(0.002, lambda i: 1000.0 + 0.1 * rng.normal(size=50))
        arms = [j.arm for j in trainer.engine.jump_records]
        assert len(arms) > 20
        assert arms[-10:] == ["40"] * 10
        assert all(j.steps_gained > 0 for j in trainer.engine.jump_records[-10:])

    def test_stops_jumping_where_no_jump_pays(self):
        """At a noise floor no jump survives its Correct phase: jumping becomes rare."""
        rng = np.random.default_rng(0)
        trainer = train(0.2, lambda i: 3.0 * rng.normal(size=50))
        starts = [j.step for j in trainer.engine.jump_records]
        first, last = sum(s < 1000 for s in starts), sum(s >= 2000 for s in starts)
        assert first >= 3  # it does try (averaged probes make it give up sooner than 5)
        assert last < first / 2
        assert trainer.statistics().predicted_steps < 0.15 * 3000

    @pytest.mark.parametrize("paying", ["average", 100], ids=["noise-kind", "drift-kind"])
    def test_prefers_the_arm_that_pays(self, paying):
        """With rewards drawn per arm, the bandit settles on the one whose mean is positive."""
        rng = np.random.default_rng(1)
        bandit = HorizonBandit([100, 50, 25])
        x = context_vector(0.8, np.zeros(6))
        chosen = []
        for _ in range(60):
            arm = bandit.choose(x)
            mean = 1.0 if arm == paying else -0.5
            bandit.update(arm, x, mean + 0.3 * rng.normal())
            chosen.append(arm)
        assert chosen[-20:].count(paying) >= 18

    def test_none_arm_when_nothing_pays(self):
        """Every jump arm losing makes "none" the choice."""
        bandit = HorizonBandit([100, 50])
        x = context_vector(0.9, np.zeros(6))
        for _ in range(12):
            arm = bandit.choose(x)
            if arm == "none":
                break
            bandit.learn(arm, x, steps_gained=-40.0, taken=int(arm) if arm != "average" else 1,
                         steps_spent=40, rolled_back=True)
        assert bandit.choose(x) == "none"

    def test_state_round_trip(self):
        """A bandit's state loads into a fresh one; a wrong shape is refused."""
        a = HorizonBandit([100, 50])
        x = context_vector(0.5, np.ones(6))
        a.update(100, x, 1.0)
        b = HorizonBandit([100, 50])
        b.load_state_dict(a.state_dict())
        assert b.choose(x) == a.choose(x)
        np.testing.assert_array_equal(a.b, b.b)
        with pytest.raises(ValueError, match="bandit state 'a_inv' has shape"):
            HorizonBandit([100]).load_state_dict(a.state_dict())
