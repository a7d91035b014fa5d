"""Value types of the controller: what a step reports and what comes next (DESIGN section 4).

Small frozen attrs classes over scalars; the controller's state is built of them, so a
checkpoint stores it as plain data (:mod:`hpcore.state_io`) and :func:`check_state` refuses a
loaded one that this config could not have produced.
"""

from __future__ import annotations

import enum
import math

import attrs

from hpcore import floor as ledger
from hpcore import horizon, trend
from hpcore.config import HybridTrainerConfig
from hpcore.divergence import Level
from hpcore.types import Phase

__all__ = ["PLAIN_ACTIONS", "Action", "ControllerState", "Counters", "JumpState", "Observation",
           "StepKind", "check_state"]


class StepKind(enum.Enum):
    """What an observation reports, and what the next step is."""

    FULL = "full"  # the user's forward, backward and optimizer step
    PREDICTED = "predicted"  # no forward, no backward: theta moved along the jump
    FORECAST = "forecast"  # the predictor's confidence at a decision point (no step)


@attrs.frozen
class Observation:
    """What the last step (or forecast) produced; ``nan`` where nothing was read.

    ``bad_step``: the loss or gradient was non-finite and the optimizer's step was skipped;
    ``nonfinite``: non-finite parameters seen by the trajectory; ``level``: the divergence
    monitor's verdict on the step or probe.
    """

    kind: StepKind
    loss: float = math.nan
    bad_step: bool = False
    nonfinite: int = 0
    snapshot: bool = False
    probe_loss: float = math.nan
    origin_probe: float = math.nan  # the probe at a jump's origin, with its first step
    confidence: float = math.nan
    context: tuple[float, ...] = ()
    level: Level = Level.NORMAL
    lr: float = math.nan  # the learning rate the step used, where the wrapper can read it


@attrs.frozen
class Action:
    """What the next step is, and what the trajectory does before it.

    Attributes:
        kind: the next step's kind (``FULL`` or ``PREDICTED``).
        observe: read the next full step's loss and move the moving average.
        snapshot: push a snapshot after observing the next full step.
        restart: start the history afresh at the current parameters, now.
        forecast: report the predictor's confidence now (a ``FORECAST`` observation).
        jump: start a jump of this horizon now (0: none): save the origin, compute ``D``.
        average: the jump goes to the averaged point (``D = ema - theta``) instead.
        k: lay predicted step ``k`` of the jump on the next (predicted) step.
        probe: take a probe loss after the next step.
        settle: end the jump at predicted step ``settle`` (``theta = theta_0 + settle/H D``,
            snapshots shifted by that displacement); -1: no.
        judge: ``"keep"`` or ``"rollback"`` the judged jump (rollback: origin, optimizer
            state, the ring un-shifted and its ``drop`` newest snapshots dropped).
        restore: back to the last good state (a critical event outside a jump).
        save: the current state becomes the last good state.
    """

    kind: StepKind = StepKind.FULL
    observe: bool = False
    snapshot: bool = False
    restart: bool = False
    forecast: bool = False
    jump: int = 0
    average: bool = False
    k: int = 0
    probe: bool = False
    settle: int = -1
    judge: str = ""
    drop: int = 0
    restore: bool = False
    save: bool = False
    # The full steps after the next one that need nothing but counting (not observed, no
    # decision): the core may take them without asking (Controller.skip folds them in).
    quiet: int = 0
    # The judged jump's steps gained against the trend and its loss after Correct (reported,
    # not compared: nan is never equal to itself).
    gained: float = attrs.field(default=math.nan, eq=False)
    after: float = attrs.field(default=math.nan, eq=False)


# The four actions of an ordinary full step, built once (the hot path allocates none).
PLAIN_ACTIONS = {(o, sn): Action(observe=o, snapshot=sn) for o in (False, True) for sn in (False, True)}


@attrs.frozen
class Counters:
    """Steps of each kind so far, and what jumps did."""

    steps: int = 0  # every step, predicted ones included
    full: int = 0  # full steps (backward passes): the trend's time axis
    predicted: int = 0
    jumps: int = 0
    kept: int = 0
    rollbacks: int = 0
    probes: int = 0


@attrs.frozen
class JumpState:
    """The jump in progress, from its decision point to its judgement."""

    arm: int | str
    horizon: int
    start_step: int  # step index of the first predicted step
    start_full: int  # full steps before the jump
    confidence: float
    context: tuple[float, ...]
    probe_before: float  # probe loss at the origin (nan without a probe)
    k: int = 0  # predicted steps laid
    taken: int = 0  # predicted steps kept when the jump settled
    best_k: int = 0
    best_probe: float = math.inf
    pushed: int = 0  # snapshots pushed since the jump started
    loss_sum: float = 0.0  # training losses of the Correct steps
    loss_n: int = 0


@attrs.frozen
class ControllerState:
    """Where the run is: phase and steps left in it, the history's fill, the ledgers."""

    phase: Phase
    left: int
    counters: Counters
    observing: bool  # the history is live (observed steps feed it)
    since_snapshot: int  # observed steps since the last snapshot
    snapshots: int  # valid snapshots in the ring
    trend: trend.TrendState
    floor: ledger.FloorState
    policy: horizon.PolicyState
    jump: JumpState | None = None
    action: Action = Action()  # in force for the next step
    lr: float = 0.0  # the last learning rate read (0: none yet, or the wrapper reads none)
    peak_lr: float = 0.0  # the highest one read


def check_state(state: object, config: HybridTrainerConfig) -> None:
    """Refuse (``ValueError``) a controller state that this config could not have produced:
    wrong types, negative counters, a jump that does not fit its phase (a loaded file)."""

    def bad(what: str) -> ValueError:
        return ValueError(f"controller state: {what}")

    if not isinstance(state, ControllerState):
        raise bad(f"not a ControllerState (got {type(state).__name__})")
    if not isinstance(state.phase, Phase) or not isinstance(state.action, Action):
        raise bad("phase or action of the wrong type")
    n = state.counters
    if not isinstance(n, Counters):
        raise bad("counters of the wrong type")
    for f in attrs.fields(Counters):
        v = getattr(n, f.name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise bad(f"counter {f.name!r} must be an int >= 0 (got {v!r})")
    if n.full + n.predicted != n.steps or n.kept > n.jumps:
        raise bad(f"counters disagree (steps {n.steps}, full {n.full}, predicted {n.predicted}, "
                  f"jumps {n.jumps}, kept {n.kept})")
    for name in ("left", "since_snapshot", "snapshots"):
        v = getattr(state, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise bad(f"{name!r} must be an int >= 0 (got {v!r})")
    if state.snapshots > config.history_size:
        raise bad(f"{state.snapshots} snapshots in a ring of {config.history_size}")
    rates = (state.lr, state.peak_lr)
    if not all(isinstance(v, float) and math.isfinite(v) and v >= 0 for v in rates) \
            or state.lr > state.peak_lr:
        raise bad(f"learning rates {rates!r} must be finite floats >= 0, the last <= the peak")
    in_jump = state.phase in (Phase.PREDICT, Phase.CORRECT)
    j = state.jump
    if in_jump != isinstance(j, JumpState):
        raise bad(f"phase {state.phase.value} with jump {j!r}")
    if j is not None and not (isinstance(j.horizon, int) and 1 <= j.horizon <= config.max_predict_steps
                              and isinstance(j.k, int) and 0 <= j.k <= j.horizon):
        raise bad(f"jump of horizon {j.horizon!r} at step {j.k!r}")
    if not isinstance(state.trend, trend.TrendState) or not isinstance(state.floor, ledger.FloorState):
        raise bad("trend or floor ledger of the wrong type")
    if len(state.trend.steps) != len(state.trend.losses) or not all(
            isinstance(v, float) and math.isfinite(v) for v in (*state.trend.steps, *state.trend.losses)):
        raise bad("trend points must be finite floats, as many steps as losses")
