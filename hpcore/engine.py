"""The phase machine: Warmup -> Full -> Predict -> Correct -> Full (DESIGN section 4).

The engine owns every decision and sees the model only through a :class:`TrainingPort`:
a flat parameter vector, a full step, a forward-only loss and the optimizer state.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections import deque
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import structlog

from hpcore import kernels
from hpcore.bandit import HorizonBandit, context_vector
from hpcore.config import HybridTrainerConfig
from hpcore.divergence import DivergenceEvent, DivergenceMonitor, Level
from hpcore.encoder import StateEncoder
from hpcore.floor import FloorGuard
from hpcore.history import SnapshotHistory
from hpcore.horizon import HorizonPolicy
from hpcore.port import TrainingPort
from hpcore.predictors import make_predictor
from hpcore.residual import ResidualStore, group_projections
from hpcore.trend import LossTrend
from hpcore.types import Phase, StepResult, TrainingStatistics

__all__ = ["HybridEngine", "JumpRecord"]

# Counters and jump-in-progress fields that a state dict carries as plain numbers.
_SCALAR_STATE = (
    "_left", "step_count", "trajectory_steps", "_horizon", "_k", "_best_k", "_best_loss",
    "_confidence", "_base_confidence", "_loss_before", "_jump_start_step", "_saved_traj",
    "_taken", "_backward", "_forward_only", "_predicted", "_rollbacks", "_jumps", "_jumps_accepted",
    "_dormant", "_dormant_steps", "_full_count", "_jump_full_count",
)

log = structlog.get_logger(__name__)
_now = time.perf_counter
_set_field = object.__setattr__  # for a frozen result completed before it is handed out

# The share of a dormant run's time that refreshing the rollback fallback may cost.
_REFRESH_SHARE = 0.002
_REFRESH_MAX = 10
# The share of a dormant step's time the fully guarded steps may add (automatic interval),
# the longest interval chosen, and the interval before both kinds of step are timed.
_GUARD_SHARE = 0.01
_GUARD_MAX = 128
_GUARD_DEFAULT = 8
# The first choice comes once this many guarded and short-path steps have been timed (the
# later ones at each fallback refresh): on a small model the default interval's guarded
# steps before the first refresh cost a short run several percent.
_GUARD_FIRST = (2, 8)


@attrs.frozen
class JumpRecord:
    """How one jump went: where it started, how far it went, how it was judged."""

    step: int
    arm: str
    horizon: int
    taken: int
    confidence: float
    loss_before: float
    loss_after: float | None
    steps_gained: float | None
    rolled_back: bool
    reason: str
    correction: float = 1.0
    cost_steps: float = 0.0  # the cycle's engine time in full steps, charged to the jump


def _make_policy(config: HybridTrainerConfig) -> HorizonBandit | HorizonPolicy:
    """The configured horizon policy. Doubling: from two probe intervals (the shortest jump
    with a point to fall back on) up to ``max_predict_steps``; LinUCB: horizons halving from
    ``max_predict_steps`` down to ``check_interval``."""
    if config.horizon_policy == "doubling":
        return HorizonPolicy(config.max_predict_steps, min_horizon=2 * config.check_interval)
    horizons = [config.max_predict_steps]
    while horizons[-1] // 2 >= config.check_interval:
        horizons.append(horizons[-1] // 2)
    return HorizonBandit(horizons, alpha=config.bandit_alpha,
                         average_arm=config.snapshot_ema is not None)


def _group_offsets(port: TrainingPort, n: int) -> np.ndarray:
    """Boundaries of the port's parameter groups (one group when it names none)."""
    offsets = getattr(port, "group_offsets", None)
    o = np.array([0, n] if offsets is None else list(offsets), dtype=np.int64)
    if o[0] != 0 or o[-1] != n or np.any(np.diff(o) <= 0):
        msg = f"group_offsets must rise strictly from 0 to {n} (got {o.tolist()})"
        raise ValueError(msg)
    return o


def _policy_state(policy: HorizonBandit | HorizonPolicy) -> dict[str, Any]:
    if isinstance(policy, HorizonBandit):
        return policy.state_dict()
    return dict(vars(policy))


def _load_policy_state(policy: HorizonBandit | HorizonPolicy, state: dict[str, Any]) -> None:
    if isinstance(policy, HorizonBandit):
        policy.load_state_dict(state)
    else:
        vars(policy).update(state)


class _Timer:
    """Wall time of ``step``, the part of it spent in the port (framework work), the port's
    full steps and forward passes alone, and the engine's own time in dormant steps; ``mark``
    holds the first three (and the backward count) at the start of the current jump cycle."""

    def __init__(self) -> None:
        self.total = 0.0
        self.port = 0.0
        self.full = 0.0  # port time of full steps (forward, backward, optimizer)
        self.forward = 0.0  # port time of forward-only passes (probes)
        self.forwards = 0
        self.dormant = 0.0  # engine time (not the port's) of dormant steps
        self.dormant_steps = 0
        # Wall time of the dormant steps since the guard interval was last chosen: each fully
        # guarded one (less a refresh of the fallback in it), and the short-path lean ones'
        # sum and count.
        self.guard: list[float] = []
        self.short_s, self.short_n = 0.0, 0
        self.start_up = 0.0  # kernels' first calls during steps (in total, not in any rate)
        self.jit = 0.0  # port calls in which a JIT framework compiled (in no total or rate)
        # (total less start-up, full, backward passes) when the cycle began
        self.mark = (0.0, 0.0, 0)


class HybridEngine:
    """Drives a :class:`TrainingPort` through the phases; one ``step(batch)`` per training step.

    Args:
        port: the adapter's framework glue.
        config: the validated configuration.

    Raises:
        ValueError: the port's parameters are not a non-empty 1-D float32 vector, or its
            parameter groups do not cover it.
    """

    def __init__(self, port: TrainingPort, config: HybridTrainerConfig) -> None:
        theta = port.flat_params()
        if getattr(theta, "ndim", None) != 1 or theta.dtype != np.float32:
            msg = (
                f"the port's flat_params() must be a 1-D float32 array "
                f"(got ndim={getattr(theta, 'ndim', None)}, dtype={getattr(theta, 'dtype', None)})"
            )
            raise ValueError(msg)
        if theta.shape[0] == 0:
            msg = "the model has no trainable parameters (flat_params() is empty)"
            raise ValueError(msg)
        self.port = port
        self.config = config
        self.theta = theta
        xp = kernels.get_array_module(theta)
        self.predictor = make_predictor(config.predictor)
        self.history = SnapshotHistory(
            theta, config.history_size, config.snapshot_interval, config.snapshot_ema
        )
        self.trend = LossTrend(window=max(config.full_steps, 20))
        self.monitor = DivergenceMonitor(
            config.divergence, config.divergence_threshold, config.rollback_tolerance
        )
        self.encoder = StateEncoder()
        self.group_offsets = _group_offsets(port, theta.shape[0])
        self.residuals = (
            ResidualStore(config.residual_capacity, len(self.encoder.encode()),
                          len(self.group_offsets) - 1, config.residual_temperature)
            if config.residual_capacity > 0 else None
        )
        self._applied_scales = np.ones(len(self.group_offsets) - 1)  # (G,) last correction
        self._drift_along = np.zeros(len(self.group_offsets) - 1)  # (G,) <v_g, D_g> at jump
        self._key = self.encoder.encode()  # state key of the jump in progress
        self.policy = _make_policy(config)
        self.floor = (None if config.floor is None
                      else FloorGuard(config.floor, config.total_steps))
        self._saved_theta = xp.array(theta, copy=True)  # (N,) last good state / jump origin
        self._saved_opt = port.optimizer_state()
        self._direction = xp.zeros_like(theta)  # (N,) forecast displacement D
        self.phase = Phase.WARMUP if config.warmup_steps > 0 else Phase.FULL
        self._left = config.warmup_steps if config.warmup_steps > 0 else config.full_steps
        # A run of lean dormant steps cleared for step's short path (:meth:`_plan_lean_run`):
        # those left, those planned (the difference: taken, not yet in the counters, which
        # :meth:`_settle_lean` brings up to date), the step index after the run, their phase
        # (and its key in _phase_steps), their wall time, the engine's part of it and their
        # longest port call, with the JIT clock's reading when the run started or last settled.
        self._lean_run = 0
        self._lean_planned = 0
        self._lean_end = 0
        self._lean_phase = Phase.FULL
        self._lean_key = Phase.FULL.value
        self._lean_s = 0.0
        self._lean_own = 0.0
        self._lean_max = 0.0
        self._lean_clock = 0.0
        self.step_count = 0
        self.trajectory_steps = 0  # full steps on the kept trajectory (rollbacks rewind it)
        # Jump in progress.
        self._horizon = 0
        self._arm: str | int = "none"
        self._context = np.zeros(0)
        self._k = 0
        self._best_k = 0
        self._best_loss = math.inf
        self._confidence = 0.0
        self._base_confidence = 0.0  # the predictor's confidence at the jump's start
        self._probe: list[Any] | None = None  # the batches the jump in progress is probed on
        # Probe batches from the start of the last Full phase (the jump adds its own).
        self._recent: deque[Any] = deque(maxlen=config.probe_batches - 1)
        self._loss_before = math.nan
        self._jump_start_step = 0
        self._saved_traj = 0  # trajectory_steps at the saved state
        self._dormant_refresh = config.full_steps  # dormant steps between fallback refreshes
        self._taken = 0  # predicted steps kept by the current jump
        self._dormant = 0  # full steps left with no bookkeeping (the policy is sitting out)
        self._dormant_steps = 0
        self._was_dormant = False  # the step in progress was a dormant one
        # A port's optional lean step (loss only; flat params may lag until sync_flat) and
        # the loss above which a lean dormant step hands over to the guarded path.
        self._lean = getattr(port, "lean_step", None)
        self._sync_flat = getattr(port, "sync_flat", None)
        self._jit_clock = getattr(port, "compile_seconds", None)
        self._lean_warm = False  # a lean step was taken on the slow path (its first call)
        self._reduce = port.all_reduce_mean
        fixed = config.divergence.dormant_check_interval
        self._guard_interval = fixed if fixed is not None else _GUARD_DEFAULT
        self._guard_timed = False  # the step in progress is a guarded dormant one to time
        self._guard_chosen = False  # the interval has been chosen from measured costs
        self._guard_less = 0.0  # and the time in it that was not the guard's
        self._save_s = 0.0  # the last _save_good_state's time
        self._loss_limit = -math.inf
        self._full_count = 0  # full steps (port.full_step calls)
        self._jump_full_count = 0  # _full_count when the jump in progress started
        # Counters.
        self._backward = 0
        self._forward_only = 0
        self._predicted = 0
        self._rollbacks = 0
        self._jumps = 0
        self._jumps_accepted = 0
        self._phase_steps = {p.value: 0 for p in Phase}
        self._events: list[DivergenceEvent] = []
        self.jump_records: list[JumpRecord] = []
        self._timer = _Timer()
        self._sit_out_the_start()

    # ------------------------------------------------------------------ public surface
    @property
    def step_count(self) -> int:
        """Steps taken so far, predicted ones included."""
        return self._steps + self._lean_planned - self._lean_run

    @step_count.setter
    def step_count(self, value: int) -> None:
        self._settle_lean()
        self._steps = value

    def step(self, batch: Any) -> StepResult:
        """One training step: full, predicted or corrective, as the phase machine says."""
        if self._lean_run:
            return self._short_step(batch)
        self._settle_lean()
        start = _now()
        before = self._before()
        phase = self.phase
        if phase is Phase.PREDICT:
            loss, rolled_back = self._predicted_step(batch)
        elif self._dormant > 0:
            loss, rolled_back = self._dormant_full_step(batch)
        else:
            loss, rolled_back = self._full_step(batch)
        return self._finish_step(start, before, phase, (loss, rolled_back))

    def _before(self) -> tuple[float, float, float]:
        """What :meth:`_finish_step` counts from: port time, kernels' start-up, JIT time."""
        t = self._timer
        return t.port, kernels.start_up_seconds(), t.jit

    def _short_step(self, batch: Any) -> StepResult:
        """A lean dormant step cleared in advance (:meth:`_plan_lean_run`): the plain loop's
        step with its loss judged, and only a count and a timer kept (:meth:`_settle_lean`
        brings the counters up to date when anything else reads them).

        The bookkeeping is done before the loss is read: an asynchronous framework (JAX) is
        still computing then, and a host thread that returns as soon as the loss is in keeps
        the framework's workers from going to sleep between steps (``python
        benchmarks/jax_step_costs.py``, JAX digits MLP: building a result after the wait cost
        6-7 us a step, the same work before it nothing).
        """
        start = _now()
        pending = self._lean(batch)
        dispatched = _now()
        left = self._lean_run
        self._lean_run = left - 1
        result = StepResult(self._lean_end - left, self._lean_phase, None, False, 0.0, False)
        longest = self._lean_max  # the longest call: a JIT framework compiles in it
        if dispatched - start > longest:
            self._lean_max = dispatched - start
        own = _now() - dispatched
        self._lean_own += own
        loss = self._reduce(float(pending))
        if loss <= self._loss_limit:  # false for nan
            _set_field(result, "loss", loss)  # known only now; the result is not out yet
            self._lean_s += _now() - start
            return result
        # Not quiet: the step is not a dormant one; the guarded path takes it over.
        self._lean_own -= own
        self._lean_max = longest
        self._lean_run = left
        self._settle_lean()
        self._lean_run = self._lean_planned = 0
        self._backward += 1
        self._full_count += 1
        t = self._timer
        port_s = _now() - start - own
        t.port += port_s
        t.full += port_s
        before = (t.port - port_s, kernels.start_up_seconds(), t.jit)
        return self._finish_step(start, before, self.phase,
                                 self._leave_dormancy(batch, loss, math.nan))

    def _settle_lean(self) -> None:
        """Bring the counters and timers up to date with the short-path steps taken so far
        (each one a dormant full step, timed as a whole)."""
        taken = self._lean_planned - self._lean_run
        if taken == 0:
            return
        self._lean_planned = self._lean_run
        self._steps += taken
        self._dormant -= taken
        self._dormant_steps += taken
        self.trajectory_steps += taken
        self._left -= taken
        self._backward += taken
        self._full_count += taken
        self._phase_steps[self._lean_key] += taken
        t = self._timer
        s, own, longest = self._lean_s, self._lean_own, self._lean_max
        self._lean_s = self._lean_own = self._lean_max = 0.0
        compiled = self._lean_compiled(longest)
        if compiled:
            s -= compiled
            t.jit += compiled
            t.short_n -= 1
        t.short_n += taken
        t.short_s += s
        t.dormant_steps += taken
        t.dormant += own
        t.port += s - own
        t.full += s - own
        t.total += s

    def _lean_compiled(self, longest: float) -> float:
        """The time of a short-path step in which a JIT framework compiled (a batch of a new
        shape, say), 0 if none: the short path reads no clock, so when the clock moved during
        the run its longest port call is taken for that one (compiling takes 1000 times a
        compiled call). A compilation in the user's code between the steps moves the clock
        too; it then costs the timings one ordinary call, not the run's."""
        clock = self._jit_clock
        if clock is None:
            return 0.0
        now = clock()
        if now == self._lean_clock:
            return 0.0
        self._lean_clock = now
        return longest

    def _finish_step(self, start: float, before: tuple[float, float, float], phase: Phase,
                     outcome: tuple[float | None, bool]) -> StepResult:
        """The step's result, counters and timers. The kernels' start-up (their first calls
        in this process) is charged once, in the total, and kept out of the rates per step;
        port calls in which a JIT framework compiled are left out of the total too."""
        port_before, start_up_before, jit_before = before
        loss, rolled_back = outcome
        result = StepResult(
            step=self.step_count,
            phase=phase,
            loss=loss,
            was_predicted=phase is Phase.PREDICT,
            confidence=self._confidence if phase is Phase.PREDICT else 0.0,
            rolled_back=rolled_back,
        )
        self._phase_steps[phase.value] += 1
        self.step_count += 1
        t = self._timer
        elapsed = _now() - start - (t.jit - jit_before)
        t.total += elapsed
        start_up = kernels.start_up_seconds() - start_up_before
        t.start_up += start_up
        if self._guard_timed:
            self._guard_timed = False
            t.guard.append(elapsed - start_up - self._guard_less)
        if self._was_dormant:
            self._was_dormant = False
            t.dormant += elapsed - (t.port - port_before) - start_up
            t.dormant_steps += 1
        return result

    def statistics(self) -> TrainingStatistics:
        """Counters of the run so far."""
        self._settle_lean()
        by_signal: dict[str, int] = {}
        for e in self._events:
            by_signal[e.signal] = by_signal.get(e.signal, 0) + 1
        return TrainingStatistics(
            total_steps=self.step_count,
            backward_passes=self._backward,
            forward_only_passes=self._forward_only,
            predicted_steps=self._predicted,
            rollbacks=self._rollbacks,
            jumps=self._jumps,
            jumps_accepted=self._jumps_accepted,
            divergence_events=by_signal,
            phase_steps=dict(self._phase_steps),
            wall_time_s=self._timer.total,
            engine_time_s=max(0.0, self._timer.total - self._timer.port),
            dormant_steps=self._dormant_steps,
            floor_credit=self._floor_credit(),
        )


    @property
    def events(self) -> tuple[DivergenceEvent, ...]:
        """Every divergence event so far, oldest first."""
        return tuple(self._events)

    def metrics(self) -> dict[str, Any]:
        """Statistics, config, jumps and events as one JSON-ready dict."""
        config = attrs.asdict(self.config)
        config["predictor"]["kind"] = type(self.config.predictor).__name__
        return {
            "statistics": self.statistics().to_dict(),
            "config": config,
            "jumps": [attrs.asdict(j) for j in self.jump_records],
            "divergence_events": [
                {"step": e.step, "signal": e.signal, "level": e.level.name.lower(), "value": e.value}
                for e in self._events
            ],
        }

    def export_metrics(self, path: str | Path) -> Path:
        """Write :meth:`metrics` to ``path`` as JSON; returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.metrics(), indent=2, allow_nan=True))
        return path

    def state_dict(self) -> dict[str, Any]:
        """The engine's whole state: arrays (copies), counters and the sub-states.

        The model and the optimizer keep their own state; the optimizer state saved for a
        rollback is included because the engine owns that copy. The probe batch of a jump in
        progress is held as the object the user passed.
        """
        self._settle_lean()
        self._fresh_theta()
        h = self.history
        arrays = {
            "ema": h.ema, "prev": h.prev, "prev_update": h.prev_update, "ring": h.ring,
            "times": h.times, "saved_theta": self._saved_theta, "direction": self._direction,
        }
        scalars = {name: getattr(self, name) for name in _SCALAR_STATE}
        return {
            "version": 1,
            "size": int(self.theta.shape[0]),
            "arrays": {k: v.copy() for k, v in arrays.items()},
            "scalars": scalars,
            "phase": self.phase.value,
            "history": {"count": h.count, "head": h.head, "clock": h.clock},
            "policy": _policy_state(self.policy),
            "predictor": self.predictor.state_dict(),
            "encoder": self.encoder.state_dict(),
            "residuals": None if self.residuals is None else self.residuals.state_dict(),
            "applied_scales": self._applied_scales.copy(),
            "drift_along": self._drift_along.copy(),
            "key": self._key.copy(),
            "arm": self._arm,
            "context": self._context.copy(),
            "trend": {"steps": list(self.trend._steps), "losses": list(self.trend._losses)},
            "monitor": self.monitor.state_dict(),
            "phase_steps": dict(self._phase_steps),
            "events": [(e.step, e.signal, int(e.level), e.value) for e in self._events],
            "jumps": [attrs.asdict(j) for j in self.jump_records],
            "saved_optimizer_state": self._saved_opt,
            "probe": {"set": self._probe, "recent": list(self._recent)},
            "floor_realized": None if self.floor is None else self.floor.realized,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; sizes are checked before anything changes."""
        if state.get("version") != 1:
            msg = f"unknown engine state version {state.get('version')!r} (expected 1)"
            raise ValueError(msg)
        if state["size"] != self.theta.shape[0]:
            msg = (f"engine state is for {state['size']} parameters, this model has "
                   f"{self.theta.shape[0]}")
            raise ValueError(msg)
        self._settle_lean()
        h = self.history
        targets = {
            "ema": h.ema, "prev": h.prev, "prev_update": h.prev_update, "ring": h.ring,
            "times": h.times, "saved_theta": self._saved_theta, "direction": self._direction,
        }
        for name, dst in targets.items():
            src = state["arrays"][name]
            if tuple(src.shape) != tuple(dst.shape):
                msg = (f"engine state array {name!r} has shape {tuple(src.shape)}, "
                       f"expected {tuple(dst.shape)} (was history_size changed?)")
                raise ValueError(msg)
        for name, dst in targets.items():
            dst[...] = state["arrays"][name]
        for name in _SCALAR_STATE:
            setattr(self, name, state["scalars"].get(name, 0))
        self.phase = Phase(state["phase"])
        h.count, h.head, h.clock = (state["history"][k] for k in ("count", "head", "clock"))
        _load_policy_state(self.policy, state["policy"])
        self.predictor.load_state_dict(state["predictor"])
        self.encoder.load_state_dict(state["encoder"])
        if self.residuals is not None and state["residuals"] is not None:
            self.residuals.load_state_dict(state["residuals"])
        self._applied_scales = np.array(state["applied_scales"], dtype=np.float64)
        self._key = np.array(state["key"], dtype=np.float64)
        self._drift_along = np.array(state["drift_along"], dtype=np.float64)
        self._arm = state["arm"]
        self._context = np.array(state["context"], dtype=np.float64)
        self.trend.clear()
        for t, loss in zip(state["trend"]["steps"], state["trend"]["losses"], strict=True):
            self.trend.add(t, loss)
        self.monitor.load_state_dict(state["monitor"])
        self._loss_limit = self.monitor.loss_limit()
        self._lean_run = self._lean_planned = 0
        self._phase_steps = dict(state["phase_steps"])
        self._events = [DivergenceEvent(s, g, Level(lv), v) for s, g, lv, v in state["events"]]
        self.jump_records = [JumpRecord(**j) for j in state["jumps"]]
        self._saved_opt = state["saved_optimizer_state"]
        probe = state["probe"]
        self._probe = None if probe["set"] is None else list(probe["set"])
        self._recent.clear()
        self._recent.extend(probe["recent"])
        if self.floor is not None:
            self.floor.realized = float(state.get("floor_realized") or 0.0)
        self._start_cycle()  # timings are this process's own: the next charge starts now

    # ------------------------------------------------------------------ port calls
    def _port_call(self, fn: Any, *args: Any) -> tuple[Any, float]:
        """A port call and its wall time; 0 for a call in which a JIT framework compiled
        (kept in ``_timer.jit``, out of every cost: a one-off, as the benchmarks treat it)."""
        clock = self._jit_clock
        c0 = clock() if clock is not None else 0.0
        t0 = _now()
        out = fn(*args)
        dt = _now() - t0
        if clock is not None and clock() != c0:
            self._timer.jit += dt
            return out, 0.0
        return out, dt

    def _timed_full(self, step: Any, batch: Any) -> Any:
        """A full step of the port's (``full_step`` or ``lean_step``), timed and counted."""
        out, dt = self._port_call(step, batch)
        self._timer.port += dt
        self._timer.full += dt
        self._backward += 1
        self._full_count += 1
        return out

    def _port_full_step(self, batch: Any) -> tuple[float, float]:
        out = self._timed_full(self.port.full_step, batch)
        return float(out[0]), float(out[1])

    def _port_lean_step(self, batch: Any) -> float:
        self._lean_warm = True  # its first call (a JIT framework compiles it) is not short
        return self._timed_full(lambda b: float(self._lean(b)), batch)

    def _fresh_theta(self) -> None:
        """Bring the flat parameters up to date after lean steps (ports that copy them)."""
        if self._sync_flat is not None:
            self._timer.port += self._port_call(self._sync_flat)[1]

    def _port_forward(self, batch: Any) -> float:
        loss, dt = self._port_call(lambda b: float(self.port.forward_loss(b)), batch)
        self._timer.port += dt
        self._timer.forward += dt
        self._timer.forwards += 1
        if self.port.forward_costs_backward:
            self._backward += 1
        else:
            self._forward_only += 1
        return self.port.all_reduce_mean(loss)

    def _probe_loss(self) -> float:
        """Mean forward-only loss over the probe batches of the jump in progress."""
        return sum(self._port_forward(b) for b in self._probe) / len(self._probe)

    def _params_changed(self) -> None:
        self._timer.port += self._port_call(self.port.commit_params)[1]

    # ------------------------------------------------------------------ full steps
    def _full_step(self, batch: Any) -> tuple[float, bool]:
        loss, grad_norm = self._port_full_step(batch)
        return self._bookkept_step(batch, self.port.all_reduce_mean(loss), grad_norm)

    def _dormant_full_step(self, batch: Any) -> tuple[float, bool]:
        """A full step while the engine sits out, with the guards a plain loop lacks.

        A fully guarded step is handed back with finite parameters. Once the monitor knows
        the gradient's level, a finite loss and a gradient below ten times that level cannot
        have thrown finite parameters out of range: only then, and not where the fallback is
        refreshed, is the sum of squares skipped. Between the fully guarded steps (one in
        ``dormant_check_interval``, the last dormant one) a port's lean step is taken, judged
        by its loss alone: finite and below the warning z-score (a non-finite gradient under
        a finite loss shows in the next step's loss). The fallback is refreshed at the first
        fully guarded step after it falls due: a refresh needs a checked state, and a guarded
        step of its own would cost a small model as much as the guard itself.
        """
        cfg = self.config
        ready = self.monitor.grad_seen >= cfg.divergence.min_baseline_steps
        if ready and self._lean is not None and self._dormant > 1 and \
                self._dormant_steps % self._guard_interval:
            loss = self.port.all_reduce_mean(self._port_lean_step(batch))
            if loss <= self._loss_limit:  # false for nan
                return loss, self._dormant_step(guarded=False)
            return self._leave_dormancy(batch, loss, math.nan)
        due = self.trajectory_steps + 1 - self._saved_traj >= self._dormant_refresh
        loss, grad_norm = self._port_full_step(batch)
        loss = self.port.all_reduce_mean(loss)
        if math.isfinite(loss) and self.monitor.quiet(loss, grad_norm) and \
                ((ready and not due) or self._params_finite()):
            self._loss_limit = self.monitor.loss_limit()
            saved = self._saved_traj
            rolled_back = self._dormant_step(guarded=True)
            # Timed once the baseline is known: the guarded steps before it are not the
            # interval's, and the first of them pays a JIT framework's compilation.
            self._guard_timed = ready
            t = self._timer
            if not self._guard_chosen and len(t.guard) >= _GUARD_FIRST[0] and \
                    t.short_n >= _GUARD_FIRST[1]:
                self._choose_guard_interval()
            # A refresh's own cost is not the guard's.
            self._guard_less = self._save_s if self._saved_traj != saved else 0.0
            return loss, rolled_back
        return self._leave_dormancy(batch, loss, grad_norm)

    def _plan_lean_run(self) -> None:
        """How many lean steps come next, before a guarded one is due (the check interval,
        the last dormant step) or a phase ends: :meth:`step` takes
        them on its short path, with the decisions :meth:`_dormant_full_step` would make."""
        cfg = self.config
        if self._lean is None or not self._lean_warm or self._dormant == 0 or \
                self.monitor.grad_seen < cfg.divergence.min_baseline_steps:
            return
        interval = self._guard_interval
        self._lean_phase = self.phase
        self._lean_key = self.phase.value
        self._lean_run = self._lean_planned = max(0, min(
            (interval - self._dormant_steps % interval) % interval,
            self._dormant - 1,
            self._left - 1,
        ))
        self._lean_end = self.step_count + 1 + self._lean_run  # the step in progress is not counted yet
        if self._lean_run and self._jit_clock is not None:
            self._lean_clock = self._jit_clock()

    def _leave_dormancy(self, batch: Any, loss: float, grad_norm: float) -> tuple[float, bool]:
        """A non-finite loss or parameter (or a float32 overflow of the sum of squares), a
        loss or gradient spike: the guarded path tells them apart and rolls back where it
        must."""
        if math.isnan(grad_norm):  # a lean step's: the flat vector may lag behind
            self._fresh_theta()
        self._dormant = 0
        self.history.restart(self.theta)
        return self._bookkept_step(batch, loss, grad_norm)

    def _bookkept_step(self, batch: Any, loss: float, grad_norm: float) -> tuple[float, bool]:
        """The monitor's judgement and the forecast's bookkeeping of a full step taken."""
        update = None
        if math.isfinite(loss):
            if self.phase is Phase.FULL and \
                    self._left > self.config.full_steps - (self.config.probe_batches - 1):
                # Probe batches come from the start of a Full phase: by the time a jump is
                # judged they are 60-140 steps old. The batches of the last few steps would
                # read low (the model was just fitted to them) and make every jump look worse.
                self._recent.append(batch)
            update = self.history.observe(self.theta)
            if update.snapshot:
                self.predictor.observe_snapshot(self.history)
        nonfinite = update.nonfinite if update is not None else 0
        undisturbed = self.phase in (Phase.WARMUP, Phase.FULL)
        events = self.monitor.full_step(
            self.step_count, loss, grad_norm, nonfinite, update_baseline=undisturbed
        )
        worst = self._record_all(events)
        if worst is not None and worst.level is Level.CRITICAL:
            self._critical(worst)
            return loss, True
        self.trajectory_steps += 1
        if undisturbed and (worst is None or worst.level < Level.WARNING):
            self.trend.add(self.trajectory_steps, loss)
            self.encoder.observe(loss, grad_norm, update.norm, update.cosine)
            if self.trajectory_steps - self._saved_traj >= self.config.full_steps:
                # Refresh the fallback of a critical event about once per Full phase: a copy
                # of the optimizer state can cost more than a training step.
                self._save_good_state()
        self._left -= 1
        if self._left <= 0:
            if self.phase is Phase.CORRECT:
                return loss, self._judge_jump()
            self._end_full_phase()
        return loss, False

    def _params_finite(self) -> bool:
        with np.errstate(over="ignore", invalid="ignore"):  # a float32 sum may overflow
            return math.isfinite(float(self.theta @ self.theta))

    def _dormant_step(self, *, guarded: bool) -> bool:
        """A full step while the engine sits out: counters only, no per-step bookkeeping
        (the caller checked that the loss is finite and quiet; after a ``guarded`` step, the
        gradient too, and the parameters where the fallback is due for a refresh).

        The history restarts early enough to hold a full window again by the next decision
        point at which the policy may jump.
        """
        self._dormant -= 1
        self._dormant_steps += 1
        self._was_dormant = True
        self.trajectory_steps += 1
        if guarded and self.trajectory_steps - self._saved_traj >= self._dormant_refresh:
            # The fallback of a critical event stays recent while dormant too: a non-finite
            # step after a long sit-out must not rewind the run to where it began.
            self._save_good_state()
        if self._dormant == 0 and self._rearm_allowed():
            self.history.restart(self.theta)
            self.trend.clear()
            log.info("dormant_end", step=self.step_count)
        self._left -= 1
        if self._left <= 0:
            self._end_full_phase()
        self._plan_lean_run()
        return False

    @property
    def _rearm_steps(self) -> int:
        """Bookkept steps a dormant engine needs before a decision point: a full window."""
        return (self.predictor.min_snapshots + 1) * self.config.snapshot_interval

    def _go_dormant(self, idle: int) -> None:
        """No jump at the next ``idle`` decision points: skip bookkeeping until the history
        must be rebuilt for the chance after them."""
        if idle < 1:  # it may jump at the next decision point: keep the history warm
            return
        steps = self._left + idle * self.config.full_steps - self._rearm_steps
        if steps > 0:
            self._dormant = max(self._dormant, steps)
            log.info("dormant", step=self.step_count, steps=self._dormant)

    # ------------------------------------------------------------------ the floor
    def _overhead(self) -> tuple[float, float, float, float]:
        """``(overhead, rate, active rate, forward pass)`` in full steps: the engine's time so
        far beyond the full steps themselves; its rate per step to expect while no jump is
        made (the dormant steps' where measured, else the bookkept steps'); its rate per
        bookkept step; one forward-only pass. Zeros with ``cost_model="steps"``."""
        t = self._timer
        if self.config.cost_model == "steps" or self._full_count == 0 or t.full <= 0.0:
            return 0.0, 0.0, 0.0, 0.0
        step_s = t.full / self._full_count
        overhead = max(t.total - t.full, 0.0) / step_s
        dormant = t.dormant / step_s
        active_steps = self._full_count - t.dormant_steps
        once = t.start_up / step_s  # charged in the overhead, not a cost per step
        active = max((overhead - dormant - once) / active_steps, 0.0) if active_steps > 0 else 0.0
        rate = dormant / t.dormant_steps if t.dormant_steps > 0 else active
        forward = t.forward / t.forwards / step_s if t.forwards > 0 else 0.5
        return overhead, rate, active, forward

    def _floor_credit(self) -> float | None:
        if self.floor is None:
            return None
        overhead, rate, _, _ = self._overhead()
        return self.floor.credit(self._full_count, overhead, rate)

    def _sit_out_the_start(self) -> None:
        """Dormant from the first step until the history must be built for the first decision
        point whose slack covers the cheapest jump (its Correct steps, no overhead counted):
        bookkeeping before it would be wasted, and the dormant steps measure the guard's own
        cost, which the floor reserves for the rest of the run. A run whose whole slack is
        too small (``total_steps`` known) stays dormant to its end."""
        if self.floor is None:
            return
        cfg = self.config
        shortfall = cfg.correct_steps - self.floor.credit(0, 0.0, 0.0)
        if shortfall > 0 and cfg.total_steps is not None:
            self._dormant = cfg.total_steps
        else:
            earliest = self.floor.steps_until(shortfall, 0.0) if shortfall > 0 else 0.0
            if not math.isfinite(earliest):  # a floor of 1: never
                self._dormant = 2**62
            else:
                first = cfg.warmup_steps + cfg.full_steps
                at = first + cfg.full_steps * max(0, math.ceil((earliest - first) / cfg.full_steps))
                self._dormant = max(at - self._rearm_steps, 0)
        if self._dormant > 0:
            log.info("dormant", step=0, steps=self._dormant, reason="floor")

    def _floor_allows(self, horizon: int, rearm: bool = False) -> bool:
        """Whether the floor's credit covers this jump's worst case (rolled back after its
        Correct phase: those steps and its probes lost); if not, sit out until it may.

        With ``rearm`` (a sit-out ends: the history must be rebuilt for the decision point
        ``self._left`` steps ahead) the credit is the one expected at that point, and the
        rebuild's bookkeeping is counted beyond the dormant guard's cost the credit already
        reserves: a rebuild the credit cannot pay for is never started.
        """
        if self.floor is None:
            return True
        cfg = self.config
        overhead, rate, active, forward = self._overhead()
        probes = cfg.probe_batches * (-(-horizon // cfg.check_interval) + 2)
        worst = cfg.correct_steps * (1.0 + active) + probes * forward
        if rearm:
            worst += self._rearm_steps * max(active - rate, 0.0)
        # Timings are each rank's own: every number the decision reads is averaged first.
        ahead = self._left if rearm else 0
        credit = self.floor.credit(self._full_count + ahead, overhead + rate * ahead, rate)
        margin = self.port.all_reduce_mean(credit - worst)
        if margin >= 0.0:
            return True
        rate = self.port.all_reduce_mean(rate)
        wait = self.floor.steps_until(-margin, rate)
        if not math.isfinite(wait):  # no credit to come: look again after as long again
            wait = max(self.step_count, cfg.full_steps)
        if cfg.total_steps is not None:
            wait = min(wait, max(cfg.total_steps - self.step_count, cfg.full_steps))
        # The next decision point it may jump at must lie ``wait`` steps past this one.
        idle = max(1, math.ceil((wait + ahead - self._left) / cfg.full_steps))
        log.info("jump_skipped", step=self.step_count, reason="floor_rearm" if rearm else "floor",
                 credit=round(credit, 2), needed=round(worst, 2), short=round(-margin, 2),
                 idle_decisions=idle)
        self._go_dormant(idle)
        return False

    def _rearm_allowed(self) -> bool:
        """At the end of a sit-out: whether to rebuild the history for the next decision
        point. Not when that point comes too late in the run for a jump (dormant to the end)
        or the floor cannot pay for the rebuild and the cheapest jump (dormant until it can);
        the rebuild's cost per step is known once one has been measured, and counted as
        nothing before."""
        if self._too_late(self.step_count + self._left, 1):
            self._sit_out_to_the_end(1)
            return False
        return self._floor_allows(1, rearm=True)

    def _too_late(self, at: int, horizon: int) -> bool:
        """Whether a jump of ``horizon`` decided at step ``at`` would run, its Correct phase
        included, past ``total_steps``."""
        end = self.config.total_steps
        return end is not None and at + 1 + horizon + self.config.correct_steps > end

    def _sit_out_to_the_end(self, at_least: int) -> None:
        end = self.config.total_steps
        self._dormant = max(end - self.step_count, at_least)
        log.info("jump_skipped", step=self.step_count, reason="end_of_run", total_steps=end,
                 dormant=self._dormant)

    def _save_good_state(self) -> None:
        t0 = _now()
        kernels.copy(self._saved_theta, self.theta)
        self._saved_opt = self.port.optimizer_state()
        self._saved_traj = self.trajectory_steps
        # While dormant the fallback is refreshed every full_steps, or less often (up to
        # _REFRESH_MAX of them) where a copy of the optimizer state (a deep copy in PyTorch)
        # would cost more than _REFRESH_SHARE of the steps between.
        # With cost_model="steps" (decisions reproducible run to run) it stays full_steps.
        spent = self._save_s = _now() - t0
        step_s = self._timer.full / self._full_count if self._full_count else 0.0
        every = spent / (_REFRESH_SHARE * step_s) if step_s > 0 else 0.0
        if self.config.cost_model == "steps":
            every = 0.0
        else:  # timings are each rank's own; their dormant steps must stay in lockstep
            every = self.port.all_reduce_mean(every)
        full = self.config.full_steps
        self._dormant_refresh = max(full, min(math.ceil(min(every, 1e9)), _REFRESH_MAX * full))
        self._choose_guard_interval()

    def _choose_guard_interval(self) -> None:
        """The automatic ``dormant_check_interval``: the smallest (from 2, so that both kinds
        of step go on being timed) at which the fully guarded dormant steps' extra time
        (their median over a short-path lean step's mean, both measured since the last
        choice: one guarded step caught by the machine's hiccup must not set the interval)
        is at most ``_GUARD_SHARE`` of the dormant steps' time. Unchanged where the config fixes it,
        with ``cost_model="steps"``, or until both kinds were timed (the guarded ones only
        once the monitor knows the gradient's level)."""
        t = self._timer
        if self.config.divergence.dormant_check_interval is not None or \
                self.config.cost_model == "steps" or not (t.guard and t.short_n):
            return
        short = t.short_s / t.short_n
        extra = max(statistics.median(t.guard) - short, 0.0)
        # Timings are each rank's own; their dormant steps must stay in lockstep.
        want = self.port.all_reduce_mean(extra / (_GUARD_SHARE * short) if short > 0.0
                                         else math.inf)
        self._guard_interval = max(2, min(math.ceil(min(want, 1e9)), _GUARD_MAX))
        self._guard_chosen = True
        t.guard, t.short_s, t.short_n = [], 0.0, 0

    def _restore_saved_state(self) -> None:
        kernels.copy(self.theta, self._saved_theta)
        self.port.load_optimizer_state(self._saved_opt)
        self._params_changed()
        self.history.restart(self.theta)

    def _critical(self, event: DivergenceEvent) -> None:
        """Critical event: back to the last good state, then ``full_steps`` full steps."""
        was = self.phase
        self.monitor.reset()
        if was in (Phase.PREDICT, Phase.CORRECT):
            self._finish_jump(loss_after=None, gained=None, rolled_back=True,
                              reason=f"critical:{event.signal}")
        else:
            self._restore_saved_state()
            self.trajectory_steps = self._saved_traj
            self._rollbacks += 1
            self.trend.clear()
            log.warning("rollback", step=self.step_count, reason=event.signal, phase=was.value)
        self._set_phase(Phase.FULL, self.config.full_steps, reason="critical")

    def _end_full_phase(self) -> None:
        """Warmup or Full phase over: jump if the policy and the predictor agree."""
        if self.phase is Phase.WARMUP:
            self._set_phase(Phase.FULL, self.config.full_steps, reason="warmup_done")
            return
        self._left = self.config.full_steps
        if self._dormant > 0:
            # A decision point the policy sits out: no forecast quality to compute, only its
            # pause to count down.
            if self.policy.idle_decisions > 0:
                self.policy.choose(None)
            return
        if self.history.count < self.predictor.min_snapshots or len(self.trend) < 3:
            return
        confidence = self.predictor.confidence(self.history)
        context = context_vector(confidence, self.encoder.encode())
        arm = self.policy.choose(context)
        if arm == "none":
            self._start_cycle()
            self._go_dormant(self.policy.idle_decisions)
            return
        horizon = 1 if arm == "average" else int(arm)
        if self._too_late(self.step_count, horizon):
            # The last chance to jump has passed: no more bookkeeping until the end.
            self._sit_out_to_the_end(self.config.full_steps)
            return
        if not self._floor_allows(horizon):
            return
        if arm == "average":
            # Lookahead-like: one predicted step to the averaged point.
            kernels.lincomb(np.ones(1), self.history.ema[None, :], self.theta, -1.0,
                            self._direction)
        else:
            if not confidence >= self.config.confidence_threshold:
                log.info("jump_skipped", step=self.step_count, confidence=confidence,
                         threshold=self.config.confidence_threshold)
                return
            self.predictor.forecast(self.history, self.theta, horizon, self._direction)
            self._correct_forecast()
        self._save_good_state()
        self._jump_full_count = self._full_count
        self._jumps += 1
        self._arm = arm
        self._context = context
        self._horizon = horizon
        self._k = 0
        self._best_k = 0
        self._best_loss = math.inf
        self._confidence = confidence
        self._base_confidence = confidence
        self._probe = None
        self._jump_start_step = self.step_count + 1
        self._set_phase(Phase.PREDICT, horizon, reason="jump", arm=arm,
                        confidence=round(confidence, 4))

    def _correct_forecast(self) -> None:
        """Scale each group's displacement by the residuals of similar past states."""
        self._key = self.encoder.encode()
        self._applied_scales[...] = 1.0
        if self.residuals is None:
            return
        corr = self.residuals.correction(self._key)
        if corr is not None:
            self._applied_scales[...] = corr
            o = self.group_offsets
            for g in np.nonzero(corr != 1.0)[0]:
                self._direction[o[g] : o[g + 1]] *= corr[g]
        # Velocity of the averaged trajectory before the jump, along the jump, per group:
        # what the Correct phase would add anyway, so that it is not credited to the jump.
        slots, times = self.history.window(2)
        velocity = (self.history.ring[slots[1]] - self.history.ring[slots[0]]) / (times[1] - times[0])
        self._drift_along[...] = group_projections(velocity, self._direction, self.group_offsets)[0]

    def _learn_from_jump(self, loss_after: float) -> None:
        """After Correct, before any rollback: the predictor and the residual store learn
        where the trajectory really went (one pass over N, once per jump)."""
        if self._arm in ("none", "average") or self._taken == 0:
            return
        actual = self.theta - self._saved_theta
        self.predictor.learn_from_jump(actual, self._taken, self._horizon,
                                       self.config.correct_steps)
        self._store_residual(actual, loss_after)

    def _store_residual(self, actual: Any, loss_after: float) -> None:
        """The share of each group's jump that survived the recovery.

        With ``A`` the displacement from the jump's origin to now, ``D_t`` the part of the
        jump taken and ``v`` the pre-jump drift: ``kept = <A - c v, D_t> / ||D_t||^2``; 1 when
        the optimizer kept all of the jump, below 1 when it had to undo an overshoot.
        """
        if self.residuals is None:
            return
        dot, ff, _ = group_projections(actual, self._direction, self.group_offsets)
        t, h, c = self._taken, self._horizon, self.config.correct_steps
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(ff > 0, (h / t) * (dot - c * self._drift_along) / ff, 1.0)
        ratio = np.where(np.isfinite(ratio), ratio, 1.0)
        expected = self._loss_before + self.trend.slope() * (t + c)
        self.residuals.add(self._key, self._applied_scales * ratio, loss_after - expected)

    # ------------------------------------------------------------------ predicted steps
    def _predicted_step(self, batch: Any) -> tuple[float | None, bool]:
        if self._probe is None:
            self._probe = [*self._recent, batch]
            self._loss_before = self._probe_loss()
            self._best_loss = self._loss_before
            if not math.isfinite(self._loss_before):
                event = DivergenceEvent(self.step_count, "nan_inf", Level.CRITICAL,
                                        self._loss_before)
                self._record(event)
                self._critical(event)
                return self._loss_before, True
        self._k += 1
        self._predicted += 1
        kernels.axpy_path(self.theta, self._saved_theta, self._direction, self._k / self._horizon)
        self._params_changed()
        self.port.on_predicted_step()
        last = self._k == self._horizon
        if not (last or self._k % self.config.check_interval == 0):
            return None, False
        loss = self._probe_loss()
        events = self.monitor.probe(self.step_count, loss, self._loss_before,
                                    self._k, self.trend.slope())
        worst = self._record_all(events)
        if worst is not None and worst.level is Level.CRITICAL:
            self._critical(worst)
            return loss, True
        if worst is not None and worst.level >= Level.WARNING:
            return loss, self._end_predict_early(worst)
        if loss <= self._best_loss:
            self._best_k, self._best_loss = self._k, loss
        # Confidence decays with the recent prediction error (the probe above the trend's
        # promise); below the threshold the jump ends at its best checked point.
        gap = self.monitor.prediction_gap(loss, self._loss_before, self._k, self.trend.slope())
        self._confidence = self._base_confidence * math.exp(
            -max(gap, 0.0) / (self.config.divergence.gap_zscore * self.config.divergence.gap_decay))
        if self._confidence < self.config.confidence_threshold and not last:
            log.info("jump_confidence_low", step=self.step_count, confidence=self._confidence)
            return loss, self._end_predict_early(None)
        if last:
            self._enter_correct(taken=self._k)
        return loss, False

    def _end_predict_early(self, event: DivergenceEvent | None) -> bool:
        """A check went wrong (or confidence ran out): settle at the best checked point of the
        path (a line search)."""
        if self._best_k == 0:
            reason = "probe:low_confidence" if event is None else f"probe:{event.signal}"
            self._finish_jump(loss_after=None, gained=None, rolled_back=True, reason=reason)
            self._set_phase(Phase.FULL, self.config.full_steps, reason="jump_failed")
            return True
        kernels.axpy_path(self.theta, self._saved_theta, self._direction,
                          self._best_k / self._horizon)
        self._params_changed()
        self._enter_correct(taken=self._best_k)
        return False

    def _enter_correct(self, taken: int) -> None:
        self._taken = taken
        self.history.restart(self.theta)
        self._set_phase(Phase.CORRECT, self.config.correct_steps, reason="jump_done",
                        taken=self._taken)

    # ------------------------------------------------------------------ judging
    def _judge_jump(self) -> bool:
        """End of Correct: keep the jump if the probe loss is below where it started."""
        loss_after = self._probe_loss()
        spent = self.config.correct_steps
        gained = self.trend.steps_gained(self._loss_before, loss_after, spent)
        if math.isfinite(loss_after):
            self._learn_from_jump(loss_after)
        rolled_back = not (math.isfinite(loss_after) and loss_after <= self._loss_before)
        self._finish_jump(loss_after=loss_after, gained=gained, rolled_back=rolled_back,
                          reason="judged",
                          credited=self.trend.steps_gained_at_least(self._loss_before,
                                                                    loss_after, spent))
        self._set_phase(Phase.FULL, self.config.full_steps, reason="judged")
        return rolled_back

    def _finish_jump(self, *, loss_after: float | None, gained: float | None,
                     rolled_back: bool, reason: str, credited: float | None = None) -> None:
        taken = self._taken if self.phase is Phase.CORRECT else self._k
        if rolled_back:
            self._restore_saved_state()
            self.trajectory_steps = self._saved_traj
            self._rollbacks += 1
            log.warning("rollback", step=self.step_count, reason=reason, horizon=self._horizon,
                        loss_before=self._loss_before, loss_after=loss_after)
        else:
            self._jumps_accepted += 1
        if self.floor is not None:
            # A rolled-back jump loses every full step it discarded; a kept one is credited
            # at the trend's lower bound of its worth (``credited``; negative: kept, but
            # behind where the steps would be): the trend's own estimate proved generous
            # (runs that jumped on credit it had granted missed the target).
            discarded = self._full_count - self._jump_full_count
            self.floor.record(-float(discarded) if rolled_back or credited is None
                              else credited)
        cost = self._cycle_cost()
        self._start_cycle()
        net = None if gained is None else gained - cost
        self.policy.learn(self._arm, self._context, net, taken, self.config.correct_steps,
                          rolled_back)
        if self.config.collect_metrics:
            self.jump_records.append(JumpRecord(
                step=self._jump_start_step, arm=str(self._arm), horizon=self._horizon,
                taken=taken,
                confidence=self._confidence, loss_before=self._loss_before,
                loss_after=loss_after, steps_gained=gained, rolled_back=rolled_back,
                reason=reason, correction=float(np.mean(self._applied_scales)),
                cost_steps=cost,
            ))
        self._probe = None
        self._confidence = 0.0

    # ------------------------------------------------------------------ jump cycle cost
    def _start_cycle(self) -> None:
        t = self._timer
        t.mark = (t.total - t.start_up, t.full, self._backward)

    def _cycle_cost(self) -> float:
        """The engine's own time since the cycle began (a decision point with no jump, or the
        last judged jump), in full steps: what a jump must gain to pay in wall-clock.

        Includes the bookkeeping of the Full phase that fed the jump, the probes and the
        predicted steps; 0 with ``cost_model="steps"``. The figure is averaged over ranks.
        """
        if self.config.cost_model == "steps":
            return 0.0
        t = self._timer
        total0, full0, backward0 = t.mark
        steps = self._backward - backward0
        full = t.full - full0
        if steps <= 0 or full <= 0.0:
            return 0.0
        cost = (t.total - t.start_up - total0) / (full / steps) - steps  # start-up: not a cost
        return float(self.port.all_reduce_mean(max(cost, 0.0)))

    # ------------------------------------------------------------------ bookkeeping
    def _record_all(self, events: list[DivergenceEvent]) -> DivergenceEvent | None:
        """Record every event; the most severe one (``None`` when there is none)."""
        for e in events:
            self._record(e)
        return max(events, key=lambda e: e.level) if events else None

    def _record(self, event: DivergenceEvent) -> None:
        self._events.append(event)
        emit = log.warning if event.level >= Level.WARNING else log.info
        emit("divergence", step=event.step, signal=event.signal,
             level=event.level.name.lower(), value=event.value)

    def _set_phase(self, phase: Phase, length: int, *, reason: str, **extra: Any) -> None:
        log.info("phase_changed", step=self.step_count, frm=self.phase.value, to=phase.value,
                 length=length, reason=reason, **extra)
        self.phase = phase
        self._left = length
