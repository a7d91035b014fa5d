"""Value objects the engine hands back: the phase enum, per-step results and run statistics."""

from __future__ import annotations

import enum

import attrs

__all__ = ["Phase", "StepResult", "TrainingStatistics"]


class Phase(enum.Enum):
    """Where the phase machine is (DESIGN section 4)."""

    WARMUP = "warmup"
    FULL = "full"
    PREDICT = "predict"
    CORRECT = "correct"


@attrs.frozen
class StepResult:
    """What one call of ``step(batch)`` did.

    Attributes:
        step: index of this step (0-based, predicted steps included).
        phase: the phase the step ran in.
        loss: the minibatch loss of a full step, the probe loss of a checked predicted step,
            ``None`` for a predicted step without a check.
        was_predicted: the parameters were moved by the predictor, no gradient was computed.
        confidence: the predictor's confidence in the current jump (0 outside Predict).
        rolled_back: this step ended with a rollback to the last good state.
    """

    step: int
    phase: Phase
    loss: float | None
    was_predicted: bool
    confidence: float
    rolled_back: bool


@attrs.frozen
class TrainingStatistics:
    """Counters of a run; ``backward_reduction_pct = 100 * (1 - backward_passes / total_steps)``.

    Attributes:
        total_steps: calls of ``step`` (predicted ones included).
        backward_passes: gradient computations (a forward-only check that had to use the
            gradient function is counted here, honestly).
        forward_only_passes: loss evaluations without a gradient.
        predicted_steps: steps whose update came from the predictor.
        rollbacks: returns to a saved state (judged jumps and critical events).
        jumps: Predict phases started; ``jumps_accepted`` of them were kept.
        divergence_events: count of monitor events by signal name.
        phase_steps: steps spent in each phase, by phase name.
        wall_time_s: time inside ``step`` in all; ``engine_time_s`` the part that is the
            engine's own work (not the framework's forward, backward and optimizer).
        dormant_steps: full steps taken with no bookkeeping while the horizon policy sat out.
        floor_credit: steps jumps may still lose before the run falls below the floor (the
            floor guard's ledger, overhead included); ``None`` with the guard off.
    """

    total_steps: int
    backward_passes: int
    forward_only_passes: int
    predicted_steps: int
    rollbacks: int
    jumps: int
    jumps_accepted: int
    divergence_events: dict[str, int]
    phase_steps: dict[str, int]
    wall_time_s: float
    engine_time_s: float
    dormant_steps: int = 0
    floor_credit: float | None = None

    @property
    def backward_reduction_pct(self) -> float:
        """Share of steps that needed no backward pass, in percent."""
        if self.total_steps == 0:
            return 0.0
        return 100.0 * (1.0 - self.backward_passes / self.total_steps)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready dict, ``backward_reduction_pct`` included."""
        d = attrs.asdict(self)
        d["backward_reduction_pct"] = self.backward_reduction_pct
        return d
