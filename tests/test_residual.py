"""Residual store: per-group corrections learned from how jumps really went."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import structlog

from hpcore import HybridTrainerConfig, LinearConfig, Phase
from hpcore.adapters.numpy import HybridTrainer
from hpcore.optim import SGD
from hpcore.residual import ResidualStore, group_projections

# Two groups: 20 slow coordinates drifting towards a far target, 20 stiff noisy ones.
CURV = np.concatenate([np.full(20, 0.001), np.full(20, 1.0)])
TARGET = np.concatenate([np.full(20, 1000.0), np.zeros(20)])


def lg(p, c):
    r = p.astype(np.float64) - c
    return 0.5 * float(CURV * r @ r), (CURV * r).astype(np.float32)


def stiff_loss(p) -> float:
    """The stiff group's part of the loss at the batches' mean."""
    r = p[20:].astype(np.float64)
    return 0.5 * float(r @ r)


@pytest.fixture(autouse=True)
def quiet():
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    yield
    structlog.reset_defaults()


def run(capacity: int):
    """2000 steps; per jump (slow move, stiff move, stiff loss rise), from its origin to
    where its Predict phase ended."""
    cfg = HybridTrainerConfig(
        warmup_steps=20, full_steps=30, max_predict_steps=40, correct_steps=10, history_size=4,
        snapshot_interval=5, check_interval=20, predictor=LinearConfig(window=4),
        residual_capacity=capacity, floor=None,
    )
    trainer = HybridTrainer(np.zeros(40, np.float32), lg, SGD(0.5), cfg, group_sizes=[20, 20])
    rng = np.random.default_rng(0)
    jumps, origin = [], None
    for _ in range(2000):
        before = trainer.params.copy()
        r = trainer.step(TARGET + np.concatenate([np.zeros(20), rng.normal(size=20)]))
        if r.was_predicted and origin is None:
            origin = before
        if r.was_predicted and trainer.phase is Phase.CORRECT:
            move = trainer.params.astype(np.float64) - origin
            jumps.append((np.linalg.norm(move[:20]), np.linalg.norm(move[20:]),
                          stiff_loss(trainer.params) - stiff_loss(origin)))
            origin = None
    return trainer, np.array(jumps)


class TestResidualStore:
    def test_systematic_bias_is_removed(self):
        """The stiff group's extrapolated noise is scaled down; the slow drift is kept."""
        corrected, with_store = run(64)
        plain, without = run(0)
        assert corrected.statistics().jumps_accepted >= 20 and len(with_store) == len(without)
        store = corrected.state_dict()["hybrid"]["residuals"]
        kept = store["scales"][: store["count"]]
        assert store["count"] == corrected.statistics().jumps_accepted
        assert np.all(kept[:, 0] > 0.95)  # the drift survives recovery
        assert np.median(np.abs(kept[:, 1])) < 0.5  # the stiff group's jump is undone
        assert plain.state_dict()["hybrid"]["residuals"] is None
        # The first jumps are the same (an empty store corrects nothing); later ones differ.
        np.testing.assert_allclose(with_store[0], without[0])
        later = slice(2, None)
        assert np.all(with_store[later, 0] >= 0.95 * without[later, 0])
        assert np.median(with_store[later, 1] / without[later, 1]) < 0.5
        # Corrected jumps land lower: the stiff group's loss rises less at the jump's end.
        assert np.median(with_store[later, 2]) < 0.3 * np.median(without[later, 2])

    def test_correction_is_similarity_weighted(self):
        """Entries from similar states dominate; an empty store corrects nothing."""
        store = ResidualStore(capacity=4, key_dim=2, n_groups=1, temperature=0.05)
        assert store.correction(np.array([1.0, 0.0])) is None
        store.add(np.array([1.0, 0.0]), np.array([0.5]), 0.0)
        store.add(np.array([0.0, 1.0]), np.array([1.5]), 0.0)
        assert store.correction(np.array([1.0, 0.1]))[0] == pytest.approx(0.5, abs=0.01)
        assert store.correction(np.array([0.1, 1.0]))[0] == pytest.approx(1.5, abs=0.01)

    def test_correction_is_clipped(self):
        """A correction never reverses nor explodes a jump: it stays within [0.1, 2]."""
        store = ResidualStore(capacity=2, key_dim=1, n_groups=2, temperature=1.0)
        store.add(np.ones(1), np.array([-3.0, 9.0]), 0.0)
        np.testing.assert_array_equal(store.correction(np.ones(1)), [0.1, 2.0])

    def test_bounded(self):
        """The store keeps its capacity, overwriting the oldest entry."""
        store = ResidualStore(capacity=2, key_dim=1, n_groups=1, temperature=1.0)
        for v in (0.2, 0.4, 0.6):
            store.add(np.ones(1), np.array([v]), 0.0)
        assert len(store) == 2 and sorted(store.scales[:, 0]) == [0.4, 0.6]

    def test_state_round_trip_and_refusal(self):
        """A restored store corrects as the original; a state of another shape is refused."""
        store = ResidualStore(capacity=3, key_dim=2, n_groups=2, temperature=0.5)
        store.add(np.array([1.0, 0.0]), np.array([0.5, 1.2]), 0.1)
        other = ResidualStore(capacity=3, key_dim=2, n_groups=2, temperature=0.5)
        other.load_state_dict(store.state_dict())
        key = np.array([0.9, 0.2])
        np.testing.assert_array_equal(other.correction(key), store.correction(key))
        with pytest.raises(ValueError, match=r"residual store state has shape \(3, 2\), "
                                             r"expected \(3, 1\)"):
            ResidualStore(3, 2, 1, 0.5).load_state_dict(store.state_dict())

    def test_bad_group_sizes(self):
        """Group sizes that do not cover the parameters are refused."""
        with pytest.raises(ValueError, match=r"group_sizes must be positive and sum to "
                                             r"params.size=40 \(got \[20, 10\]\)"):
            HybridTrainer(np.zeros(40, np.float32), lg, SGD(0.1), group_sizes=[20, 10])


class TestGroupProjections:
    def test_per_group_dot_products(self):
        """Per group: <actual, forecast>, ||forecast||^2 and ||actual||^2, as float64."""
        actual = np.array([1.0, 2.0, 3.0, -1.0, 0.5], np.float32)
        forecast = np.array([2.0, 0.0, 1.0, 4.0, 2.0], np.float32)
        dot, ff, aa = group_projections(actual, forecast, np.array([0, 2, 5]))
        np.testing.assert_allclose(dot, [2.0, 0.0])
        np.testing.assert_allclose(ff, [4.0, 21.0])
        np.testing.assert_allclose(aa, [5.0, 10.25])
        assert dot.dtype == ff.dtype == aa.dtype == np.float64
