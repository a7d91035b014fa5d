"""The hybrid core: the controller's actions carried out on the trajectory (DESIGN 4, 5, 8).

:class:`HybridCore` is what every adapter's optimizer wrapper drives: after each of the
user's full steps ``after_full(...)``, for each predicted step ``predicted()``. It turns the
step into an :class:`~hpcore.controller.Observation`, asks the pure controller what comes
next and does it (observe, snapshot, forecast, lay the jump, probe, judge, roll back). The
framework is reached only through an :class:`OptimizerPort`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import attrs
import numpy as np

from hpcore import core_state, kernels
from hpcore._log import get_logger
from hpcore.bandit import context_vector
from hpcore.config import HybridTrainerConfig
from hpcore.controller import Action, Controller, ControllerState, Observation, StepKind
from hpcore.divergence import DivergenceEvent, DivergenceMonitor, Level
from hpcore.encoder import StateEncoder
from hpcore.floor import credit
from hpcore.history import successive_moves
from hpcore.predictors import make_predictor
from hpcore.residual import ResidualStore
from hpcore.trajectory import Trajectory
from hpcore.types import JumpRecord, Phase, StepResult, TrainingStatistics

__all__ = ["HybridCore", "JumpRecord", "OptimizerPort"]

log = get_logger(__name__)


class OptimizerPort(Protocol):
    """What only the framework can do, as the core sees it.

    ``optimizer_state(reuse)`` returns a copy of the inner optimizer's state (moments,
    counters), written into ``reuse`` (the previous copy) where it can, and
    ``load_optimizer_state`` puts one back, keeping the current hyperparameters (a
    schedule counts every step). ``commit_params()`` pushes the flat vector into the model
    where the two cannot share memory, ``sync_params()`` the other way (called only before
    the core reads the vector); ``all_reduce_mean`` averages scalars over processes;
    ``advance_steps(k)`` moves the optimizer's own step counters on by ``k`` (the config's
    ``optimizer_at_jump="advance"``).
    """

    def optimizer_state(self, reuse: Any = None) -> Any: ...

    def load_optimizer_state(self, state: Any) -> None: ...

    def commit_params(self) -> None: ...

    def sync_params(self) -> None: ...

    def all_reduce_mean(self, values: tuple[float, ...]) -> tuple[float, ...]: ...

    def advance_steps(self, steps: int) -> None: ...


def group_offsets(sizes: list[int]) -> np.ndarray:
    """(G + 1,) boundaries of parameter groups of the given sizes in the flat vector."""
    return np.concatenate([[0], np.cumsum(np.asarray(sizes, dtype=np.int64))])


class HybridCore:
    """Controller, trajectory, monitor and learners of one run.

    Args:
        theta: the flat float32 parameter vector (NumPy or CuPy), shared with the model.
        port: the framework's side.
        config: the validated configuration.
        probe: optional zero-argument callable returning a forward-only loss on a fixed probe
            set; called only at checks and judgements.
        offsets: parameter-group boundaries (one group when omitted).
    """

    def __init__(self, theta: Any, port: OptimizerPort, config: HybridTrainerConfig, *,
                 probe: Callable[[], Any] | None = None, offsets: np.ndarray | None = None) -> None:
        if getattr(theta, "ndim", None) != 1 or theta.dtype != np.float32 or theta.shape[0] == 0:
            msg = (f"the flat parameter vector must be a non-empty 1-D float32 array (got "
                   f"shape={getattr(theta, 'shape', None)}, dtype={getattr(theta, 'dtype', None)})")
            raise ValueError(msg)
        if probe is not None and not callable(probe):
            msg = f"probe must be a zero-argument callable returning a loss (got {probe!r})"
            raise TypeError(msg)
        n = theta.shape[0]
        self.offsets = np.array([0, n]) if offsets is None else np.asarray(offsets)
        self.config = config
        self.port = port
        self.probe = probe
        self.predictor = make_predictor(config.predictor)
        self.trajectory = Trajectory(theta, config, self.offsets)
        self.monitor = DivergenceMonitor(config.divergence, config.divergence_threshold,
                                         config.rollback_tolerance)
        self.encoder = StateEncoder()
        self.residuals = (ResidualStore(config.residual_capacity, 6, len(self.offsets) - 1,
                                        config.residual_temperature)
                          if config.residual_capacity > 0 else None)
        kernels.follow_framework_threads()  # the kernels never outnumber torch's threads
        self.controller = Controller(config, self.predictor.min_snapshots, probe is not None)
        self.state: ControllerState = self.controller.init()
        self.trajectory.save(port.optimizer_state())
        self.events: list[DivergenceEvent] = []
        self.jumps: list[JumpRecord] = []
        self.phase_steps = {p.value: 0 for p in Phase}
        self.last_loss = math.nan
        self._pending_probe = math.nan  # the judging probe, taken by before_full
        self._quiet = 0  # quiet full steps still announced by the last action
        self._skipped = 0  # quiet steps taken and not yet folded into the state
        self.key = np.zeros(6)  # state key of the jump in progress

    # ------------------------------------------------------------------ what comes next
    @property
    def need_grads(self) -> bool:
        """The next step is a full one: the user runs forward, backward and the step."""
        return self.state.action.kind is StepKind.FULL

    @property
    def reads_loss(self) -> bool:
        """The next full step's loss will be read (and its gradient norm asked for)."""
        a = self.state.action
        return a.observe or a.probe

    @property
    def reads_grad_norm(self) -> bool:
        """The next full step's gradient norm is used: on the observed steps where the moving
        average moves (every 4th with the defaults), which also check the parameters for
        non-finite values. Taking the norm there only keeps its cost (a pass over the
        gradients and a host sync) off three steps in four."""
        a = self.state.action
        return a.observe and self.trajectory.history.moves_next(a.snapshot)

    @property
    def phase(self) -> Phase:
        """The phase the next step runs in."""
        return self.state.phase

    @property
    def theta(self) -> Any:
        return self.trajectory.theta

    # ------------------------------------------------------------------ steps
    def after_full(self, loss: float = math.nan, grad_norm: float = math.nan, *,
                   bad_step: bool = False, lr: float = math.nan) -> StepResult:
        """After the user's full step: ``loss`` and ``grad_norm`` as read (``nan`` where the
        step was not observed); ``bad_step`` when a non-finite loss or gradient made the
        wrapper skip the optimizer's step; ``lr`` the learning rate the step used, where the
        wrapper can read it (the controller sits jumps out while a schedule anneals)."""
        if self._quiet and not bad_step:  # announced by the controller: only counted
            self._quiet -= 1
            self._skipped += 1
            if loss == loss:  # not nan
                self.last_loss = float(loss)
            return StepResult(self.state.counters.steps + self._skipped - 1, self.state.phase,
                              self.last_loss, False, False)
        self._fold()
        s, a = self.state, self.state.action
        if a.kind is not StepKind.FULL:
            msg = "this step is a predicted one: call the wrapper's step() without a backward"
            raise RuntimeError(msg)
        step, phase = s.counters.steps, s.phase
        nonfinite, snap, level = 0, False, Level.NORMAL
        checked = self.reads_grad_norm  # this step's observe checks the parameters
        if bad_step:
            level = self._record([DivergenceEvent(step, "nan_inf", Level.WARNING, loss)])
            if not checked:  # rare: are the parameters themselves gone? (one pass over N)
                self.port.sync_params()
                nonfinite = int(kernels.vector_stats(self.trajectory.theta)[2])
        if a.observe:
            self.port.sync_params()
            loss, grad_norm = self.port.all_reduce_mean((loss, grad_norm))
            found, snap = self.trajectory.observe(a.snapshot)
            nonfinite = max(nonfinite, found)
            if snap:
                self.predictor.observe_snapshot(self.trajectory.history)
        if nonfinite and (bad_step or math.isnan(loss)):
            level = self._record([DivergenceEvent(step, "nan_inf", Level.CRITICAL, nonfinite)])
        elif a.observe and not bad_step and not math.isnan(loss):  # a loss was given and read
                update_norm, cosine = (successive_moves(self.trajectory.history) if snap
                                       else (math.nan, math.nan))
                self.encoder.observe(loss, grad_norm, update_norm, cosine)
                events = self.monitor.full_step(step, loss, grad_norm, nonfinite,
                                                update_baseline=phase in (Phase.WARMUP, Phase.FULL))
                level = max(level, self._record(events))
        probe = math.nan
        if a.probe:
            probe = self._pending_probe if math.isfinite(self._pending_probe) else self._probe_loss()
        self._pending_probe = math.nan
        if math.isfinite(loss):
            self.last_loss = float(loss)
        obs = Observation(StepKind.FULL, loss=loss, bad_step=bad_step, nonfinite=nonfinite,
                          snapshot=snap, probe_loss=probe, level=level, lr=lr)
        rolled = self._advance(obs)
        self.phase_steps[phase.value] += 1
        return StepResult(step, phase, self.last_loss, False, rolled)

    def before_full(self) -> None:
        """At the start of a full step, before the user's optimizer steps: the probe that
        judges a jump is taken here, so that a probe that raises changes nothing."""
        if self.state.action.probe and self.probe is not None:
            self._pending_probe = self._probe_loss()

    def predicted(self) -> StepResult:
        """A predicted step: the parameters move along the jump; nothing else to compute.

        An exception from the user's probe leaves everything as it was before the call.
        """
        self._fold()
        s, a = self.state, self.state.action
        if a.kind is not StepKind.PREDICTED:
            msg = "this step needs gradients: run the backward pass and pass the loss to step()"
            raise RuntimeError(msg)
        step, h = s.counters.steps, s.jump.horizon
        origin = self._probe_loss() if (a.k == 1 and self.probe is not None) else math.nan
        reference = origin if a.k == 1 else s.jump.probe_before
        self.trajectory.lay(a.k, h)
        self.port.commit_params()
        probe, level = math.nan, Level.NORMAL
        if a.probe:
            try:
                probe = self._probe_loss()
            except BaseException:
                self.trajectory.lay(a.k - 1, h)  # back where the call found it
                self.port.commit_params()
                raise
            level = self._record(self.monitor.probe(step, probe, reference, a.k, 0.0))
        rolled = self._advance(Observation(StepKind.PREDICTED, probe_loss=probe,
                                           origin_probe=origin, level=level))
        self.phase_steps[Phase.PREDICT.value] += 1
        return StepResult(step, Phase.PREDICT, self.last_loss, True, rolled)

    # ------------------------------------------------------------------ carrying out
    def _advance(self, obs: Observation) -> bool:
        """Update the controller and carry out its action; true if it rolled back."""
        before = self.state
        self.state, action = self.controller.update(before, obs)
        rolled = self._act(action, before)
        if action.forecast:
            self.state, action = self.controller.update(self.state, self._forecast())
            rolled = self._act(action, self.state) or rolled
        self._quiet = action.quiet
        return rolled

    def _fold(self) -> None:
        """Bring the controller's state up to date with the quiet steps taken since."""
        if self._skipped:
            self.state = self.controller.skip(self.state, self._skipped)
            self.phase_steps[self.state.phase.value] += self._skipped
            self._skipped = 0

    @property
    def steps(self) -> int:
        """Steps taken so far, predicted ones included."""
        return self.state.counters.steps + self._skipped

    def _act(self, a: Action, before: ControllerState) -> bool:
        t = self.trajectory
        if a.judge or a.save or a.jump or a.restart:
            self.port.sync_params()
        if a.judge:
            self._learn(before, a)
        if a.judge == "rollback":
            self.port.load_optimizer_state(t.rollback(a.drop))
            self.port.commit_params()
        if a.restore:
            self.port.load_optimizer_state(t.restore())
            self.port.commit_params()
            self.monitor.reset()
        if a.settle >= 0:
            t.settle(a.settle, before.jump.horizon)
            self.port.commit_params()
            if self.config.optimizer_at_jump == "advance" and a.settle:
                self.port.advance_steps(a.settle)
        if a.restart:
            t.restart()
        if a.save:
            t.save(self.port.optimizer_state(t.opt_state))
        if a.jump:
            t.start_jump(self.predictor, a.jump, average=a.average, residuals=self.residuals,
                         key=self.key)
        return a.judge == "rollback" or a.restore

    def _forecast(self) -> Observation:
        """The predictor's confidence and the bandit's context at a decision point."""
        confidence = float(self.predictor.confidence(self.trajectory.history))
        self.key = self.encoder.encode()
        context = tuple(float(v) for v in context_vector(confidence, self.key))
        return Observation(StepKind.FORECAST, confidence=confidence, context=context)

    def _learn(self, before: ControllerState, a: Action) -> None:
        """A jump was judged: the predictor and the residual store learn where the trajectory
        really went (one pass over N, before any rollback); the jump is recorded."""
        j = before.jump
        c = self.config
        if j.arm != "average" and j.taken > 0 and math.isfinite(a.after):
            if self.predictor.learns_from_jumps:
                self.predictor.learn_from_jump(self.trajectory.displacement(), j.taken,
                                               j.horizon, c.correct_steps)
            if self.residuals is not None:
                shares = self.trajectory.kept_share(j.taken, j.horizon, c.correct_steps)
                self.residuals.add(self.key, shares, 0.0 if math.isnan(a.gained) else -a.gained)
        if c.collect_metrics:
            self.jumps.append(JumpRecord(
                step=j.start_step, arm=str(j.arm), horizon=j.horizon, taken=j.taken or j.k,
                confidence=j.confidence, loss_after=float(a.after),
                steps_gained=float(a.gained), rolled_back=a.judge == "rollback"))

    def _probe_loss(self) -> float:
        value = self.probe()
        loss = float(value.item() if hasattr(value, "item") else value)
        return float(self.port.all_reduce_mean((loss,))[0])

    def record_bad_steps(self, count: int) -> None:
        """``count`` earlier full steps had a non-finite loss or gradient and were skipped
        (a wrapper that checks on the device learns it at the next observed step)."""
        self._record([DivergenceEvent(self.steps, "nan_inf", Level.WARNING, math.nan)] * count)

    def _record(self, events: list[DivergenceEvent]) -> Level:
        """Record every event; the most severe level."""
        for e in events:
            self.events.append(e)
            emit = log.warning if e.level >= Level.WARNING else log.info
            emit("divergence", step=e.step, signal=e.signal, level=e.level.name.lower(),
                 value=e.value)
        return max((e.level for e in events), default=Level.NORMAL)

    # ------------------------------------------------------------------ reporting
    def statistics(self) -> TrainingStatistics:
        """Counters of the run so far."""
        self._fold()
        n = self.state.counters
        by_signal: dict[str, int] = {}
        for e in self.events:
            by_signal[e.signal] = by_signal.get(e.signal, 0) + 1
        c = self.config
        return TrainingStatistics(
            total_steps=n.steps, backward_passes=n.full, forward_only_passes=n.probes,
            predicted_steps=n.predicted, observed_steps=self.encoder.seen,
            rollbacks=n.rollbacks, jumps=n.jumps, jumps_accepted=n.kept,
            divergence_events=by_signal, phase_steps=dict(self.phase_steps),
            floor_credit=None if c.floor is None else credit(self.state.floor, c.floor, n.steps,
                                                             c.total_steps))

    def metrics(self) -> dict[str, Any]:
        """Statistics, config, jumps and events as one JSON-ready dict."""
        config = attrs.asdict(self.config)
        config["predictor"]["kind"] = type(self.config.predictor).__name__
        return {"statistics": self.statistics().to_dict(), "config": config,
                "jumps": [attrs.asdict(j) for j in self.jumps],
                "divergence_events": [{"step": e.step, "signal": e.signal,
                                       "level": e.level.name.lower(), "value": e.value}
                                      for e in self.events]}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything the core needs to resume, as arrays (copies), numbers and strings; the
        inner optimizer's saved state (for a rollback) is returned as the port gave it."""
        self._fold()
        return core_state.dump(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`. A refused state (``ValueError``, whatever went wrong
        inside) leaves the core exactly as it was."""
        backup = self.state_dict()
        try:
            core_state.restore(self, state)
            self._quiet = 0  # the next step asks the controller
        except Exception as exc:
            core_state.restore(self, backup)
            if isinstance(exc, ValueError):
                raise
            msg = f"the hybrid state could not be loaded ({exc!r}); nothing was changed"
            raise ValueError(msg) from exc
