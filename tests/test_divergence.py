"""Divergence monitor: every signal, level and what the trainer does on it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpcore import DivergenceConfig, HybridTrainerConfig, Level, LinearConfig, Phase
from hpcore.adapters.numpy import HybridTrainer
from hpcore.divergence import DivergenceMonitor
from hpcore.optim import SGD


def monitor(**kw) -> DivergenceMonitor:
    return DivergenceMonitor(DivergenceConfig(**kw), warning_zscore=4.0, rollback_tolerance=0.5)


def warmed(rng=None, **kw) -> DivergenceMonitor:
    rng = rng or np.random.default_rng(0)
    m = monitor(**kw)
    for i in range(100):
        m.full_step(i, 1.0 + 0.05 * rng.normal(), 1.0 + 0.1 * rng.random(), 0,
                    update_baseline=True)
    return m


def signals(events):
    return [(e.signal, e.level) for e in events]


class TestDivergenceMonitor:
    def test_nan_inf_is_critical(self):
        """A non-finite loss, or non-finite parameters, is critical at once."""
        m = monitor()
        assert signals(m.full_step(0, math.nan, 1.0, 0, update_baseline=True)) == [
            ("nan_inf", Level.CRITICAL)]
        assert signals(m.full_step(0, 1.0, 1.0, 3, update_baseline=True)) == [
            ("nan_inf", Level.CRITICAL)]

    def test_loss_zscore_levels(self):
        """Normal losses pass; a spike warns; a huge one is critical; no verdict before a baseline."""
        assert monitor().full_step(0, 1e9, 1.0, 0, update_baseline=True) == []
        m = warmed()
        assert m.full_step(100, 1.02, 1.0, 0, update_baseline=False) == []
        assert signals(m.full_step(100, 1.3, 1.0, 0, update_baseline=False)) == [
            ("loss_zscore", Level.WARNING)]
        assert signals(m.full_step(100, 5.0, 1.0, 0, update_baseline=False)) == [
            ("loss_zscore", Level.CRITICAL)]

    def test_gradient_explosion_and_vanishing(self):
        """Gradient norm far above its level warns, then is critical; far below is a caution."""
        m = warmed()
        assert signals(m.full_step(100, 1.0, 50.0, 0, update_baseline=False)) == [
            ("grad_explosion", Level.WARNING)]
        assert signals(m.full_step(100, 1.0, 1e5, 0, update_baseline=False)) == [
            ("grad_explosion", Level.CRITICAL)]
        assert signals(m.full_step(100, 1.0, 1e-5, 0, update_baseline=False)) == [
            ("grad_vanishing", Level.CAUTION)]

    def test_oscillation_caution_once_per_episode(self):
        """A loss that flips direction every step raises one caution per episode."""
        m = monitor(oscillation_window=6)
        events = []
        for i in range(30):
            events += m.full_step(i, 1.0 + (0.01 if i % 2 else 0.0), 1.0, 0, update_baseline=True)
        assert signals(events) == [("loss_oscillation", Level.CAUTION)]

    def test_probe_signals(self):
        """During a jump: a rise past the tolerance warns; a gap to the trend is a caution."""
        m = warmed()
        assert signals(m.probe(5, 1.6, 1.0, skipped=10, slope=-0.001)) == [
            ("probe_rise", Level.WARNING), ("prediction_gap", Level.CAUTION)]
        assert signals(m.probe(5, 1.2, 1.0, skipped=10, slope=-0.001)) == [
            ("prediction_gap", Level.CAUTION)]
        assert m.probe(5, 0.98, 1.0, skipped=10, slope=-0.001) == []
        assert signals(m.probe(5, math.inf, 1.0, skipped=10, slope=0.0)) == [
            ("nan_inf", Level.CRITICAL)]

    def test_config_checks(self):
        """The critical gradient ratio cannot be below the warning one."""
        with pytest.raises(ValueError, match="'grad_critical_ratio' must be >= 'grad_explosion_ratio'"):
            DivergenceConfig(grad_explosion_ratio=100.0, grad_critical_ratio=10.0)


class TestDivergenceInARun:
    def test_gradient_explosion_rolls_back_and_is_exported(self, quadratic, tmp_path):
        """A critical gradient spike on an observed step restores the last good state and
        its optimizer state; the events reach the statistics and the JSON."""
        cfg = HybridTrainerConfig(warmup_steps=50, full_steps=20, floor=None)
        params = np.zeros(8, np.float32)
        optimizer = SGD(lr=1e-6, momentum=0.9)
        trainer = HybridTrainer(params, quadratic.loss_and_grad, optimizer, cfg)
        origin = params.copy()
        rng = np.random.default_rng(0)
        for _ in range(40):
            trainer.step(np.full(8, 1.0) + 0.01 * rng.normal(size=8))
        assert not np.array_equal(params, origin)
        result = trainer.step(np.full(8, 1e5))  # gradient 1e5x its running level
        assert result.rolled_back and result.phase is Phase.WARMUP
        np.testing.assert_array_equal(params, origin)  # the last good state: the start
        # Its optimizer state (no momentum yet); the schedule still counts every step.
        assert optimizer.state_dict() == {"momentum_buffer": None, "schedule_step": 41}
        stats = trainer.statistics()
        assert stats.rollbacks == 1
        assert stats.divergence_events == {"grad_explosion": 1, "loss_zscore": 1}
        assert trainer.phase is Phase.FULL
        assert [(e.step, e.signal, e.level) for e in trainer.events] == [
            (40, "loss_zscore", Level.CRITICAL), (40, "grad_explosion", Level.CRITICAL)]
        data = json.loads(trainer.export_metrics(tmp_path / "m.json").read_text())
        exported = {(e["signal"], e["level"]) for e in data["divergence_events"]}
        assert exported == {("grad_explosion", "critical"), ("loss_zscore", "critical")}

    def test_a_warning_is_recorded_without_a_rollback(self, quadratic):
        """A loss z-score at the warning level is an event; the step stands."""
        cfg = HybridTrainerConfig(warmup_steps=50, full_steps=20, floor=None)
        trainer = HybridTrainer(np.zeros(8, np.float32), quadratic.loss_and_grad,
                                SGD(lr=1e-6), cfg)
        rng = np.random.default_rng(0)
        for _ in range(40):
            trainer.step(np.full(8, 1.0) + 0.01 * rng.normal(size=8))
        result = trainer.step(np.full(8, 1.045))  # the loss 9% up: about 9 deviations
        assert not result.rolled_back
        assert [(e.signal, e.level) for e in trainer.events] == [("loss_zscore", Level.WARNING)]
        assert trainer.statistics().rollbacks == 0 and trainer.phase is Phase.WARMUP


    def test_probe_rise_ends_the_jump_at_its_origin(self, quadratic):
        """During a jump a probe loss that rises past the tolerance is a warning; with no
        checked point better than the origin the jump is undone exactly."""
        cfg = HybridTrainerConfig(warmup_steps=10, full_steps=20, max_predict_steps=20,
                                  correct_steps=10, history_size=4, snapshot_interval=5,
                                  check_interval=10, predictor=LinearConfig(window=4),
                                  rollback_tolerance=0.05, floor=None)
        params = np.zeros(8, np.float32)
        optimizer = SGD(lr=0.005, momentum=0.5)
        # Training pulls towards 10, the probe towards the start: the jump raises its loss.
        trainer = HybridTrainer(params, quadratic.loss_and_grad, optimizer, cfg,
                                probe=quadratic.probe(params, np.zeros(8)))
        far = np.full(8, 10.0)
        while trainer.phase is not Phase.PREDICT:
            assert trainer.current_step < 200
            trainer.step(far)
        origin, momentum = params.copy(), optimizer.state_dict()["momentum_buffer"].copy()
        results = [trainer.step(far)]
        while not results[-1].rolled_back:
            results.append(trainer.step(far))
        assert all(r.was_predicted for r in results) and len(results) == 10
        np.testing.assert_array_equal(params, origin)
        np.testing.assert_array_equal(optimizer.state_dict()["momentum_buffer"], momentum)
        assert [(e.signal, e.level) for e in trainer.events] == [("probe_rise", Level.WARNING)]
        assert trainer.events[0].value > cfg.rollback_tolerance
        stats = trainer.statistics()
        assert stats.rollbacks == 1 and stats.jumps_accepted == 0
        assert stats.forward_only_passes == quadratic.loss_calls == 2  # at the origin, at k=10
        assert trainer.phase is Phase.FULL and trainer.jumps[0].rolled_back


@given(st.lists(st.floats(0.0, 10.0), min_size=0, max_size=60))
def test_oscillation_count_is_kept_exactly(losses):
    """The running count of sign flips equals a recount over the window."""
    import itertools

    m = monitor(oscillation_window=5)
    for i, x in enumerate(losses):
        m.full_step(i, x, 1.0, 0, update_baseline=True)
        assert m.flips == sum(a != b for a, b in itertools.pairwise(m.signs))
