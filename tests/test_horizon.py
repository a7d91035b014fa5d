"""The doubling horizon policy, the engine's dormant mode and the wall-clock charge on jumps."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
import structlog

from hpcore import HybridTrainerConfig, LinearConfig, Phase
from hpcore.adapters.numpy import HybridTrainer
from hpcore.horizon import HorizonPolicy
from hpcore.optim import SGD
from hpcore.predictors.linear import LinearPredictor


@pytest.fixture(autouse=True)
def quiet():
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    yield
    structlog.reset_defaults()


class TestHorizonPolicy:
    def test_starts_short_and_doubles_on_paying_jumps(self):
        """The first jump is the shortest; each jump that delivered most of its skipped
        steps doubles the next, up to the longest."""
        p = HorizonPolicy(100, min_horizon=20)
        assert p.choose() == 20
        for expected in (40, 80, 100, 100):
            p.learn(p.horizon, None, 0.9 * p.horizon, p.horizon, 10, rolled_back=False)
            assert p.choose() == expected

    def test_failures_halve_and_back_off_exponentially(self):
        """A rolled-back or ground-losing jump halves the horizon and sits out 1, 2, 4, ...
        decision points; ``idle_decisions`` announces the rest of the pause."""
        p = HorizonPolicy(100, min_horizon=20)
        p.learn(20, None, 50.0, 20, 10, rolled_back=False)  # paid: 40
        p.learn(40, None, 60.0, 40, 10, rolled_back=False)  # paid: 80
        waits = []
        for _ in range(3):
            p.learn(p.horizon, None, -5.0, p.horizon, 10, rolled_back=False)
            n = 0
            while p.choose() == "none":
                n += 1
            waits.append(n)
        assert waits == [1, 2, 4]
        assert p.horizon == 20  # 80 -> 40 -> 20 -> 20
        p.learn(20, None, None, 20, 10, rolled_back=True)
        assert p.idle_decisions == 8
        assert p.choose() == "none" and p.idle_decisions == 7

    def test_a_jump_that_only_pays_for_itself_keeps_the_horizon(self):
        p = HorizonPolicy(100, min_horizon=20)
        p.learn(20, None, 2.0, 20, 10, rolled_back=False)
        assert p.choose() == 20 and p.idle_decisions == 0


def _noise_trainer(**overrides):
    """A quadratic at its noise floor: no jump can gain ground, so the policy backs off.
    A batch of ``"huge"`` reports a finite loss with a gradient that overflows the update."""

    def lg(p, c):
        if isinstance(c, str):
            return 1.0, np.full(p.shape, 3e38, np.float32)
        r = p.astype(np.float64) - c
        return 0.5 * float(r @ r), r.astype(np.float32)

    def lf(p, c):
        r = p.astype(np.float64) - c
        return 0.5 * float(r @ r)

    fields = dict(warmup_steps=20, full_steps=30, max_predict_steps=40, correct_steps=10,
                  history_size=4, snapshot_interval=5, check_interval=10,
                  predictor=LinearConfig(window=4), cost_model="steps", floor=None)
    fields.update(overrides)
    return HybridTrainer(np.zeros(50, np.float32), lg, SGD(0.2), HybridTrainerConfig(**fields),
                         loss_fn=lf)


def _until_dormant(trainer, rng, at_least=5):
    for _ in range(3000):
        trainer.step(3.0 * rng.normal(size=50))
        if trainer.engine._dormant > at_least:
            return
    raise AssertionError("never went dormant")


class TestDormant:
    def test_sits_out_with_no_bookkeeping_and_retries(self):
        """Where jumps fail the engine spends most later steps dormant (the average does not
        move), rebuilds its history before each retry, and still tries again."""
        rng = np.random.default_rng(0)
        trainer = _noise_trainer()
        engine = trainer.engine
        seen_frozen = False
        for _ in range(3000):
            before = engine.history.ema.copy() if engine._dormant > 1 else None
            trainer.step(3.0 * rng.normal(size=50))
            if before is not None and engine._dormant > 0:
                np.testing.assert_array_equal(engine.history.ema, before)
                seen_frozen = True
        stats = trainer.statistics()
        assert seen_frozen
        assert stats.dormant_steps > 0.5 * 3000
        assert stats.phase_steps["full"] >= stats.dormant_steps
        starts = [j.step for j in engine.jump_records]
        assert any(s > 1500 for s in starts)  # back-off, not a permanent stop
        assert np.all(np.isfinite(trainer.params))

    def test_non_finite_loss_while_dormant_takes_the_guarded_path(self):
        """A NaN during a dormant step is caught like any other: the state rolls back."""
        rng = np.random.default_rng(1)
        trainer = _noise_trainer()
        _until_dormant(trainer, rng)
        rollbacks = trainer.statistics().rollbacks
        r = trainer.step(np.full(50, np.nan))
        assert r.rolled_back and trainer.statistics().rollbacks == rollbacks + 1
        assert trainer.engine._dormant == 0
        assert np.all(np.isfinite(trainer.params))
        assert trainer.current_phase is Phase.FULL

    def test_resume_while_dormant_is_bit_identical(self):
        """Saved mid-dormancy (and with the probe batches held), a fresh trainer continues
        exactly like the uninterrupted one."""
        rng = np.random.default_rng(3)
        targets = [3.0 * rng.normal(size=50) for _ in range(3000)]
        a = _noise_trainer()
        i = 0
        while a.engine._dormant <= 50:
            a.step(targets[i])
            i += 1
        saved = (a.params.copy(), a.engine.port.optimizer.state_dict(), a.engine.state_dict())
        assert len(saved[2]["probe"]["recent"]) == a.engine.config.probe_batches - 1
        tail_a = [a.step(t).loss for t in targets[i:]]
        b = _noise_trainer()
        b.params[...] = saved[0]
        b.engine.port.optimizer.load_state_dict(saved[1])
        b.engine.load_state_dict(saved[2])
        tail_b = [b.step(t).loss for t in targets[i:]]
        assert tail_a == tail_b
        np.testing.assert_array_equal(a.params, b.params)
        assert b.statistics().dormant_steps == a.statistics().dormant_steps > 50

    def test_overflowing_update_while_dormant_is_caught(self):
        """A finite loss whose update throws the parameters out of range is caught on the
        same step: its gradient is a spike the dormant guard hands to the monitor."""
        rng = np.random.default_rng(2)
        trainer = _noise_trainer()
        _until_dormant(trainer, rng)
        r = trainer.step("huge")
        assert r.rolled_back and r.loss == 1.0
        assert trainer.statistics().divergence_events.get("grad_explosion") == 1
        assert np.all(np.isfinite(trainer.params))
        assert trainer.engine._dormant == 0


class _SlowLinear(LinearPredictor):
    """The line, with bookkeeping that costs far more than the model's step."""

    def observe_snapshot(self, history):
        time.sleep(0.002)


class TestWallClockCharge:
    def _drift(self, cost_model: str) -> HybridTrainer:
        def lg(p, c):
            r = p.astype(np.float64) - c
            return 0.5 * float(r @ r), r.astype(np.float32)

        cfg = HybridTrainerConfig(warmup_steps=20, full_steps=30, max_predict_steps=40,
                                  correct_steps=10, history_size=4, snapshot_interval=5,
                                  check_interval=10, predictor=LinearConfig(window=4),
                                  cost_model=cost_model, floor=None)
        trainer = HybridTrainer(np.zeros(20, np.float32), lg, SGD(0.002), cfg,
                                loss_fn=lambda p, c: lg(p, c)[0])
        trainer.engine.predictor = _SlowLinear(cfg.predictor)
        rng = np.random.default_rng(0)
        for _ in range(1500):
            trainer.step(1000.0 + 0.1 * rng.normal(size=20))
        return trainer

    def test_overhead_the_jumps_do_not_repay_makes_the_policy_back_off(self):
        """Slow drift: every jump gains steps. Counted in steps the policy keeps jumping;
        charged the engine's own time (here far above a step's), it sits out."""
        by_steps, by_wall = self._drift("steps"), self._drift("wall")
        assert all(j.cost_steps == 0.0 for j in by_steps.engine.jump_records)
        assert all(j.steps_gained > 0 for j in by_steps.engine.jump_records)
        assert all(j.cost_steps > j.horizon for j in by_wall.engine.jump_records)
        assert by_wall.statistics().dormant_steps > 0 == by_steps.statistics().dormant_steps
        assert by_wall.statistics().jumps < by_steps.statistics().jumps / 2
