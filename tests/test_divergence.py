"""Divergence monitor: every signal, level and the engine's action on it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpcore import DivergenceConfig, HybridTrainerConfig, Level
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

    def test_loss_limit_is_the_last_loss_without_a_warning(self):
        """A lean dormant step compares its loss with ``loss_limit``: just below it the loss
        is quiet, just above it the z-score warns; unknown baseline: no limit."""
        assert monitor().loss_limit() == math.inf
        m = warmed()
        limit = m.loss_limit()
        assert 1.0 < limit < 2.0
        assert m.zscore(limit * (1 - 1e-9)) <= 4.0 < m.zscore(limit * (1 + 1e-9))
        assert not m.quiet(limit * (1 + 1e-9), 1.0)
        assert m.quiet(limit * (1 - 1e-9), 1.0)

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


def test_gradient_explosion_rolls_back_and_is_exported(quadratic, tmp_path):
    """A critical gradient spike restores the last good state; the event reaches the JSON."""
    cfg = HybridTrainerConfig(warmup_steps=50, full_steps=20)
    trainer = HybridTrainer(np.zeros(8, np.float32), quadratic.loss_and_grad, SGD(lr=1e-6), cfg,
                            loss_fn=quadratic.loss)
    rng = np.random.default_rng(0)
    for _ in range(40):
        trainer.step(np.full(8, 1.0) + 0.01 * rng.normal(size=8))
    result = trainer.step(np.full(8, 1e5))  # gradient 1e5x its running level
    assert result.rolled_back
    assert trainer.statistics().divergence_events == {"grad_explosion": 1, "loss_zscore": 1}
    data = json.loads(trainer.export_metrics(tmp_path / "m.json").read_text())
    exported = {(e["signal"], e["level"]) for e in data["divergence_events"]}
    assert exported == {("grad_explosion", "critical"), ("loss_zscore", "critical")}


@given(st.lists(st.floats(0.0, 10.0), min_size=0, max_size=60))
def test_oscillation_count_is_kept_exactly(losses):
    """The running count of sign flips equals a recount over the window."""
    import itertools

    m = monitor(oscillation_window=5)
    for i, x in enumerate(losses):
        m.full_step(i, x, 1.0, 0, update_baseline=True)
        assert m.flips == sum(a != b for a, b in itertools.pairwise(m.signs))
