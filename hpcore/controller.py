"""The controller: every decision of the hybrid trainer, one pure state machine over scalars.

In the shape of optax (DESIGN section 4): ``Controller(config, ...).init()`` gives a
:class:`ControllerState`, and ``update(state, observation)`` gives the next state and the
:class:`Action` the trajectory and the wrapper carry out. It reads no clock and holds no
array of the model's size: identical losses give identical decisions, so a run is
reproducible and a resume is bit-exact. Two kinds of step exist, full and predicted; a third
kind of observation, ``FORECAST``, reports the predictor's confidence at a decision point.

Phases: Warmup -> Full -> (decision point) -> Predict -> Correct -> (judge) -> Full -> ...
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from hpcore import floor as ledger
from hpcore import horizon, trend
from hpcore._log import get_logger
from hpcore.config import HybridTrainerConfig
from hpcore.divergence import Level
from hpcore.steps import (
    PLAIN_ACTIONS,
    Action,
    ControllerState,
    Counters,
    JumpState,
    Observation,
    StepKind,
    check_state,
)
from hpcore.types import Phase

__all__ = ["Action", "Controller", "ControllerState", "Counters", "JumpState", "Observation",
           "StepKind", "check_state"]  # the value types are re-exported from hpcore.steps

log = get_logger(__name__)
_NEVER = 1 << 62  # a phase length that outlasts any run
_QUIET_MAX = 1 << 40  # quiet steps announced for "the rest of the run"


def _judged_steps(config: HybridTrainerConfig) -> int:
    """Correct steps whose training losses the judge averages (without a probe): the last
    half, at least one."""
    return max(config.correct_steps // 2, 1)


@attrs.frozen
class Controller:
    """The decision rules for one config.

    Args:
        config: the validated configuration.
        min_snapshots: snapshots the predictor needs before a forecast.
        has_probe: a probe loss can be taken (checks during a jump, judged on it).
    """

    config: HybridTrainerConfig
    min_snapshots: int
    has_probe: bool = False

    def init(self) -> ControllerState:
        """The state before the first step (with no jump ever affordable: one long Full
        phase)."""
        c = self.config
        state = ControllerState(
            phase=Phase.WARMUP if c.warmup_steps else Phase.FULL,
            left=c.warmup_steps or self._history_steps(),
            counters=Counters(), observing=False, since_snapshot=0, snapshots=0,
            trend=trend.TrendState(window=max(2 * c.full_steps, 50)),
            floor=ledger.FloorState(), policy=horizon.init(c))
        if c.floor is not None and c.total_steps is not None and not self._affordable(state):
            state = attrs.evolve(state, phase=Phase.FULL, left=_NEVER)
        return self._next_full(state)

    # ------------------------------------------------------------------ update
    def update(self, state: ControllerState, obs: Observation) -> tuple[ControllerState, Action]:
        """The state after ``obs`` and the action for what comes next."""
        if obs.kind is StepKind.FORECAST:
            state = self._after_forecast(state, obs)
        elif obs.kind is StepKind.PREDICTED:
            state = self._after_predicted(state, obs)
        else:
            state = self._after_full(state, obs)
        return state, state.action

    def skip(self, state: ControllerState, steps: int) -> ControllerState:
        """``state`` after ``steps`` of the quiet full steps its action announced (each only
        counted): what as many updates with plain observations would give."""
        if not 0 <= steps <= state.action.quiet:
            msg = f"cannot skip {steps} steps: the action announced {state.action.quiet} quiet steps"
            raise ValueError(msg)
        n = state.counters
        return attrs.evolve(
            state, left=state.left - steps,
            counters=attrs.evolve(n, steps=n.steps + steps, full=n.full + steps),
            action=attrs.evolve(state.action, quiet=state.action.quiet - steps
                                if state.action.quiet < _QUIET_MAX else _QUIET_MAX))

    def _after_full(self, s: ControllerState, obs: Observation) -> ControllerState:
        n = s.counters
        counters = Counters(n.steps + 1, n.full + 1, n.predicted, n.jumps, n.kept, n.rollbacks,
                            n.probes)
        if obs.lr == obs.lr and obs.lr != s.lr:  # a rate was read, and it moved
            s = attrs.evolve(s, lr=obs.lr, peak_lr=max(s.peak_lr, obs.lr))
        if s.action.observe:
            s = attrs.evolve(s, counters=counters, left=s.left - 1,
                             since_snapshot=0 if obs.snapshot else s.since_snapshot + 1,
                             snapshots=min(s.snapshots + obs.snapshot, self.config.history_size))
        else:
            s = attrs.evolve(s, counters=counters, left=s.left - 1)
        if s.action.observe:
            if s.jump is not None and obs.snapshot:
                s = attrs.evolve(s, jump=attrs.evolve(s.jump, pushed=s.jump.pushed + 1))
        critical = obs.nonfinite > 0 or obs.level is Level.CRITICAL
        if s.phase is Phase.CORRECT:
            if critical:
                return self._judge(s, math.nan)
            j = s.jump
            # Only the last steps of Correct are judged: the first ones carry the jump's
            # transient (the optimizer's state catching up with the new point), which the
            # jump's worth is not (DESIGN 7: the recovered loss against the trend).
            if math.isfinite(obs.loss) and s.left < _judged_steps(self.config):
                s = attrs.evolve(s, jump=attrs.evolve(j, loss_sum=j.loss_sum + obs.loss,
                                                       loss_n=j.loss_n + 1))
            if s.left > 0:
                return self._next_full(s)
            j = s.jump
            after = j.loss_sum / j.loss_n if j.loss_n else math.nan
            if self.has_probe:
                n = s.counters
                s = attrs.evolve(s, counters=attrs.evolve(n, probes=n.probes + 1),
                                 floor=ledger.record(s.floor, spent=self.config.probe_cost))
                after = obs.probe_loss
            return self._judge(s, after)
        if critical:
            log.warning("restored", step=s.counters.steps, reason="critical", phase=s.phase.value)
            n = s.counters
            s = attrs.evolve(s, phase=Phase.FULL, left=self.config.full_steps, observing=False,
                             trend=attrs.evolve(s.trend, steps=(), losses=()),
                             counters=attrs.evolve(n, rollbacks=n.rollbacks + 1))
            return self._next_full(s, restore=True)
        if s.action.observe and math.isfinite(obs.loss) and obs.level < Level.WARNING \
                and not obs.bad_step:
            s = attrs.evolve(s, trend=trend.add(s.trend, s.counters.full, obs.loss))
        if s.left > 0:
            return self._next_full(s)
        if s.phase is Phase.WARMUP:
            return self._next_full(attrs.evolve(s, phase=Phase.FULL, left=self._history_steps()))
        return self._decide(s)

    def _decide(self, s: ControllerState) -> ControllerState:
        """A decision point: ask for a forecast, or wait for the next decision point."""
        c = self.config
        if self._too_late(s):
            log.info("jumps_over", step=s.counters.steps, reason="total_steps")
            return self._next_full(attrs.evolve(s, left=_NEVER))
        if c.floor is not None and c.total_steps is not None and not self._affordable(s):
            log.info("jumps_over", step=s.counters.steps, reason="floor")  # it never will be
            return self._next_full(attrs.evolve(s, left=_NEVER))
        if self._annealing(s):
            return self._next_full(attrs.evolve(s, left=c.full_steps), save=True)
        if horizon.idle_decisions(s.policy) > 0:  # sitting out: the pause counts down first
            policy, _ = horizon.choose(s.policy, np.zeros(0))
            return self._next_full(attrs.evolve(s, policy=policy, left=c.full_steps))
        if s.snapshots < self.min_snapshots or trend.fit(s.trend) is None:
            return self._next_full(attrs.evolve(s, left=max(self._history_steps(s), 1)))
        if not self._affordable(s):
            return self._next_full(attrs.evolve(s, left=c.full_steps), save=True)
        return attrs.evolve(s, left=0, action=Action(forecast=True))

    def _after_forecast(self, s: ControllerState, obs: Observation) -> ControllerState:
        c = self.config
        n = s.counters
        policy, arm = horizon.choose(s.policy, np.asarray(obs.context))
        s = attrs.evolve(s, policy=policy)
        wait = attrs.evolve(s, left=c.full_steps)
        if arm == "none":
            return self._next_full(wait, save=True)
        if arm != "average" and not obs.confidence >= c.confidence_threshold:
            log.info("jump_skipped", step=n.steps, confidence=obs.confidence,
                     threshold=c.confidence_threshold)
            return self._next_full(wait, save=True)
        h = 1 if arm == "average" else int(arm)
        if c.total_steps is not None:
            h = min(h, c.total_steps - n.steps - c.correct_steps)
        jump = JumpState(arm=arm, horizon=h, start_step=n.steps, start_full=n.full,
                         confidence=float(obs.confidence), context=tuple(obs.context),
                         probe_before=math.nan)
        n = attrs.evolve(n, jumps=n.jumps + 1)
        log.info("phase_changed", step=n.steps, to="predict", horizon=h, arm=str(arm),
                 confidence=round(float(obs.confidence), 4))
        s = attrs.evolve(s, phase=Phase.PREDICT, left=h, jump=jump, counters=n)
        return attrs.evolve(s, action=Action(kind=StepKind.PREDICTED, jump=h, k=1,
                                             average=arm == "average", save=True,
                                             probe=self._probe_due(1, h)))

    def _after_predicted(self, s: ControllerState, obs: Observation) -> ControllerState:
        c = self.config
        n = s.counters
        j = attrs.evolve(s.jump, k=s.action.k)
        s = attrs.evolve(s, left=s.left - 1, counters=attrs.evolve(
            n, steps=n.steps + 1, predicted=n.predicted + 1))
        if self.has_probe and j.k == 1:  # the origin's probe came with the first step
            j = attrs.evolve(j, probe_before=obs.origin_probe, best_probe=obs.origin_probe)
            n = s.counters
            s = attrs.evolve(s, counters=attrs.evolve(n, probes=n.probes + 1),
                             floor=ledger.record(s.floor, spent=c.probe_cost))
            if not math.isfinite(obs.origin_probe):
                return self._rollback(attrs.evolve(s, jump=j), reason="probe_critical")
        end = s.left <= 0
        if s.action.probe:
            n = s.counters
            s = attrs.evolve(s, counters=attrs.evolve(n, probes=n.probes + 1),
                             floor=ledger.record(s.floor, spent=c.probe_cost))
            if obs.level is Level.CRITICAL or not math.isfinite(obs.probe_loss):
                return self._rollback(attrs.evolve(s, jump=j), reason="probe_critical")
            if obs.level >= Level.WARNING:
                end = True
            elif obs.probe_loss <= j.best_probe:
                j = attrs.evolve(j, best_k=j.k, best_probe=obs.probe_loss)
        if not end:
            return attrs.evolve(s, jump=j, action=Action(
                kind=StepKind.PREDICTED, k=j.k + 1, probe=self._probe_due(j.k + 1, j.horizon)))
        at = j.k if not (self.has_probe and j.best_k < j.k) else j.best_k
        if at == 0:
            return self._rollback(attrs.evolve(s, jump=j), reason="probe")
        log.info("phase_changed", step=s.counters.steps, to="correct", taken=at)
        s = attrs.evolve(s, jump=attrs.evolve(j, taken=at), phase=Phase.CORRECT,
                         left=c.correct_steps)
        s = self._next_full(s)
        return attrs.evolve(s, action=attrs.evolve(s.action, settle=at))

    # ------------------------------------------------------------------ judging
    def _judge(self, s: ControllerState, after: float) -> ControllerState:
        """End of Correct: keep the jump unless it lost ground against the loss trend."""
        c = self.config
        j = s.jump
        f = trend.fit(s.trend)
        if f is None or not math.isfinite(after):
            return self._rollback(s, reason="judged" if f is not None else "no_trend",
                                  after=after)
        steps = c.correct_steps
        if self.has_probe:
            origin, ahead = j.probe_before, steps
            noise_var = f.noise ** 2 / steps
        else:  # the mean training loss of the judged steps against the trend's at them
            m = max(j.loss_n, 1)
            ahead = steps - (m - 1) / 2  # full steps from the jump to the judged window's centre
            origin = f.value(j.start_full)
            noise_var = f.noise ** 2 / m + f.noise ** 2 / len(s.trend.losses)
        expected = origin + f.slope * ahead
        spread = math.sqrt(noise_var + (f.slope_se * ahead) ** 2)
        # "origin": roll back only a jump that left the run behind where it started (its
        # Correct steps are spent either way); "trend": one behind the trend's progress.
        bar, bar_spread = (expected, spread) if c.judge == "trend" else (origin, math.sqrt(noise_var))
        if after > bar + c.judge_margin * bar_spread:
            return self._rollback(s, reason="judged", after=after, expected=bar)
        # Kept: priced in full steps at the trend's rate where it is known, with its error,
        # so that the ledger can take the lower bound of the kept jumps' sum.
        rate = -f.slope
        gained = (expected - after) / rate if f.significant else 0.0
        gained_se = spread / rate if f.significant else 0.0
        n = s.counters
        log.info("jump_judged", step=n.steps, kept=True, horizon=j.horizon, taken=j.taken,
                 steps_gained=round(gained, 2), loss_after=after, expected=expected)
        s = attrs.evolve(
            s, counters=attrs.evolve(n, kept=n.kept + 1),
            # The trend continues from the level the run is at: the stored points move by
            # the jump's estimate, either way (moving them only down would bias the next
            # judgement against the jump).
            trend=trend.relevel(s.trend, after - expected),
            floor=ledger.record(s.floor, gained=gained, gained_se=gained_se),
            policy=horizon.learn(s.policy, j.arm, np.asarray(j.context), gained, j.taken, steps,
                                 False, ahead=expected - after, rate_known=f.significant))
        s = attrs.evolve(s, phase=Phase.FULL, left=c.full_steps, jump=None)
        return self._next_full(s, judge="keep", save=True, gained=gained, after=after)

    def _rollback(self, s: ControllerState, *, reason: str, after: float = math.nan,
                  expected: float = math.nan) -> ControllerState:
        """The jump goes: origin, optimizer state and ring back; the ledger pays."""
        c = self.config
        j = s.jump
        lost = s.counters.full - j.start_full
        log.info("rollback", step=s.counters.steps, reason=reason, horizon=j.horizon,
                    taken=j.taken or j.k, loss_after=after, expected=expected)
        n = s.counters
        s = attrs.evolve(
            s, phase=Phase.FULL, left=c.full_steps, jump=None,
            counters=attrs.evolve(n, rollbacks=n.rollbacks + 1),
            floor=ledger.record(s.floor, spent=float(lost)),
            policy=horizon.learn(s.policy, j.arm, np.asarray(j.context), None, max(j.k, 1),
                                 c.correct_steps, True),
            snapshots=max(min(s.snapshots, c.history_size - j.pushed), 0))
        return self._next_full(s, judge="rollback", drop=j.pushed, after=after)

    # ------------------------------------------------------------------ scheduling
    def _next_full(self, s: ControllerState, **extra: object) -> ControllerState:
        """The action for a full step next: observed when the history will be needed."""
        observe = s.phase is Phase.CORRECT or self._steps_to_chance(s) <= self._history_steps()
        restart = observe and not s.observing
        since = 0 if restart else s.since_snapshot
        snaps = 0 if restart else s.snapshots
        probe = self.has_probe and s.phase is Phase.CORRECT and s.left == 1
        snapshot = observe and since + 1 >= self.config.snapshot_interval
        quiet = 0
        if not observe and s.phase is not Phase.CORRECT:
            quiet = max(0, min(s.left - 1, self._steps_to_chance(s) - self._history_steps() - 1,
                               _QUIET_MAX))
        if extra or restart or probe or quiet:
            action = Action(observe=observe, restart=restart, probe=probe, snapshot=snapshot,
                            quiet=quiet, **extra)
        else:  # the common step: one of four plain actions, built once
            action = PLAIN_ACTIONS[observe, snapshot]
        if (action is s.action and observe == s.observing and since == s.since_snapshot
                and snaps == s.snapshots):
            return s
        return attrs.evolve(s, observing=observe, since_snapshot=since, snapshots=snaps,
                            action=action)

    def _history_steps(self, s: ControllerState | None = None) -> int:
        """Observed steps until the ring holds what the predictor needs (from empty)."""
        need = self.min_snapshots * self.config.snapshot_interval
        if s is None:
            return need
        return need - s.snapshots * self.config.snapshot_interval - s.since_snapshot

    def _steps_to_chance(self, s: ControllerState) -> int:
        """Steps until the next decision point at which a jump could start."""
        c = self.config
        if s.phase is Phase.PREDICT or self._too_late(s, ahead=s.left):
            return _NEVER
        wait = s.left + horizon.idle_decisions(s.policy) * c.full_steps
        if c.floor is not None and c.total_steps is not None and not self._affordable(s):
            return _NEVER  # the whole run's credit cannot cover a jump: it never will
        if c.floor is not None and c.total_steps is None:
            # The step at which the slack covers a jump: fixed while the ledger is, so the
            # wait shrinks by exactly one a step (quiet steps count on that).
            affordable_at = math.ceil((self._worst_case() - s.floor.gained + s.floor.spent)
                                      / (1.0 - c.floor))
            wait = max(wait, affordable_at - s.counters.steps)
        return wait

    def _too_late(self, s: ControllerState, ahead: int = 0) -> bool:
        """No jump starting ``ahead`` steps from now could be judged by ``total_steps``."""
        c = self.config
        if c.total_steps is None:
            return False
        shortest = min(c.check_interval, c.max_predict_steps)
        return s.counters.steps + ahead + shortest + c.correct_steps > c.total_steps

    def _worst_case(self) -> float:
        """What a jump can cost the ledger: its Correct steps and its probes, rolled back."""
        c = self.config
        probes = (c.max_predict_steps // c.check_interval + 2) if self.has_probe else 0
        return c.correct_steps + probes * c.probe_cost

    def _affordable(self, s: ControllerState) -> bool:
        c = self.config
        if c.floor is None:
            return True
        have = ledger.credit(s.floor, c.floor, s.counters.steps, c.total_steps)
        return have >= self._worst_case()

    def _annealing(self, s: ControllerState) -> bool:
        """The learning rate has fallen below ``anneal_share`` of the highest read: the
        schedule anneals, and the line would extrapolate a velocity it no longer gives."""
        share = self.config.anneal_share
        return share is not None and s.lr < share * s.peak_lr  # False while none was read

    def _probe_due(self, k: int, h: int) -> bool:
        return self.has_probe and (k % self.config.check_interval == 0 or k == h)

