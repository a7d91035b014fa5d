"""Residual store: per-group corrections learned from how jumps really went."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import structlog

from hpcore import HybridTrainerConfig, LinearConfig
from hpcore.adapters.numpy import HybridTrainer
from hpcore.optim import SGD
from hpcore.residual import ResidualStore

# Two groups: 20 slow coordinates drifting towards a far target, 20 stiff noisy ones.
CURV = np.concatenate([np.full(20, 0.001), np.full(20, 1.0)])


def lg(p, c):
    r = p.astype(np.float64) - c
    return 0.5 * float(CURV * r @ r), (CURV * r).astype(np.float32)


def lf(p, c):
    r = p.astype(np.float64) - c
    return 0.5 * float(CURV * r @ r)


@pytest.fixture(autouse=True)
def quiet():
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    yield
    structlog.reset_defaults()


def run(capacity: int):
    cfg = HybridTrainerConfig(
        warmup_steps=20, full_steps=30, max_predict_steps=40, correct_steps=10, history_size=4,
        snapshot_interval=5, check_interval=20, predictor=LinearConfig(window=4),
        residual_capacity=capacity, rollback_tolerance=100.0, floor=None,
    )
    trainer = HybridTrainer(np.zeros(40, np.float32), lg, SGD(0.5), cfg, loss_fn=lf,
                            group_sizes=[20, 20])
    rng = np.random.default_rng(0)
    rises = []
    for _ in range(2000):
        r = trainer.step(np.concatenate([np.full(20, 1000.0), rng.normal(size=20)]))
        if r.was_predicted and trainer.current_phase.value == "correct":
            rises.append(r.loss - trainer.engine._loss_before)
    return trainer, np.array(rises)


class TestResidualStore:
    def test_systematic_bias_is_removed(self):
        """The stiff group's extrapolated noise is scaled down; the slow drift is kept."""
        corrected, rise_with = run(64)
        _, rise_without = run(0)
        store = corrected.engine.residuals
        kept = store.scales[: store.count]
        assert np.all(np.abs(kept[:, 0] - 1.0) < 0.05)  # the drift survives recovery
        assert np.all(np.abs(kept[:, 1]) < 0.5)  # the stiff group's jump is undone
        later = [j.correction for j in corrected.engine.jump_records[2:]]
        assert max(later) < 0.8
        # Corrected jumps land lower: the transient rise at the jump's end is smaller.
        assert np.median(rise_with[2:]) < 0.7 * np.median(rise_without[2:])

    def test_correction_is_similarity_weighted(self):
        """Entries from similar states dominate; an empty store corrects nothing."""
        store = ResidualStore(capacity=4, key_dim=2, n_groups=1, temperature=0.05)
        assert store.correction(np.array([1.0, 0.0])) is None
        store.add(np.array([1.0, 0.0]), np.array([0.5]), 0.0)
        store.add(np.array([0.0, 1.0]), np.array([1.5]), 0.0)
        assert store.correction(np.array([1.0, 0.1]))[0] == pytest.approx(0.5, abs=0.01)
        assert store.correction(np.array([0.1, 1.0]))[0] == pytest.approx(1.5, abs=0.01)

    def test_bounded(self):
        """The store keeps its capacity, overwriting the oldest entry."""
        store = ResidualStore(capacity=2, key_dim=1, n_groups=1, temperature=1.0)
        for v in (0.2, 0.4, 0.6):
            store.add(np.ones(1), np.array([v]), 0.0)
        assert len(store) == 2 and sorted(store.scales[:, 0]) == [0.4, 0.6]

    def test_bad_group_sizes(self):
        """Group sizes that do not cover the parameters are refused."""
        with pytest.raises(ValueError, match="group_sizes must be positive and sum to params.size=40"):
            HybridTrainer(np.zeros(40, np.float32), lg, SGD(0.1), group_sizes=[20, 10])
