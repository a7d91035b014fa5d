"""The controller: a pure state machine over scalars, counted in steps (DESIGN section 4)."""

from __future__ import annotations

import math

import attrs
import pytest

from hpcore import HybridTrainerConfig, LinearConfig
from hpcore.controller import Action, Controller, Observation, StepKind, check_state
from hpcore.divergence import Level
from hpcore.types import Phase

CFG = HybridTrainerConfig(
    warmup_steps=0, history_size=4, snapshot_interval=5, predictor=LinearConfig(window=4),
    full_steps=20, correct_steps=10, max_predict_steps=20, check_interval=10, floor=None,
)


def drive(controller: Controller, steps: int, loss=lambda full: 10.0 - 0.01 * full,
          confidence: float = 0.9, after=None, probe=lambda k: math.nan):
    """Feed ``steps`` steps of synthetic observations; the (state, action) of every step.

    ``loss(full)`` is the training loss after ``full`` full steps; ``after(full)`` overrides
    it during Correct (a jump that lost ground); ``probe(k)`` the probe loss k steps in.
    """
    state = controller.init()
    trace = []
    for _ in range(steps):
        a = state.action
        if a.kind is StepKind.FULL:
            full = state.counters.full
            value = loss(full) if (after is None or state.phase is not Phase.CORRECT) else after(full)
            obs = Observation(StepKind.FULL, loss=value if a.observe else math.nan,
                              snapshot=a.observe and a.snapshot,
                              probe_loss=probe(0) if a.probe else math.nan)
        else:
            obs = Observation(StepKind.PREDICTED, probe_loss=probe(a.k) if a.probe else math.nan,
                              origin_probe=probe(0) if a.k == 1 else math.nan)
        state, action = controller.update(state, obs)
        if action.forecast:
            state, action = controller.update(
                state, Observation(StepKind.FORECAST, confidence=confidence,
                                   context=(1.0, confidence, 0.0, 0.0)))
        trace.append((state, action))
    return trace


def actions(trace, field):
    return [i for i, (_, a) in enumerate(trace) if getattr(a, field)]


class TestController:
    def test_update_is_pure_and_repeatable(self):
        """The same observations give the same states and actions; a state is never mutated."""
        c = Controller(CFG, min_snapshots=4)
        first, second = drive(c, 300), drive(c, 300)
        assert [a for _, a in first] == [a for _, a in second]
        s = c.init()
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            s.left = 3  # type: ignore[misc]
        before = attrs.asdict(s)
        c.update(s, Observation(StepKind.FULL, loss=1.0))
        assert attrs.asdict(s) == before

    def test_first_jump_comes_once_the_history_is_ready(self):
        """With the guard off, the first decision point is when the ring holds the window."""
        trace = drive(Controller(CFG, min_snapshots=4), 200)
        jumps = actions(trace, "jump")
        assert jumps[0] == 4 * 5 - 1  # after the 20th observed step
        assert trace[jumps[0]][1] == Action(kind=StepKind.PREDICTED, jump=20, k=1, save=True)

    def test_a_jump_lays_each_step_then_settles_and_is_judged(self):
        """Predicted steps k = 1..H, then settle at H, Correct, and a kept jump on the trend."""
        trace = drive(Controller(CFG, min_snapshots=4), 200)
        start = actions(trace, "jump")[0]
        h = trace[start][1].jump
        assert [trace[start + i][1].k for i in range(h)] == list(range(1, h + 1))
        settle = trace[start + h][1]
        assert settle.settle == h and settle.kind is StepKind.FULL and settle.observe
        judged = start + h + CFG.correct_steps
        assert trace[judged][1].judge == "keep"
        assert trace[judged][0].counters.kept == 1

    def test_only_the_recovered_half_of_correct_is_judged(self):
        """A transient in the first half of Correct (the optimizer catching up with the new
        point) does not roll the jump back; the same losses in the second half do."""
        c = Controller(CFG, min_snapshots=4)
        start = actions(drive(c, 200), "jump")[0]
        jump_full = drive(c, start + 1)[-1][0].counters.full  # full steps before the jump
        half = CFG.correct_steps // 2

        def spike(first: bool):
            def after(full: int) -> float:
                in_first = full - jump_full < CFG.correct_steps - half
                return 20.0 if in_first == first else 10.0 - 0.01 * full
            return after

        for first, verdict in ((True, "keep"), (False, "rollback")):
            judged = [a.judge for _, a in drive(c, 80, after=spike(first)) if a.judge]
            assert judged[0] == verdict

    def test_the_origin_judge_keeps_a_jump_behind_the_trend_but_ahead_of_its_start(self):
        """``judge="origin"`` rolls back only a jump that left the run above where it
        started; ``"trend"`` also one that fell short of the trend's progress."""
        c = Controller(CFG, min_snapshots=4)
        start = actions(drive(c, 200), "jump")[0]
        origin = 10.0 - 0.01 * drive(c, start + 1)[-1][0].counters.full
        for offset, verdicts in ((-0.05, ("rollback", "keep")), (0.05, ("rollback", "rollback"))):
            for judge, verdict in zip(("trend", "origin"), verdicts, strict=True):
                cj = Controller(attrs.evolve(CFG, judge=judge), min_snapshots=4)
                trace = drive(cj, 80, after=lambda full, o=offset: origin + o)
                assert next(a.judge for _, a in trace if a.judge) == verdict, (judge, offset)

    def test_a_jump_that_lost_ground_is_rolled_back(self):
        """Correct losses far above the trend roll the jump back and drop its snapshots."""
        trace = drive(Controller(CFG, min_snapshots=4), 80, after=lambda full: 20.0)
        judged = [a for _, a in trace if a.judge]
        assert judged[0].judge == "rollback"
        assert judged[0].drop == 2  # the snapshots pushed during the 10 Correct steps
        assert trace[-1][0].counters.rollbacks >= 1

    def test_non_finite_parameters_outside_a_jump_restore_the_last_good_state(self):
        """A critical observation restores, counts a rollback and restarts the history."""
        c = Controller(CFG, min_snapshots=4)
        s = c.init()
        s, a = c.update(s, Observation(StepKind.FULL, loss=1.0, nonfinite=3))
        assert a.restore and s.counters.rollbacks == 1
        s, a = c.update(s, Observation(StepKind.FULL, loss=1.0))
        assert not a.restore

    def test_a_critical_step_in_correct_rolls_the_jump_back(self):
        """A monitor's critical verdict during Correct undoes the jump at once."""
        c = Controller(CFG, min_snapshots=4)
        trace = drive(c, 45)
        s = trace[-1][0]
        assert s.phase is Phase.CORRECT
        s, a = c.update(s, Observation(StepKind.FULL, loss=1.0, level=Level.CRITICAL))
        assert a.judge == "rollback" and s.phase is Phase.FULL

    def test_low_confidence_takes_no_jump(self):
        """Below ``confidence_threshold`` the decision point passes without a jump."""
        trace = drive(Controller(CFG, min_snapshots=4), 300, confidence=0.1)
        assert actions(trace, "jump") == []
        assert trace[-1][0].counters.predicted == 0


class TestFloorGuard:
    def test_without_total_steps_the_first_jump_waits_for_the_slack(self):
        """floor=0.95 and 10 Correct steps: no jump before 0.05 * steps covers them (200)."""
        cfg = attrs.evolve(CFG, floor=0.95)
        jumps = actions(drive(Controller(cfg, min_snapshots=4), 400), "jump")
        assert jumps and 195 <= jumps[0] < 240

    def test_with_total_steps_the_slack_is_the_whole_runs(self):
        """A known run length allows the first jump as soon as the history is ready."""
        cfg = attrs.evolve(CFG, floor=0.95, total_steps=400)
        assert actions(drive(Controller(cfg, min_snapshots=4), 400), "jump")[0] == 19

    def test_rollbacks_are_paid_for_and_stop_further_risk(self):
        """Every rollback costs its Correct steps: the ledger never goes below a jump's worst
        case when a jump starts, so losing jumps stop."""
        cfg = attrs.evolve(CFG, floor=0.95, total_steps=2000)
        trace = drive(Controller(cfg, min_snapshots=4), 2000, after=lambda full: 20.0)
        n = trace[-1][0].counters
        assert n.rollbacks == n.jumps and 1 <= n.jumps <= 10  # 0.05 * 2000 / 10 Correct steps
        assert trace[-1][0].floor.spent == pytest.approx(10.0 * n.rollbacks)


class TestTotalSteps:
    def test_no_jump_that_could_not_be_judged_and_no_history_after_the_last_chance(self):
        """Jumps end before total_steps with their Correct phase; then nothing is observed."""
        cfg = attrs.evolve(CFG, total_steps=300)
        trace = drive(Controller(cfg, min_snapshots=4), 300)
        for i in actions(trace, "jump"):
            assert i + trace[i][1].jump + cfg.correct_steps <= 300
        last_correct = max(i for i, (st, _) in enumerate(trace) if st.phase is Phase.CORRECT)
        assert not any(a.observe for _, a in trace[last_correct + 1:])


class TestProbes:
    def test_a_probe_rise_ends_the_jump_at_its_best_checked_point(self):
        """With a probe, a warning-level probe settles the jump at the best checked step."""
        c = Controller(attrs.evolve(CFG, max_predict_steps=40), min_snapshots=4, has_probe=True)
        state = drive(c, 20)[-1][0]
        assert state.phase is Phase.PREDICT and state.jump.horizon == 40
        s, a = c.update(state, Observation(StepKind.PREDICTED, origin_probe=5.0))
        for _ in range(8):
            s, a = c.update(s, Observation(StepKind.PREDICTED))
        assert a.probe and a.k == 10
        s, a = c.update(s, Observation(StepKind.PREDICTED, probe_loss=4.0))
        s, a = c.update(s, Observation(StepKind.PREDICTED))
        for _ in range(8):
            s, a = c.update(s, Observation(StepKind.PREDICTED))
        s, a = c.update(s, Observation(StepKind.PREDICTED, probe_loss=9.0, level=Level.WARNING))
        assert a.settle == 10 and s.phase is Phase.CORRECT

    def test_a_non_finite_origin_probe_rolls_back_before_anything_is_laid(self):
        """A NaN probe at the origin ends the jump at once."""
        c = Controller(CFG, min_snapshots=4, has_probe=True)
        state = drive(c, 20)[-1][0]
        s, a = c.update(state, Observation(StepKind.PREDICTED, origin_probe=math.nan))
        assert a.judge == "rollback" and s.phase is Phase.FULL


class TestQuietSteps:
    def test_skip_equals_as_many_plain_updates(self):
        """Where no jump can ever be afforded the action announces quiet steps; skipping
        them gives the state that updating step by step gives."""
        cfg = attrs.evolve(CFG, floor=0.95, total_steps=100)  # 5 steps of slack < 10 Correct
        c = Controller(cfg, min_snapshots=4)
        s = c.init()
        assert not s.action.observe and s.action.quiet > 50
        slow = s
        for _ in range(30):
            slow, _ = c.update(slow, Observation(StepKind.FULL))
        fast, _ = c.update(s, Observation(StepKind.FULL))
        fast = c.skip(fast, 29)
        assert fast == slow
        with pytest.raises(ValueError, match="cannot skip"):
            c.skip(fast, fast.action.quiet + 1)

    def test_observed_runs_announce_no_quiet_steps(self):
        """While the history is kept, every step goes through the controller."""
        trace = drive(Controller(CFG, min_snapshots=4), 100)
        assert all(a.quiet == 0 for _, a in trace if a.observe)


class TestAnnealing:
    def _decisions(self, cfg, rate) -> list[int]:
        """Steps at which jumps start over 400 full steps of a falling loss, with ``rate(t)``
        the learning rate each full step reports."""
        c = Controller(cfg, min_snapshots=4)
        s, t, starts = c.init(), 0, []
        while t < 400:
            if s.action.kind is StepKind.PREDICTED:
                s, _ = c.update(s, Observation(StepKind.PREDICTED))
                continue
            if s.action.forecast:
                s, _ = c.update(s, Observation(StepKind.FORECAST, confidence=1.0,
                                               context=(0.0, 0.0, 0.0, 0.0)))
                if s.phase is Phase.PREDICT:
                    starts.append(t)
                continue
            s, _ = c.update(s, Observation(StepKind.FULL, loss=10.0 - 0.01 * t, lr=rate(t),
                                           snapshot=s.action.snapshot))
            t += 1
        check_state(s, cfg)
        return starts

    def test_no_jump_starts_once_the_rate_falls_below_the_share(self):
        """A rate decaying past step 150 (to 0.8 of its peak by 250) stops jumps from the
        first decision point below 0.9 of the peak; a constant rate jumps throughout, as
        does a wrapper that reads no rate (nan) and ``anneal_share=None``."""
        assert HybridTrainerConfig().anneal_share == 0.99  # the default: only at the peak rate
        cfg = attrs.evolve(CFG, floor=None, anneal_share=0.9)
        decay = lambda t: 1e-3 * (1.0 if t < 150 else max(0.5, 1 - (t - 150) / 500))  # noqa: E731
        constant = self._decisions(cfg, lambda t: 1e-3)
        annealed = self._decisions(cfg, decay)
        assert constant and max(constant) > 250
        assert annealed and annealed == [t for t in constant if t <= 200]
        assert self._decisions(cfg, lambda t: math.nan) == constant
        assert self._decisions(attrs.evolve(cfg, anneal_share=None), decay) == constant

    def test_a_bad_rate_in_a_loaded_state_is_refused(self):
        """check_state refuses a negative or non-finite rate, or one above the peak."""
        s = Controller(CFG, min_snapshots=4).init()
        for lr, peak in ((-1.0, 0.0), (math.inf, math.inf), (2e-3, 1e-3)):
            with pytest.raises(ValueError, match="learning rates"):
                check_state(attrs.evolve(s, lr=lr, peak_lr=peak), CFG)
