"""The NumPy adapter's surface and its refusals of bad input."""

from __future__ import annotations

import json
import math

import attrs
import numpy as np
import pytest

from hpcore import HybridTrainerConfig, LinearConfig, Phase
from hpcore.adapters.numpy import HybridOptimizer, HybridTrainer
from hpcore.optim import SGD, cosine_schedule

SMALL = HybridTrainerConfig(
    warmup_steps=0, full_steps=20, max_predict_steps=20, correct_steps=10, history_size=4,
    snapshot_interval=5, check_interval=10, predictor=LinearConfig(window=4), floor=None,
)


def lg(p, batch):
    r = p - batch
    return float(r @ r), 2 * r


def until(opt: HybridOptimizer, params: np.ndarray, target: np.ndarray, done, limit=500) -> list:
    """Steps of :func:`user_loop` until ``done(results)``; at most ``limit``."""
    results = []
    while not (results and done(results)):
        assert len(results) < limit, "never happened"
        results += user_loop(opt, params, target, 1)
    return results


def user_loop(opt: HybridOptimizer, params: np.ndarray, target: np.ndarray, steps: int) -> list:
    """The loop the NumPy adapter documents: a gradient only when asked for."""
    results = []
    for _ in range(steps):
        if opt.need_grads:
            loss, grad = lg(params, target)
            results.append(opt.step(grad, loss))
        else:
            results.append(opt.step())
    return results


class TestHybridTrainer:
    def test_surface(self, tmp_path):
        """step, params, current_step, phase, statistics, metrics and export_metrics work."""
        p = np.zeros(4, np.float32)
        t = HybridTrainer(p, lg, SGD(lr=0.1))
        assert t.phase is Phase.WARMUP and t.current_step == 0  # 200 steps of warm-up by default
        r = t.step(np.ones(4, np.float32))
        assert t.params is p and t.current_step == 1 and r.step == 0
        assert r.phase is Phase.WARMUP and not r.was_predicted and not r.rolled_back
        assert r.loss == pytest.approx(4.0)
        assert t.statistics().backward_passes == 1 and t.jumps == () and t.events == ()
        data = json.loads(t.export_metrics(tmp_path / "m.json").read_text())
        assert data == json.loads(json.dumps(t.metrics()))
        assert data["statistics"]["total_steps"] == 1

    def test_jumps_in_a_short_run(self):
        """With a small config the trainer predicts steps; a predicted step reports the last
        known loss and computes no gradient."""
        calls = []

        def counted(p, batch):
            calls.append(1)
            return lg(p, batch)

        t = HybridTrainer(np.zeros(4, np.float32), counted, SGD(lr=0.001), SMALL)
        results = [t.step(np.full(4, 10.0, np.float32)) for _ in range(200)]
        predicted = [r for r in results if r.was_predicted]
        assert predicted and all(r.phase is Phase.PREDICT for r in predicted)
        assert len(calls) == t.statistics().backward_passes == 200 - len(predicted)
        first = results.index(predicted[0])
        assert predicted[0].loss == results[first - 1].loss
        assert t.statistics().jumps_accepted >= 1

    @pytest.mark.parametrize(
        ("params", "message"),
        [
            (np.zeros(4, np.float64), "params must be a 1-D float32 array"),
            (np.zeros((2, 2), np.float32), "params must be a 1-D float32 array"),
            (np.zeros(0, np.float32), "params is empty"),
            (np.zeros(8, np.float32)[::2], "params must be C-contiguous and writeable"),
            ([0.0, 1.0], "params must be a NumPy array"),
        ],
        ids=["float64", "2d", "empty", "strided", "list"],
    )
    def test_bad_params(self, params, message):
        """Parameters the trainer cannot train in place are refused at construction."""
        with pytest.raises(ValueError, match=message):
            HybridTrainer(params, lg, SGD(lr=0.1))

    def test_bad_optimizer(self):
        """Only hpcore.optim optimizers drive a NumPy model."""
        with pytest.raises(ValueError, match=r"optimizer must be an hpcore.optim optimizer \(got object\)"):
            HybridTrainer(np.zeros(2, np.float32), lg, object())

    def test_bad_config_and_loss_and_grad(self):
        """A config that is not a HybridTrainerConfig and a loss_and_grad that is not
        callable are refused."""
        with pytest.raises(ValueError, match=r"config must be a HybridTrainerConfig \(got dict\)"):
            HybridTrainer(np.zeros(2, np.float32), lg, SGD(lr=0.1), {"full_steps": 5})
        with pytest.raises(ValueError, match=r"loss_and_grad must be callable \(got int\)"):
            HybridTrainer(np.zeros(2, np.float32), 3, SGD(lr=0.1))

    def test_bad_loss_and_grad_results(self):
        """A non-scalar loss, a wrongly shaped gradient or a result that is not a pair is
        named, and nothing moves."""
        p = np.ones(3, np.float32)
        t = HybridTrainer(p, lambda p, b: (np.ones(2), p.copy()), SGD(lr=0.1))
        with pytest.raises(ValueError, match=r"loss must be a scalar number \(got ndarray of shape \(2,\)\)"):
            t.step(None)
        t = HybridTrainer(p, lambda p, b: (1.0, np.ones(5, np.float32)), SGD(lr=0.1))
        with pytest.raises(ValueError, match=r"grad has shape \(5,\); it must match params \(3,\)"):
            t.step(None)
        t = HybridTrainer(p, lambda p, b: 1.0, SGD(lr=0.1))
        with pytest.raises(ValueError, match=r"loss_and_grad must return \(loss, grad\) \(got float\)"):
            t.step(None)
        np.testing.assert_array_equal(p, np.ones(3, np.float32))
        assert t.current_step == 0


class TestHybridOptimizer:
    def test_user_loop_matches_the_trainer(self):
        """The documented loop (gradient when need_grads, bare step otherwise) takes the
        trainer's steps exactly."""
        target = np.full(4, 10.0, np.float32)
        p1, p2 = np.zeros(4, np.float32), np.zeros(4, np.float32)
        opt = HybridOptimizer(p1, SGD(lr=0.001), SMALL)
        trainer = HybridTrainer(p2, lg, SGD(lr=0.001), SMALL)
        mine = user_loop(opt, p1, target, 150)
        theirs = [trainer.step(target) for _ in range(150)]
        assert mine == theirs
        np.testing.assert_array_equal(p1, p2)
        assert opt.statistics().predicted_steps > 0

    def test_step_of_the_wrong_kind_is_refused(self):
        """A gradient on a predicted step, or none on a full step, is refused and the step
        is not taken."""
        p = np.zeros(4, np.float32)
        opt = HybridOptimizer(p, SGD(lr=0.001), SMALL)
        assert opt.need_grads
        with pytest.raises(RuntimeError, match=r"this step needs gradients \(need_grads is "
                                               r"True\): call step\(grad, loss\)"):
            opt.step()
        until(opt, p, np.full(4, 10.0, np.float32), lambda rs: not opt.need_grads)
        step = opt.current_step
        with pytest.raises(RuntimeError, match=r"this step is predicted \(need_grads is "
                                               r"False\): call step\(\) without a gradient"):
            opt.step(np.zeros(4, np.float32), 1.0)
        assert opt.current_step == step and opt.phase is Phase.PREDICT

    def test_non_finite_gradient_is_skipped(self):
        """A non-finite loss or gradient never reaches the parameters: the step counts, the
        schedule advances and a divergence event is recorded."""
        p = np.ones(3, np.float32)
        optimizer = SGD(lr=0.1, momentum=0.9)
        opt = HybridOptimizer(p, optimizer, SMALL)
        opt.step(np.array([1.0, np.nan, 0.0], np.float32), 1.0)
        opt.step(np.ones(3, np.float32), math.inf)
        np.testing.assert_array_equal(p, np.ones(3, np.float32))
        assert optimizer.schedule_step == 2 and optimizer.state_dict()["momentum_buffer"] is None
        assert opt.current_step == 2
        assert opt.statistics().divergence_events == {"nan_inf": 2}

    def test_a_float32_overflow_of_the_norm_is_not_a_bad_gradient(self):
        """A finite gradient whose squared norm overflows float32 is still applied."""
        p = np.zeros(2, np.float32)
        opt = HybridOptimizer(p, SGD(lr=1e-30))
        opt.step(np.full(2, 3e30, np.float32), 1.0)
        np.testing.assert_allclose(p, [-3.0, -3.0], rtol=1e-6)
        assert opt.events == ()

    def test_a_rollback_keeps_the_schedule_and_restores_the_moments(self):
        """A rolled-back jump brings the parameters and the momentum of its start back and
        leaves the schedule where it is: it counts every step taken, rolled-back ones too."""
        p = np.zeros(4, np.float32)
        optimizer = SGD(cosine_schedule(0.001, 1000), momentum=0.9)
        probes = []

        def probe():  # finite at the jump's origin, non-finite at the first check
            probes.append(1)
            return 1.0 if len(probes) == 1 else math.nan

        opt = HybridOptimizer(p, optimizer, SMALL, probe=probe)
        target = np.full(4, 10.0, np.float32)
        until(opt, p, target, lambda rs: not opt.need_grads)
        origin, saved = p.copy(), optimizer.state_dict()
        results = until(opt, p, target, lambda rs: rs[-1].rolled_back)
        assert all(r.was_predicted for r in results) and len(probes) == 2
        np.testing.assert_array_equal(p, origin)
        assert optimizer.schedule_step == opt.current_step > saved["schedule_step"]
        np.testing.assert_array_equal(optimizer.state_dict()["momentum_buffer"],
                                      saved["momentum_buffer"])
        assert opt.phase is Phase.FULL and opt.statistics().rollbacks == 1
        assert opt.jumps[-1].rolled_back

    def test_state_round_trip(self):
        """A second optimizer loaded from the state dict continues identically."""
        target = np.full(4, 10.0, np.float32)
        p1, p2 = np.zeros(4, np.float32), np.zeros(4, np.float32)
        a = HybridOptimizer(p1, SGD(lr=0.001, momentum=0.5), SMALL)
        user_loop(a, p1, target, 70)
        b = HybridOptimizer(p2, SGD(lr=0.001, momentum=0.5), SMALL)
        b.load_state_dict(a.state_dict())
        np.testing.assert_array_equal(p1, p2)
        assert user_loop(a, p1, target, 150) == user_loop(b, p2, target, 150)
        np.testing.assert_array_equal(p1, p2)
        assert a.statistics() == b.statistics() and a.statistics().jumps >= 2

    def test_refused_load_changes_nothing(self):
        """A state of another size, or a hybrid state of another version, is refused and the
        optimizer is left as it was."""
        p = np.zeros(4, np.float32)
        opt = HybridOptimizer(p, SGD(lr=0.001, momentum=0.5), SMALL)
        user_loop(opt, p, np.full(4, 10.0, np.float32), 30)
        before, stats = opt.state_dict(), opt.statistics()
        small = HybridOptimizer(np.zeros(3, np.float32), SGD(lr=0.001), SMALL).state_dict()
        with pytest.raises(ValueError, match=r"state holds params \(3,\) float32, this "
                                             r"optimizer has \(4,\) float32"):
            opt.load_state_dict(small)
        other = {**before, "hybrid": {**before["hybrid"], "version": 1},
                 "params": np.ones(4, np.float32),
                 "optimizer": {"momentum_buffer": None, "schedule_step": 0}}
        with pytest.raises(ValueError, match=r"unknown hybrid state version 1 \(expected 2\)"):
            opt.load_state_dict(other)
        np.testing.assert_array_equal(p, before["params"])
        np.testing.assert_array_equal(opt.optimizer.state_dict()["momentum_buffer"],
                                      before["optimizer"]["momentum_buffer"])
        assert opt.statistics() == stats


class TestOptimizerAtJump:
    @pytest.mark.parametrize("mode", ["keep", "advance"])
    def test_adams_counter_counts_the_predicted_steps_only_when_told(self, mode):
        """With ``optimizer_at_jump="advance"`` Adam's bias-correction counter moves on by
        the predicted steps at the landing; with ``"keep"`` it counts full steps only."""
        from hpcore.optim import Adam

        p = np.zeros(4, np.float32)
        adam = Adam(lr=0.01)
        opt = HybridOptimizer(p, adam, attrs.evolve(SMALL, optimizer_at_jump=mode))
        target = np.full(4, 10.0, np.float32)
        until(opt, p, target, lambda rs: not opt.need_grads)
        t0 = adam.state_dict()["t"]
        predicted = until(opt, p, target, lambda rs: opt.need_grads)
        assert t0 > 0 and len(predicted) == SMALL.max_predict_steps
        assert adam.state_dict()["t"] == t0 + (len(predicted) if mode == "advance" else 0)
