"""The phase machine on a quadratic problem whose batches name the point they pull towards."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from structlog.testing import capture_logs

from hpcore import HybridTrainerConfig, LinearConfig, Phase
from hpcore.adapters.numpy import HybridTrainer
from hpcore.optim import SGD

FAR = np.full(8, 10.0, dtype=np.float32)  # training batches pull every coordinate towards 10

SMALL = dict(
    warmup_steps=10, full_steps=20, max_predict_steps=40, correct_steps=10, history_size=4,
    snapshot_interval=5, check_interval=10, predictor=LinearConfig(window=4),
    probe_batches=1,  # these tests craft the probe batch: the jump's first one
    floor=None,  # jumps from the first decision point on (TestFloorGuard turns it on)
)


def make(quadratic, **overrides):
    cfg = HybridTrainerConfig(**{**SMALL, **overrides})
    params = np.zeros(8, np.float32)
    opt = SGD(lr=0.005, momentum=0.5)
    return HybridTrainer(params, quadratic.loss_and_grad, opt, cfg, loss_fn=quadratic.loss)


def run_until(trainer, phase, batch=FAR, limit=500):
    for _ in range(limit):
        if trainer.current_phase is phase:
            return
        trainer.step(batch)
    raise AssertionError(f"never reached {phase}")


class TestPhaseMachine:
    def test_phases_in_order(self, quadratic):
        """Warmup, then Full, then Predict, then Correct, then Full again."""
        trainer = make(quadratic)
        seen = []
        for _ in range(120):
            phase = trainer.step(FAR).phase
            if not seen or seen[-1] is not phase:
                seen.append(phase)
        assert seen[:5] == [Phase.WARMUP, Phase.FULL, Phase.PREDICT, Phase.CORRECT, Phase.FULL]

    def test_predicted_step_moves_weights_without_gradient(self, quadratic):
        """A predicted step changes the parameters and computes no gradient."""
        trainer = make(quadratic)
        run_until(trainer, Phase.PREDICT)
        for _ in range(5):
            before = trainer.params.copy()
            calls = quadratic.grad_calls
            result = trainer.step(FAR)
            assert result.was_predicted and result.phase is Phase.PREDICT
            assert quadratic.grad_calls == calls
            assert not np.array_equal(before, trainer.params)
            assert 0.0 < result.confidence <= 1.0

    def test_jump_follows_the_trend(self, quadratic):
        """On a steady drift the jump moves the parameters further along it."""
        trainer = make(quadratic)
        run_until(trainer, Phase.PREDICT)
        start = trainer.params.copy()
        run_until(trainer, Phase.CORRECT)
        assert np.all(trainer.params > start)

    def test_accepted_jump_lowers_loss(self, quadratic):
        """A good jump is kept: the run is ahead of where full steps alone would be."""
        trainer = make(quadratic)
        run_until(trainer, Phase.PREDICT)
        run_until(trainer, Phase.FULL)
        stats = trainer.statistics()
        assert stats.jumps == 1 and stats.jumps_accepted == 1 and stats.rollbacks == 0
        record = trainer.engine.jump_records[0]
        assert record.loss_after < record.loss_before and record.steps_gained > 0


class TestRollback:
    def test_probe_rise_rolls_back_at_once(self, quadratic):
        """A jump that raises the probe loss past the tolerance is undone, exactly."""
        trainer = make(quadratic)
        run_until(trainer, Phase.PREDICT)
        origin = trainer.params.copy()
        momentum = trainer.engine.port.optimizer.state_dict()["momentum_buffer"].copy()
        probe = origin.copy()  # the probe batch pulls towards where the jump starts
        with capture_logs() as logs:
            results = [trainer.step(probe)]
            while not results[-1].rolled_back:
                results.append(trainer.step(FAR))
        assert all(r.was_predicted for r in results)
        np.testing.assert_array_equal(trainer.params, origin)
        np.testing.assert_array_equal(
            trainer.engine.port.optimizer.state_dict()["momentum_buffer"], momentum
        )
        assert trainer.current_phase is Phase.FULL
        assert trainer.statistics().rollbacks == 1
        assert trainer.statistics().divergence_events == {"probe_rise": 1}
        assert any(e["event"] == "rollback" for e in logs)

    def test_judged_rollback_after_correct(self, quadratic):
        """A jump whose probe loss ends above its start after the Correct phase is undone."""
        trainer = make(quadratic, rollback_tolerance=1e6)
        run_until(trainer, Phase.PREDICT)
        origin = trainer.params.copy()
        trainer.step(origin - 1.0)  # probe behind the start: moving on raises its loss
        run_until(trainer, Phase.CORRECT)
        results = []
        while trainer.current_phase is Phase.CORRECT:
            results.append(trainer.step(FAR))
        assert results[-1].rolled_back
        np.testing.assert_array_equal(trainer.params, origin)
        stats = trainer.statistics()
        assert stats.rollbacks == 1 and stats.jumps_accepted == 0
        record = trainer.engine.jump_records[0]
        assert record.rolled_back and record.reason == "judged"
        assert record.loss_after > record.loss_before


class TestDivergence:
    def test_nan_loss_takes_critical_path_and_recovers(self, quadratic):
        """A NaN loss restores the last good state, forces full steps, and training goes on."""
        trainer = make(quadratic)
        for _ in range(15):
            trainer.step(FAR)
        with capture_logs() as logs:
            result = trainer.step(None)
        assert result.rolled_back
        assert math.isnan(result.loss)
        assert np.all(np.isfinite(trainer.params))
        assert trainer.current_phase is Phase.FULL
        assert trainer.statistics().divergence_events == {"nan_inf": 1}
        assert any(e["event"] == "divergence" and e["signal"] == "nan_inf" for e in logs)
        losses = [trainer.step(FAR).loss for _ in range(20)]
        assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]

    def test_nonfinite_parameters_are_caught(self, quadratic):
        """Parameters made non-finite by a finite loss are caught and restored."""
        cfg = HybridTrainerConfig(**SMALL)
        spike = SGD(lr=lambda step: 1e3 if step == 12 else 0.005)  # one step's lr overflows
        trainer = HybridTrainer(np.zeros(8, np.float32), quadratic.loss_and_grad, spike, cfg)
        for _ in range(12):
            trainer.step(FAR)
        with np.errstate(over="ignore"):
            result = trainer.step(np.full(8, -1e36, dtype=np.float32))
        assert math.isfinite(result.loss) and result.rolled_back
        assert np.all(np.isfinite(trainer.params))
        assert trainer.statistics().divergence_events == {"nan_inf": 1}

    def test_nan_during_predict_probe(self, quadratic):
        """A non-finite probe loss during a jump rolls it back."""
        trainer = make(quadratic)
        run_until(trainer, Phase.PREDICT)
        origin = trainer.params.copy()
        nan_probe = np.full(8, np.nan, dtype=np.float32)
        result = trainer.step(nan_probe)
        assert result.rolled_back
        np.testing.assert_array_equal(trainer.params, origin)


class TestStatistics:
    def test_counts_add_up(self, quadratic):
        """Phase counts sum to total steps; backward and forward passes match the calls."""
        trainer = make(quadratic)
        for _ in range(300):
            trainer.step(FAR)
        s = trainer.statistics()
        assert sum(s.phase_steps.values()) == s.total_steps == 300
        assert s.backward_passes == quadratic.grad_calls
        assert s.forward_only_passes == quadratic.loss_calls
        assert s.predicted_steps == s.phase_steps["predict"] > 0
        assert s.backward_passes + s.predicted_steps == s.total_steps
        assert s.backward_reduction_pct == pytest.approx(100 * (1 - s.backward_passes / 300))
        assert 0 <= s.engine_time_s <= s.wall_time_s

    def test_forward_without_loss_fn_counts_as_backward(self, quadratic):
        """Without loss_fn the gradient function serves the checks and is counted honestly."""
        cfg = HybridTrainerConfig(**SMALL)
        trainer = HybridTrainer(np.zeros(8, np.float32), quadratic.loss_and_grad,
                                SGD(lr=0.005, momentum=0.5), cfg)
        for _ in range(300):
            trainer.step(FAR)
        s = trainer.statistics()
        assert s.forward_only_passes == 0
        assert s.backward_passes == quadratic.grad_calls
        assert s.backward_passes > s.total_steps - s.predicted_steps

    def test_export_metrics(self, quadratic, tmp_path):
        """The JSON export holds statistics, config, jumps and events."""
        trainer = make(quadratic)
        for _ in range(90):
            trainer.step(FAR)
        data = json.loads(trainer.export_metrics(tmp_path / "m.json").read_text())
        assert data["statistics"]["total_steps"] == 90
        assert data["config"]["predictor"]["kind"] == "LinearConfig"
        stats = trainer.statistics()
        assert len(data["jumps"]) == stats.jumps_accepted + stats.rollbacks >= 1  # judged ones

    def test_phase_change_events(self, quadratic):
        """Every phase change is a structlog event."""
        trainer = make(quadratic)
        with capture_logs() as logs:
            for _ in range(100):
                trainer.step(FAR)
        changes = [e["to"] for e in logs if e["event"] == "phase_changed"]
        assert changes[:3] == ["full", "predict", "correct"]


class TestStateDict:
    def test_resume_is_bit_identical(self, quadratic):
        """Engine + optimizer + params saved mid-run and loaded elsewhere continue identically."""
        a = make(quadratic, cost_model="steps")  # decisions from losses alone
        for _ in range(47):
            a.step(FAR)
        saved = (a.params.copy(), a.engine.port.optimizer.state_dict(), a.engine.state_dict())
        tail_a = [a.step(FAR).loss for _ in range(150)]
        b = make(quadratic, cost_model="steps")
        b.params[...] = saved[0]
        b.engine.port.optimizer.load_state_dict(saved[1])
        b.engine.load_state_dict(saved[2])
        tail_b = [b.step(FAR).loss for _ in range(150)]
        assert tail_a == tail_b
        np.testing.assert_array_equal(a.params, b.params)
        assert a.statistics().to_dict() | {"wall_time_s": 0, "engine_time_s": 0} == \
            b.statistics().to_dict() | {"wall_time_s": 0, "engine_time_s": 0}

    def test_size_mismatch_refused(self, quadratic):
        """A state for another model size is refused before anything changes."""
        state = make(quadratic).engine.state_dict()
        other = HybridTrainer(np.zeros(5, np.float32), quadratic.loss_and_grad, SGD(lr=0.1))
        with pytest.raises(ValueError, match="engine state is for 8 parameters"):
            other.engine.load_state_dict(state)


def test_critical_rollback_does_not_loop(quadratic):
    """After a critical rollback the loss baseline is re-learnt: no rollback after rollback.

    The target moves every step, so an old saved state always looks like a spike against
    the baseline learnt before it; the monitor must not send the run back there forever.
    """
    trainer = make(quadratic, rollback_tolerance=100.0)
    trainer.engine.port.optimizer = SGD(lr=0.1)
    rng = np.random.default_rng(0)
    for i in range(1500):
        trainer.step(0.05 * i + 0.1 * rng.normal(size=8))
    stats = trainer.statistics()
    assert stats.rollbacks < 50
    assert np.all(np.abs(trainer.params - 0.05 * 1499) < 5.0)


def test_confidence_decays_with_prediction_error(quadratic):
    """A probe loss above the trend's promise lowers the confidence until the jump ends."""
    trainer = make(quadratic, rollback_tolerance=1e6, confidence_threshold=0.9)
    run_until(trainer, Phase.PREDICT)
    origin = trainer.params.copy()
    results = [trainer.step(origin - 1.0)]  # probe behind the start: the jump only hurts it
    while trainer.current_phase is Phase.PREDICT:
        results.append(trainer.step(FAR))
    checked = [r for r in results if r.loss is not None]
    assert checked[0].confidence < trainer.engine._base_confidence
    assert checked[-1].confidence < trainer.engine.config.confidence_threshold
    assert len(results) < trainer.engine.config.max_predict_steps  # ended early
    assert trainer.engine.jump_records[-1].reason == "probe:low_confidence"
    np.testing.assert_array_equal(trainer.params, origin)


class TestProbeBatches:
    def test_probe_is_the_mean_over_the_jump_batch_and_the_ones_before(self, quadratic):
        """The probe set is the batches of the first ``probe_batches - 1`` steps of the Full
        phase before the jump (not the last ones: the model was just fitted to those) and of
        the jump's first step; its loss is their mean, at the cost of one forward each."""
        trainer = make(quadratic, probe_batches=3)
        batches = [FAR + 0.01 * i for i in range(500)]
        i = 0
        while trainer.current_phase is not Phase.PREDICT:
            trainer.step(batches[i])
            i += 1
        origin = trainer.params.copy()
        calls = quadratic.loss_calls
        trainer.step(batches[i])
        probe = trainer.engine._probe
        start = i - SMALL["full_steps"]  # the Full phase that fed the jump
        expected_batches = [*batches[start : start + 2], batches[i]]
        assert [float(b[0]) for b in probe] == [float(b[0]) for b in expected_batches]
        expected = np.mean([0.5 * float((origin - b) @ (origin - b)) for b in probe])
        assert trainer.engine._loss_before == pytest.approx(expected, rel=1e-6)
        assert quadratic.loss_calls - calls == 3

    def test_one_batch_probes_on_the_jump_batch_alone(self, quadratic):
        trainer = make(quadratic, probe_batches=1)
        run_until(trainer, Phase.PREDICT)
        trainer.step(FAR)
        assert len(trainer.engine._probe) == 1 and trainer.engine._probe[0] is FAR


class TestTotalSteps:
    def test_no_jump_that_cannot_be_judged_before_the_end(self, quadratic):
        """With ``total_steps`` every Correct phase ends by then; after the last chance to
        jump the engine is dormant to the end."""
        trainer = make(quadratic, total_steps=150, cost_model="steps")
        phases = [trainer.step(FAR).phase for _ in range(150)]
        last_jump_end = max(i for i, p in enumerate(phases) if p in (Phase.PREDICT, Phase.CORRECT))
        assert trainer.statistics().jumps >= 2
        assert last_jump_end < 150
        assert trainer.engine.jump_records[-1].reason == "judged"
        assert trainer.statistics().dormant_steps > 0
        open_ended = make(quadratic, cost_model="steps")  # the same run, left open-ended,
        more = [open_ended.step(FAR).phase for _ in range(150)]
        assert more[-1] is Phase.PREDICT  # ends in the middle of a jump
