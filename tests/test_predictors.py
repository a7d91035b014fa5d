"""Learned predictors (MLP, RSSM-lite): registration, learning, confidence, state."""

from __future__ import annotations

import numpy as np
import pytest

from hpcore import HybridTrainerConfig, LinearConfig, MLPConfig, RSSMConfig
from hpcore.adapters.numpy import HybridTrainer
from hpcore.history import SnapshotHistory
from hpcore.optim import SGD
from hpcore.predictors import LinearPredictor, MLPPredictor, RSSMPredictor, make_predictor
from hpcore.predictors.mlp import slope_weights, window_features

SMALL_MLP = MLPConfig(window=4, sample_size=256, batch_size=256, train_steps=4,
                      learning_rate=3e-3, max_lookahead=6)
SMALL_RSSM = RSSMConfig(window=6, sample_size=256, batch_size=128, train_steps=4,
                        learning_rate=3e-3, max_lookahead=6, deterministic_dim=8,
                        stochastic_dim=8, num_categoricals=2, bptt=2)


def feed(predictor, trajectory, history_size=8):
    """Snapshot every row of ``trajectory`` (T, N) (raw, interval 1); the history."""
    theta = np.array(trajectory[0], np.float32)
    history = SnapshotHistory(theta, history_size, 1, None)
    for row in trajectory:
        theta[:] = row
        history.observe(theta, True)
        predictor.observe_snapshot(history)
    return history, theta


def drift(n=256, steps=60, noise=0.0, seed=0):
    """Each coordinate moves at its own constant velocity (plus white noise)."""
    rng = np.random.default_rng(seed)
    v = rng.uniform(-1.0, 1.0, n)
    t = np.arange(1, steps + 1)[:, None]
    return v, t * v + noise * rng.normal(size=(steps, n))


class TestMakePredictor:
    @pytest.mark.parametrize(("config", "cls"), [(LinearConfig(), LinearPredictor),
                                                 (MLPConfig(), MLPPredictor),
                                                 (RSSMConfig(), RSSMPredictor)],
                             ids=["linear", "mlp", "rssm"])
    def test_config_names_the_predictor(self, config, cls):
        """Each predictor config builds its own predictor."""
        assert type(make_predictor(config)) is cls

    def test_unknown_config_refused(self):
        """Anything else is refused with the configs that exist."""
        with pytest.raises(TypeError, match="no predictor for str; use LinearConfig"):
            make_predictor("mlp")


class TestLinear:
    def test_scale_takes_that_share_of_the_lines_move(self):
        """On an exact drift the line's D is the drift over H steps; ``scale`` takes that
        share of it, averaging part and all."""
        v, traj = drift(n=64, steps=12)
        history, theta = feed(LinearPredictor(LinearConfig(window=8, scale=1.0)), traj)
        full, half = np.empty(64, np.float32), np.empty(64, np.float32)
        LinearPredictor(LinearConfig(window=8, scale=1.0)).forecast(history, theta, 10, full)
        LinearPredictor(LinearConfig(window=8, scale=0.5)).forecast(history, theta, 10, half)
        np.testing.assert_allclose(full, 10 * v, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(half, 0.5 * full, rtol=1e-5, atol=1e-6)

    def test_scale_is_checked(self):
        with pytest.raises(ValueError, match=r"'scale' must be in \(0.0, 2.0\] \(got 0.0\)"):
            LinearConfig(scale=0.0)


class TestFeatures:
    def test_slope_weights_recover_a_line(self):
        """The slope weights give the least-squares slope of the points."""
        pts = np.array([0.0, 1.0, 1.5, 3.5, 4.0])
        assert float(np.diff(pts) @ slope_weights(4)) == pytest.approx(np.polyfit(range(5), pts, 1)[0])

    def test_window_features_unit_scale(self):
        """Moves are per interval and divided by their RMS; a still row does not divide by 0."""
        win = np.array([[0.0, 5.0], [1.0, 5.0], [3.0, 5.0]], np.float32)
        x, scale = window_features(win, np.array([2.0, 4.0, 6.0]), 2.0)
        np.testing.assert_allclose(scale[0], np.sqrt(2.5))
        np.testing.assert_allclose(x[0], [1.0 / np.sqrt(2.5), 2.0 / np.sqrt(2.5)], rtol=1e-6)
        assert np.all(x[1] == 0.0) and np.isfinite(scale[1])


class TestConfiguredPredictorIsUsed:
    def test_predictors_give_different_updates(self):
        """Linear, MLP and RSSM move the parameters in different directions on their first
        predicted step of the same run."""
        rng = np.random.default_rng(0)
        n = 64
        curvature = np.geomspace(0.05, 5.0, n)  # slow and fast directions
        centre = rng.normal(size=n) * 3.0
        batches = [centre + rng.normal(size=n) for _ in range(400)]

        def loss_and_grad(p, c):
            r = p.astype(np.float64) - c
            return 0.5 * float(curvature @ (r * r)), (curvature * r).astype(np.float32)

        moves = {}
        for name, predictor in [("linear", LinearConfig(window=6)),
                                ("mlp", MLPConfig(window=6, sample_size=64, batch_size=64)),
                                ("rssm", RSSMConfig(window=6, sample_size=64, batch_size=64))]:
            cfg = HybridTrainerConfig(warmup_steps=20, full_steps=80, history_size=8,
                                      snapshot_interval=10, predictor=predictor,
                                      confidence_threshold=0.0, floor=None)
            trainer = HybridTrainer(np.zeros(n, np.float32), loss_and_grad,
                                    SGD(lr=0.05, momentum=0.9), cfg)
            for b in batches:
                before = trainer.params.copy()
                if trainer.step(b).was_predicted:
                    break
            assert trainer.statistics().predicted_steps == 1, name
            move = trainer.params.astype(np.float64) - before
            moves[name] = move / np.linalg.norm(move)
        for a, b in [("linear", "mlp"), ("linear", "rssm"), ("mlp", "rssm")]:
            assert np.all(np.isfinite(moves[a]))
            gap = np.linalg.norm(moves[a] - moves[b])
            assert gap > 1e-3, (a, b, gap)


class TestLearning:
    def test_mlp_forecasts_a_drift(self):
        """After online training on a noisy drift the MLP forecasts the true displacement."""
        v, traj = drift(noise=0.3)
        p = MLPPredictor(SMALL_MLP)
        history, theta = feed(p, traj)
        out = np.zeros_like(theta)
        p.forecast(history, theta, 10, out)
        true = 10 * v
        err = np.linalg.norm(out - true) / np.linalg.norm(true)
        assert err < 0.3
        assert np.corrcoef(out, true)[0, 1] > 0.95

    def test_mlp_learns_beyond_the_line(self):
        """On a decelerating trajectory the trained MLP forecasts far better than the line."""
        rng = np.random.default_rng(1)
        n, tau = 256, 12.0
        a = rng.uniform(-1.0, 1.0, n)
        t = np.arange(1, 81)[:, None]
        traj = a * (1.0 - np.exp(-t / tau))
        p = MLPPredictor(MLPConfig(window=4, sample_size=256, batch_size=256, train_steps=10,
                                   learning_rate=1e-2, max_lookahead=10))
        history, theta = feed(p, traj[:60])
        horizon = 10
        out = np.zeros_like(theta)
        p.forecast(history, theta, horizon, out)
        line = np.zeros_like(theta)
        LinearPredictor(LinearConfig(window=4)).forecast(history, theta, horizon, line)
        true = traj[59 + horizon] - traj[59]
        err_mlp = np.linalg.norm(out - true)
        err_line = np.linalg.norm(line - true)
        assert err_mlp < 0.5 * err_line, (err_mlp, err_line)

    def test_rssm_forecasts_a_drift(self):
        """The RSSM ensemble, trained the same way, forecasts the drift and trusts it."""
        v, traj = drift(noise=0.1)
        p = RSSMPredictor(SMALL_RSSM)
        history, theta = feed(p, traj)
        assert p.confidence(history) > 0.8
        out = np.zeros_like(theta)
        p.forecast(history, theta, 10, out)
        err = np.linalg.norm(out - 10 * v) / np.linalg.norm(10 * v)
        assert err < 0.3

    def test_jump_outcome_becomes_training_rows(self):
        """A judged jump adds the sample's kept displacement to the jump replay."""
        _, traj = drift(n=32)
        p = MLPPredictor(SMALL_MLP)
        history, theta = feed(p, traj[:20])
        out = np.zeros_like(theta)
        p.forecast(history, theta, 10, out)
        assert len(p.state_dict()["jumps"]["y"]) == 0
        # The optimizer undid the jump on the first half (fast), kept it on the second.
        actual = out.copy()
        actual[:16] = 0.0
        p.learn_from_jump(actual, taken=10, horizon=10, correct_steps=0)
        rows = p.state_dict()["jumps"]["y"]
        assert len(rows) == 32
        assert np.sum(np.abs(rows) < 1e-3) >= 16  # the undone half teaches "no move"
        assert np.sum(np.abs(rows) > 0.5) >= 16  # the kept half its velocity


class TestConfidence:
    def test_disagreement_lowers_confidence_on_noise(self):
        """Members agree on a drift and disagree on a random walk (moves nobody can forecast):
        the share of confident rows drops."""
        _, steady = drift(noise=0.05)
        noise = np.cumsum(np.random.default_rng(3).normal(size=steady.shape), axis=0)
        p_drift, p_noise = RSSMPredictor(SMALL_RSSM), RSSMPredictor(SMALL_RSSM)
        h_drift, _ = feed(p_drift, steady)
        h_noise, _ = feed(p_noise, noise)
        c_drift, c_noise = p_drift.confidence(h_drift), p_noise.confidence(h_noise)
        assert 0.0 <= c_noise < 0.5 < c_drift <= 1.0, (c_noise, c_drift)

    def test_uncertain_parameters_stay_at_the_average(self):
        """Uncertain rows are left at the averaged point; confident rows are extrapolated."""
        v, steady = drift(n=256, noise=0.05)
        walk = np.random.default_rng(4).normal(size=(steady.shape[0], 128))
        steady[:, 128:] = np.cumsum(walk, axis=0)
        p = RSSMPredictor(SMALL_RSSM)
        history, theta = feed(p, steady)
        origin = theta + np.float32(0.01)  # theta a little ahead of the average
        out = np.zeros_like(theta)
        p.forecast(history, origin, 10, out)
        mask = np.asarray(p.confident_mask)
        assert mask[:128].mean() > 0.8 and mask[128:].mean() < mask[:128].mean() - 0.2
        np.testing.assert_array_equal(out[~mask], (history.ema - origin)[~mask])
        moved = out[:128][mask[:128]] - (history.ema - origin)[:128][mask[:128]]
        np.testing.assert_allclose(moved, 10 * v[:128][mask[:128]], rtol=0.3, atol=0.3)


class TestStateDict:
    @pytest.mark.parametrize("config", [SMALL_MLP, SMALL_RSSM], ids=["mlp", "rssm"])
    def test_round_trip(self, config):
        """A restored predictor forecasts and keeps training exactly as the original."""
        _, traj = drift(noise=0.2)
        a = make_predictor(config)
        history, theta = feed(a, traj[:30])
        b = make_predictor(config)
        b.load_state_dict(a.state_dict())
        for row in traj[30:35]:
            theta[:] = row
            history.observe(theta, True)
            a.observe_snapshot(history)
            b.observe_snapshot(history)
        out_a, out_b = np.zeros_like(theta), np.zeros_like(theta)
        a.forecast(history, theta, 7, out_a)
        b.forecast(history, theta, 7, out_b)
        np.testing.assert_array_equal(out_a, out_b)

    def test_other_predictor_state_refused(self):
        """An RSSM state does not load into an MLP, nor a state of another size."""
        with pytest.raises(ValueError, match="predictor state is for 'RSSMPredictor'"):
            MLPPredictor(SMALL_MLP).load_state_dict(RSSMPredictor(SMALL_RSSM).state_dict())
        state = MLPPredictor(SMALL_MLP).state_dict()
        with pytest.raises(ValueError, match="predictor state 'params' has shapes"):
            MLPPredictor(MLPConfig(window=4, hidden_dim=5)).load_state_dict(state)

    def test_trainer_state_carries_the_predictor(self):
        """The trainer's state dict round-trips a learned predictor inside a run: a second
        trainer loaded mid-run takes the same jumps to the same parameters."""
        _, traj = drift(n=16, steps=400)

        def loss_and_grad(p, c):
            r = p.astype(np.float64) - c
            return 0.5 * float(r @ r), r.astype(np.float32)

        cfg = HybridTrainerConfig(full_steps=20, correct_steps=10, max_predict_steps=20,
                                  history_size=6, snapshot_interval=5, floor=None,
                                  confidence_threshold=0.0,
                                  predictor=MLPConfig(window=4, sample_size=16))
        a = HybridTrainer(np.zeros(16, np.float32), loss_and_grad, SGD(lr=0.1), cfg)
        for row in traj[:100]:
            a.step(row)
        b = HybridTrainer(np.zeros(16, np.float32), loss_and_grad, SGD(lr=0.1), cfg)
        b.load_state_dict(a.state_dict())
        jumps_before = a.statistics().jumps
        for row in traj[100:]:
            a.step(row)
            b.step(row)
        np.testing.assert_array_equal(a.params, b.params)
        assert a.statistics() == b.statistics()
        assert a.statistics().jumps > jumps_before
