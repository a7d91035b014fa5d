"""The floor guard: jumps risk only the progress the floor's slack (and their gains) allow."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import structlog

from hpcore import HybridTrainerConfig, LinearConfig
from hpcore.adapters.numpy import HybridTrainer
from hpcore.floor import FloorGuard
from hpcore.optim import SGD
from hpcore.predictors.linear import LinearPredictor

from .test_horizon import _SlowLinear

CORRECT = 10


class _Uphill(LinearPredictor):
    """The line's forecast, reversed and shortened: a small jump back up the slope."""

    def forecast(self, history, origin, horizon, out):
        super().forecast(history, origin, horizon, out)
        out *= -0.3


@pytest.fixture(autouse=True)
def quiet():
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    yield
    structlog.reset_defaults()


def _quadratic(lr=0.002, **overrides):
    """``0.5 ||p - c||^2`` on 50 weights; decisions from losses alone unless overridden."""

    def lg(p, c):
        r = p.astype(np.float64) - c
        return 0.5 * float(r @ r), r.astype(np.float32)

    fields = dict(warmup_steps=20, full_steps=30, max_predict_steps=40, correct_steps=CORRECT,
                  history_size=4, snapshot_interval=5, check_interval=10,
                  predictor=LinearConfig(window=4), cost_model="steps", floor=0.95)
    fields.update(overrides)
    return HybridTrainer(np.zeros(50, np.float32), lg, SGD(lr), HybridTrainerConfig(**fields),
                         loss_fn=lambda p, c: lg(p, c)[0])


def _drift(trainer, steps, rng):
    """Slow drift towards a far point: every jump gains ground."""
    credits = []
    for _ in range(steps):
        trainer.step(1000.0 + 0.1 * rng.normal(size=50))
        credits.append(trainer.statistics().floor_credit)
    return credits


def _noise(trainer, steps, rng):
    """The noise floor of a quadratic: no jump can gain ground."""
    credits = []
    for _ in range(steps):
        trainer.step(3.0 * rng.normal(size=50))
        credits.append(trainer.statistics().floor_credit)
    return credits


class TestLedger:
    def test_slack_grows_with_the_steps_taken(self):
        g = FloorGuard(0.95)
        assert g.credit(100, overhead=2.0, rate=0.5) == pytest.approx(0.05 * 100 - 2.0)
        g.record(-3.0)
        assert g.credit(200, overhead=0.0, rate=0.0) == pytest.approx(10.0 - 3.0)
        assert g.steps_until(5.0, rate=0.0) == pytest.approx(100.0)
        assert g.steps_until(5.0, rate=0.03) == pytest.approx(250.0)  # 2% a step left over
        assert math.isinf(g.steps_until(5.0, rate=0.06))  # the overhead eats the slack

    def test_a_known_run_length_gives_its_whole_slack_and_reserves_its_overhead(self):
        g = FloorGuard(0.9, total_steps=1000)
        assert g.credit(10, overhead=1.0, rate=0.0) == pytest.approx(100.0 - 1.0)
        # 2% a step for the 990 steps still to come is reserved.
        assert g.credit(10, overhead=1.0, rate=0.02) == pytest.approx(100.0 - 1.0 - 19.8)
        assert g.credit(1500, overhead=0.0, rate=0.02) == pytest.approx(150.0)  # ran past it
        assert math.isinf(g.steps_until(1.0, rate=0.0))  # waiting adds nothing

    def test_a_floor_of_one_never_allows_a_risk(self):
        g = FloorGuard(1.0)
        assert g.credit(10_000, overhead=0.0, rate=0.0) == 0.0
        assert math.isinf(g.steps_until(1.0, rate=0.0))

    def test_bad_floor_fails_at_construction(self):
        with pytest.raises(ValueError, match="'floor' must be in"):
            HybridTrainerConfig(floor=1.5)


class TestEngine:
    def test_first_jump_waits_for_the_slack_to_cover_a_rollback(self):
        """Unguarded, the first jump comes at the first decision point (step 50); with a
        0.95 floor only once 5% of the steps cover its Correct steps: 200 full steps."""
        rng = np.random.default_rng(0)
        free = _quadratic(floor=None)
        _drift(free, 600, rng)
        guarded = _quadratic()
        _drift(guarded, 600, np.random.default_rng(0))
        assert free.engine.jump_records[0].step == 50
        first = guarded.engine.jump_records[0].step
        assert 200 <= first <= 260, first
        assert guarded.statistics().dormant_steps > 0  # it sat out, not just skipped

    def test_sits_out_from_the_start_until_a_jump_can_be_afforded(self):
        """No bookkeeping for the steps before the first affordable decision point (200 here,
        less the history a forecast needs)."""
        trainer = _quadratic()
        _drift(trainer, 120, np.random.default_rng(0))
        rearm = (4 + 1) * 5
        assert trainer.statistics().dormant_steps == 120
        _drift(trainer, 200 - 120, np.random.default_rng(0))
        assert trainer.statistics().dormant_steps == 200 - rearm

    @pytest.mark.parametrize(("rate", "active", "rebuilds"), [
        (0.0, 0.0, True),  # free bookkeeping: the history is rebuilt for step 50
        (0.045, 0.045, False),  # the guard's reserved cost leaves 6 steps of slack, not 16
        (0.01, 0.8, False),  # a jump is affordable (24 of 40) but not after the rebuild (44)
    ], ids=["affordable", "guard-cost", "rebuild-cost"])
    def test_a_sit_out_ends_only_where_the_floor_pays_for_the_rebuild(self, rate, active,
                                                                      rebuilds):
        """At the end of a sit-out the credit expected at the next decision point must cover
        the cheapest jump (10 Correct steps, 12 probes at half a step) and the bookkeeping of
        the 25 steps that rebuild the history; else the engine stays dormant."""
        trainer = _quadratic(total_steps=1000)
        engine = trainer.engine  # the overhead so far, at the guard's rate per step
        engine._overhead = lambda: (rate * engine._full_count, rate, active, 0.5)
        _drift(trainer, 1000, np.random.default_rng(0))
        dormant = trainer.statistics().dormant_steps
        assert (dormant < 1000) if rebuilds else (dormant == 1000), dormant

    def test_kernel_start_up_is_charged_once_not_per_step(self, monkeypatch):
        """A JIT kernel's first call (Numba's runtime and cache load: about half a second
        in a fresh process) lands in a bookkept step. The ledger charges it once; neither
        the bookkeeping's cost per step, which the floor projects over the rest of the run,
        nor a jump cycle's cost counts it."""
        import time

        from hpcore.kernels import _dispatch

        monkeypatch.setattr(_dispatch, "_REGISTRY", dict(_dispatch._REGISTRY))
        monkeypatch.setattr(_dispatch, "_JIT_TWINS", set(_dispatch._JIT_TWINS))
        monkeypatch.setattr(_dispatch, "_settled", set(_dispatch._settled))
        twin, calls = _dispatch._REGISTRY[("ema_update", "numba")], []

        def slow_first(*args):
            if not calls:
                time.sleep(0.2)
            calls.append(1)
            return twin(*args)

        _dispatch.register("ema_update", "numba")(slow_first)
        trainer = _quadratic(floor=None, cost_model="wall")
        _drift(trainer, 150, np.random.default_rng(0))
        engine = trainer.engine
        t = engine._timer
        step_s = t.full / engine._full_count
        overhead, _, active, _ = engine._overhead()
        assert calls and t.start_up >= 0.2
        assert overhead * step_s >= 0.2  # charged
        assert active * step_s * (engine._full_count - t.dormant_steps) < 0.1  # not a rate
        assert engine.jump_records  # and no jump cycle was billed for it
        assert all(j.cost_steps * step_s < 0.1 for j in engine.jump_records)

    def test_a_run_too_short_for_any_jump_stays_dormant(self):
        """5% of 150 steps is less than one jump's 10 Correct steps: no bookkeeping at all."""
        trainer = _quadratic(total_steps=150)
        _drift(trainer, 150, np.random.default_rng(0))
        stats = trainer.statistics()
        assert stats.dormant_steps == 150 and stats.jumps == 0

    @pytest.mark.parametrize("steps", [600, 603], ids=["guarded-step", "lean-step"])
    def test_a_nan_after_a_long_sit_out_rewinds_one_full_phase_at_most(self, steps):
        """While dormant the fallback of a critical event is refreshed once per Full phase
        (where the copy is cheap): a poisoned step after 600 dormant steps, guarded or lean,
        goes back at most ``full_steps`` steps."""
        trainer = _quadratic(total_steps=150)  # dormant throughout
        _drift(trainer, steps, np.random.default_rng(0))
        engine = trainer.engine
        assert engine._dormant_refresh == 30
        assert engine.trajectory_steps - engine._saved_traj < 30
        before = engine._saved_theta.copy()
        r = trainer.step(np.full(50, np.nan))
        assert r.rolled_back
        np.testing.assert_array_equal(trainer.params, before)
        assert np.abs(before).max() > 1.0  # far from the initial zeros

    def test_paying_jumps_earn_credit_for_more(self):
        """Where jumps gain, the credit grows with them: more jumps than the slack alone
        would pay for (one per 200 steps)."""
        trainer = _quadratic()
        credits = _drift(trainer, 2000, np.random.default_rng(1))
        jumps = trainer.statistics().jumps
        assert trainer.engine.floor.realized > 0
        assert jumps > 2000 * 0.05 / CORRECT, jumps
        assert min(credits) >= 0.0

    def test_losing_jumps_never_overdraw_the_floor(self):
        """A predictor that always points back up the slope: every jump loses ground, and
        what they lose stays within the 5% slack at every step (the credit never goes below
        zero) while the guard still lets the policy try again as the slack grows."""
        trainer = _quadratic(rollback_tolerance=100.0)
        trainer.engine.predictor = _Uphill(trainer.engine.config.predictor)
        credits = _drift(trainer, 3000, np.random.default_rng(2))
        stats = trainer.statistics()
        assert stats.jumps >= 3
        assert all(j.steps_gained < 0 for j in trainer.engine.jump_records)
        assert min(credits) >= 0.0
        assert 0 < -trainer.engine.floor.realized <= 0.05 * stats.backward_passes

    def test_coin_flip_jumps_at_the_noise_floor_stay_within_it(self):
        """At a quadratic's noise floor no progress is measurable: a jump counts as the
        Correct steps won or lost by the sign of the probe's change, and the credit still
        never goes below zero."""
        trainer = _quadratic(lr=0.2)
        credits = _noise(trainer, 3000, np.random.default_rng(2))
        assert trainer.statistics().rollbacks >= 1
        assert min(credits) >= 0.0

    def test_known_run_length_spends_the_whole_runs_slack(self):
        """With ``total_steps`` the slack of the whole run is there from the start: the first
        decision point may jump, and the steps before its history are dormant."""
        trainer = _quadratic(total_steps=400)  # 5% of 400 = 20 >= 10 Correct steps
        _drift(trainer, 25, np.random.default_rng(0))
        # Until the history must be built for it (5 snapshots, 5 steps apart) the engine
        # sits out: the guard's own cost is measured there.
        assert trainer.statistics().dormant_steps == 25
        _drift(trainer, 375, np.random.default_rng(0))
        assert trainer.engine.jump_records[0].step == 50

    def test_engine_time_counts_against_the_credit(self):
        """Charged in wall-clock, bookkeeping far slower than the model's step eats the slack:
        no jump is ever affordable, and the engine spends its time dormant."""
        trainer = _quadratic(cost_model="wall")
        trainer.engine.predictor = _SlowLinear(trainer.engine.config.predictor)
        _drift(trainer, 1500, np.random.default_rng(0))
        stats = trainer.statistics()
        assert stats.jumps == 0
        assert stats.floor_credit < 0
        assert stats.dormant_steps > 1000

    def test_the_ledger_survives_a_resume(self):
        trainer = _quadratic()
        _drift(trainer, 700, np.random.default_rng(3))
        state = trainer.state_dict()
        other = _quadratic()
        other.load_state_dict(state)
        assert trainer.engine.floor.realized != 0.0
        assert other.engine.floor.realized == trainer.engine.floor.realized
        assert other.statistics().floor_credit == trainer.statistics().floor_credit

    def test_off_reports_no_credit(self):
        assert _quadratic(floor=None).statistics().floor_credit is None


def _count_lean(trainer):
    """Wrap the port's lean step with a counter; returns the counter (a one-item list)."""
    engine, calls = trainer.engine, [0]
    lean = engine._lean

    def counted(batch):
        calls[0] += 1
        return lean(batch)

    engine._lean = counted
    return calls


class _EngineClock:
    """The engine's clock as a counter that only the steps' set costs advance."""

    def __init__(self) -> None:
        self.now = 0.0
        self.guarded = 0  # the port's full steps so far

    def spend(self, seconds: float) -> None:
        self.now += seconds

    def trainer(self, config, *, step_s: float, guard_extra_s) -> HybridTrainer:
        """A quadratic's trainer whose every step costs ``step_s`` and whose fully guarded
        steps (the port's full step) ``guard_extra_s`` more: seconds, or a function of the
        guarded step's number (from 1) and the engine."""
        extra = guard_extra_s if callable(guard_extra_s) else lambda _n, _e: guard_extra_s

        def lg(p, c):
            self.spend(step_s)
            r = p.astype(np.float64) - c
            return 0.5 * float(r @ r), r.astype(np.float32)

        trainer = HybridTrainer(np.zeros(50, np.float32), lg, SGD(0.002), config)
        port, full = trainer.engine.port, trainer.engine.port.full_step

        def guarded(batch):
            self.guarded += 1
            self.spend(extra(self.guarded, trainer.engine))
            return full(batch)

        port.full_step = guarded
        return trainer


@pytest.fixture
def engine_clock(monkeypatch):
    """Timings the machine's load cannot move: the engine reads :class:`_EngineClock`."""
    from hpcore import engine as engine_module

    clock = _EngineClock()
    monkeypatch.setattr(engine_module, "_now", lambda: clock.now)
    return clock


class TestDormantGuard:
    @pytest.mark.parametrize("spike_at", [296, 301], ids=["guarded-step", "lean-step"])
    def test_a_loss_spike_while_dormant_is_judged_by_the_monitor(self, spike_at):
        """Dormant steps still feed the monitor's baselines (one in eight, the guarded ones)
        and hand a spike to it, on a guarded step or a lean one: a critical loss z-score
        rolls back, as on a bookkept step."""
        trainer = _quadratic(total_steps=1000, floor=1.0)  # dormant throughout
        lean = _count_lean(trainer)
        rng = np.random.default_rng(0)
        for _ in range(spike_at):
            trainer.step(1.0 + 0.01 * rng.normal(size=50))
        assert trainer.statistics().dormant_steps == spike_at
        assert trainer.engine.monitor.seen >= 20 + (spike_at - 20) // 8
        before = lean[0]
        r = trainer.step(np.full(50, 1e4))
        assert lean[0] == before + (spike_at == 301)
        assert r.rolled_back
        assert trainer.statistics().divergence_events["loss_zscore"] == 1

    def test_a_non_finite_gradient_on_a_lean_step_is_rolled_back_by_the_next(self):
        """A lean step checks the loss alone: a non-finite gradient under a finite loss
        reaches the parameters (as in the plain loop), and the next step's non-finite loss
        rolls them back to the last good state."""
        poisoned = [False]

        def lg(p, c):
            r = p.astype(np.float64) - c
            g = r.astype(np.float32)
            if poisoned[0]:
                g[0] = np.nan
            return 0.5 * float(r @ r), g

        trainer = HybridTrainer(np.zeros(50, np.float32), lg, SGD(0.002),
                                _quadratic(total_steps=1000, floor=1.0).engine.config)
        lean = _count_lean(trainer)
        rng = np.random.default_rng(0)
        for _ in range(301):  # the next step (301 % 8 != 0) is a lean one
            trainer.step(1000.0 + 0.1 * rng.normal(size=50))
        saved = trainer.engine._saved_theta.copy()
        before = lean[0]
        poisoned[0] = True
        with np.errstate(invalid="ignore"):
            r = trainer.step(1000.0 + 0.1 * rng.normal(size=50))
        poisoned[0] = False
        assert lean[0] == before + 1 and not r.rolled_back
        assert np.isnan(trainer.params[0])
        r = trainer.step(1000.0 + 0.1 * rng.normal(size=50))
        assert r.rolled_back and not math.isfinite(r.loss)
        np.testing.assert_array_equal(trainer.params, saved)
        assert trainer.statistics().divergence_events["nan_inf"] == 1

    def test_lean_steps_take_the_same_trajectory(self):
        """Between the guarded dormant steps the port's lean step runs (seven in eight once
        the monitor knows the gradient's level): the same update, bit for bit, as with every
        step guarded (``dormant_check_interval=1``)."""
        from hpcore.config import DivergenceConfig

        every = _quadratic(total_steps=400, floor=1.0,
                           divergence=DivergenceConfig(dormant_check_interval=1))
        lean = _quadratic(total_steps=400, floor=1.0)  # both dormant throughout
        calls = [_count_lean(every), _count_lean(lean)]
        rng = np.random.default_rng(4)
        for _ in range(400):
            c = 1000.0 + 0.1 * rng.normal(size=50)
            every.step(c)
            lean.step(c)
        np.testing.assert_array_equal(every.params, lean.params)
        assert calls[0][0] == 0
        # Guarded: the 20 steps before the gradient's level is known, one in eight after
        # (the fallback is refreshed at one of them) and the last one.
        assert 380 * 7 / 8 - 2 <= calls[1][0] <= 380 * 7 / 8
        assert every.statistics().dormant_steps == lean.statistics().dormant_steps == 400

    def test_the_short_path_makes_the_same_decisions(self):
        """``step`` takes the lean steps planned after a dormant step on its short path:
        the same parameters, counters and phase clock as through ``_dormant_full_step``
        (planning switched off); the slow path takes the guarded steps (one in eight, the
        first 20; the fallback refreshed at one of them) and the step that ends each 30-step
        phase. Until something reads them (here ``statistics()``), the counters lag behind
        the short path's steps."""
        runs = [_quadratic(total_steps=1000, floor=1.0) for _ in range(2)]
        runs[1].engine._plan_lean_run = lambda: None  # every step through the slow path
        slow_calls = []
        for t in runs:
            inner = t.engine._dormant_full_step
            calls = [0]

            def counted(batch, inner=inner, calls=calls):
                calls[0] += 1
                return inner(batch)

            t.engine._dormant_full_step = counted
            slow_calls.append(calls)
        rng = np.random.default_rng(5)
        for _ in range(500):
            c = 1000.0 + 0.1 * rng.normal(size=50)
            for t in runs:
                t.step(c)
        fast, slow = (t.engine for t in runs)
        runs[0].statistics()  # brings the short path's counters up to date
        np.testing.assert_array_equal(runs[0].params, runs[1].params)
        for name in ("step_count", "trajectory_steps", "_left", "_dormant", "_dormant_steps",
                     "_saved_traj", "_backward", "_full_count", "_phase_steps"):
            assert getattr(fast, name) == getattr(slow, name), name
        assert fast._timer.dormant_steps == slow._timer.dormant_steps == 500
        assert slow_calls[1][0] == 500
        assert 500 / 8 <= slow_calls[0][0] <= 500 / 8 + 500 / 30 + 21, slow_calls[0][0]

    def test_what_the_trainer_reports_mid_run_counts_every_short_path_step(self):
        """The short path only counts its steps; every read (the result's index, the
        current step, the statistics, the state dict) sees them all, as through the slow
        path (planning switched off)."""
        runs = [_quadratic(total_steps=1000, floor=1.0) for _ in range(2)]
        runs[1].engine._plan_lean_run = lambda: None
        rng = np.random.default_rng(6)
        names = ("step_count", "trajectory_steps", "_left", "_dormant", "_dormant_steps",
                 "_backward", "_full_count")
        unsettled = 0
        for i in range(400):
            c = 1000.0 + 0.1 * rng.normal(size=50)
            results = [t.step(c) for t in runs]
            assert [r.step for r in results] == [i, i]
            assert runs[0].current_step == i + 1
            if i % 37 == 36:
                engine = runs[0].engine
                unsettled += engine._lean_planned > engine._lean_run  # steps not yet counted
                fast, slow = (t.statistics() for t in runs)
                assert fast.total_steps == fast.backward_passes == fast.dormant_steps == i + 1
                assert fast.phase_steps == slow.phase_steps
                states = [t.engine.state_dict()["scalars"] for t in runs]
                assert {k: states[0][k] for k in names} == {k: states[1][k] for k in names}
        assert unsettled >= 5

    def test_a_checkpoint_taken_in_a_run_of_short_steps_resumes_it(self):
        """A state saved while the short path has steps planned, loaded into a new
        trainer: both go on as one run would (same parameters, counters and results)."""
        first = _quadratic(total_steps=1000, floor=1.0)
        rng = np.random.default_rng(7)
        batches = [1000.0 + 0.1 * rng.normal(size=50) for _ in range(500)]
        for c in batches[:250]:
            first.step(c)
        assert first.engine._lean_run > 0
        second = _quadratic(total_steps=1000, floor=1.0)
        second.load_state_dict(first.state_dict())
        for c in batches[250:]:
            a, b = first.step(c), second.step(c)
            assert (a.step, a.phase, a.loss) == (b.step, b.phase, b.loss)
        np.testing.assert_array_equal(first.params, second.params)
        sa, sb = first.statistics(), second.statistics()
        assert (sa.total_steps, sa.dormant_steps, sa.backward_passes, sa.phase_steps) == \
            (sb.total_steps, sb.dormant_steps, sb.backward_passes, sb.phase_steps)

    @pytest.mark.parametrize(("guard_extra", "expected"), [
        (0.1e-3, (10, 11)),  # 1 ms steps, a guarded one 0.1 ms dearer: 1% of 10 of them
        (2e-3, (128, 128)),  # 2 ms dearer: one in 128 at most
    ])
    def test_the_guard_interval_follows_its_measured_cost(self, engine_clock, guard_extra,
                                                         expected):
        """With ``cost_model="wall"`` and no interval fixed, the dormant engine guards as
        often as 1% of a step's time pays for (from 2 to 128 steps apart), re-chosen at each
        fallback refresh; fixed by the config, or with ``cost_model="steps"``, it stays.
        (The engine's clock advances by the steps' set costs alone: the machine's load
        cannot move the choice.)"""
        from hpcore.config import DivergenceConfig

        configs = [_quadratic(total_steps=1000, floor=1.0, cost_model=cost, full_steps=100,
                              **extra).engine.config
                   for cost, extra in [("wall", {}), ("steps", {}), ("wall", {
                       "divergence": DivergenceConfig(dormant_check_interval=5)})]]
        trainers = [engine_clock.trainer(c, step_s=1e-3, guard_extra_s=guard_extra)
                    for c in configs]
        for trainer in trainers:
            rng = np.random.default_rng(0)
            for _ in range(300):
                trainer.step(1000.0 + 0.1 * rng.normal(size=50))
        lo, hi = expected
        assert lo <= trainers[0].engine._guard_interval <= hi
        assert [t.engine._guard_interval for t in trainers[1:]] == [8, 5]
        assert trainers[0].statistics().dormant_steps == 300

    def test_the_guard_interval_is_first_chosen_early_from_steps_after_the_baseline(
            self, engine_clock):
        """The first choice comes once 2 guarded and 8 lean steps are timed, well before the
        first fallback refresh; the steps guarded while the monitor learns the gradient's
        level are not timed (here they cost 2 ms more, as a JIT framework's first call
        does: counted, they would push the interval to its maximum)."""
        config = _quadratic(total_steps=1000, floor=1.0, cost_model="wall",
                            full_steps=100).engine.config
        trainer = engine_clock.trainer(
            config, step_s=2e-3,
            guard_extra_s=lambda _n, e: 0.04e-3 + (2e-3 if e.monitor.grad_seen < 20 else 0.0))
        engine = trainer.engine
        rng = np.random.default_rng(0)
        for _ in range(60):
            trainer.step(1000.0 + 0.1 * rng.normal(size=50))
        assert engine._saved_traj == 0  # no refresh yet
        assert engine._guard_chosen
        assert 2 <= engine._guard_interval <= 3  # 0.04 ms over 2 ms steps: 1% of 2

    def test_one_slow_guarded_step_does_not_set_the_guard_interval(self, engine_clock):
        """The guarded steps' cost is their median: one caught by a hiccup of the machine
        (20 ms here, where a step takes 2 ms) leaves the interval where the others put it
        (with their mean it read 40)."""
        config = _quadratic(total_steps=1000, floor=1.0, cost_model="wall",
                            full_steps=100).engine.config
        # The 30th guarded step, between the first choice and the refresh, is the slow one.
        trainer = engine_clock.trainer(
            config, step_s=2e-3, guard_extra_s=lambda n, _e: 0.04e-3 + (20e-3 if n == 30 else 0.0))
        engine = trainer.engine
        rng = np.random.default_rng(0)
        for _ in range(150):
            trainer.step(1000.0 + 0.1 * rng.normal(size=50))
        assert engine_clock.guarded > 30 and engine._saved_traj > 0  # refresh after the hiccup
        assert 2 <= engine._guard_interval <= 3

    def test_a_slow_fallback_copy_is_refreshed_less_often(self):
        """Where copying the optimizer state costs more than 0.2% of the steps between
        refreshes, the dormant engine refreshes it less often, at most ten Full phases
        apart (at the first fully guarded step after that)."""
        import time

        trainer = _quadratic(total_steps=1000, floor=1.0, cost_model="wall")
        port = trainer.engine.port
        state = port.optimizer_state

        def slow_state():
            time.sleep(0.002)
            return state()

        port.optimizer_state = slow_state
        _drift(trainer, 700, np.random.default_rng(0))
        engine = trainer.engine
        trainer.statistics()  # brings the counters of the short path's steps up to date
        assert engine._dormant_refresh == 10 * 30
        assert engine.trajectory_steps - engine._saved_traj < 300 + engine._guard_interval


def test_no_warmup_counts_the_first_decision_point_from_step_zero():
    """With ``warmup_steps=0`` the first decision point is ``full_steps`` in; a run long enough
    to afford a jump there sits out only the steps before its history."""
    trainer = _quadratic(warmup_steps=0, total_steps=1000)
    _drift(trainer, 30, np.random.default_rng(0))
    assert trainer.statistics().dormant_steps == 30 - 25
    _drift(trainer, 70, np.random.default_rng(1))  # a jump is recorded once it is judged
    assert trainer.engine.jump_records[0].step == 30


class TestTrendValuation:
    """The ledger credits a kept jump at the trend's lower bound of its worth."""

    @staticmethod
    def _trend(slope, noise, seed=0):
        from hpcore.trend import LossTrend

        rng = np.random.default_rng(seed)
        trend = LossTrend(window=100)
        for t in range(100):
            trend.add(t, 10.0 + slope * t + noise * rng.normal())
        return trend

    def test_a_measured_slope_values_the_drop_at_its_fastest(self):
        """Loss falling 0.01 per step: a drop of 1.0 is worth 100 steps, less the 40 spent;
        the lower bound divides by a slope two standard errors steeper."""
        trend = self._trend(-0.01, 0.05)
        slope, se = trend._fit()
        assert trend.steps_gained(5.0, 4.0, 40) == pytest.approx(1.0 / -slope - 40)
        lower = trend.steps_gained_at_least(5.0, 4.0, 40)
        assert lower == pytest.approx(1.0 / (-slope + 2 * se) - 40)
        assert 0 < lower < trend.steps_gained(5.0, 4.0, 40)

    def test_no_measurable_progress_credits_nothing(self):
        """On a plateau the trend cannot price a drop: the estimate says +/- the steps spent
        by its sign, the lower bound credits a kept jump nothing."""
        trend = self._trend(0.0, 0.05)
        assert trend.steps_gained(10.0, 9.99, 40) == 40.0
        assert trend.steps_gained_at_least(10.0, 9.99, 40) == 0.0
        assert trend.steps_gained_at_least(10.0, 10.01, 40) == -40.0

    def test_the_ledger_holds_the_lower_bounds(self):
        """Every jump in a steady drift is kept and gains: the ledger holds less than the
        trend's estimates add up to, and still more than nothing."""
        trainer = _quadratic()
        _drift(trainer, 2000, np.random.default_rng(1))
        kept = [j for j in trainer.engine.jump_records if not j.rolled_back]
        assert len(kept) == len(trainer.engine.jump_records) > 0
        assert 0 < trainer.engine.floor.realized < sum(j.steps_gained for j in kept)
