"""Value objects the engine hands back: the phase enum, per-step results and run statistics."""

from __future__ import annotations

import enum

import attrs

__all__ = ["JumpRecord", "Phase", "StepResult", "TrainingStatistics"]


class Phase(enum.Enum):
    """Where the phase machine is (DESIGN section 4)."""

    WARMUP = "warmup"
    FULL = "full"
    PREDICT = "predict"
    CORRECT = "correct"


@attrs.frozen
class StepResult:
    """What one training step did.

    Attributes:
        step: index of this step (0-based, predicted steps included).
        phase: the phase the step ran in.
        loss: the last loss the wrapper read: the minibatch loss of an observed full step,
            otherwise the last known one (never ``None``; ``nan`` before any loss was read).
        was_predicted: the parameters were moved by the predictor, no gradient was computed.
        rolled_back: this step ended with a rollback to the last good state.
    """

    step: int
    phase: Phase
    loss: float
    was_predicted: bool
    rolled_back: bool


@attrs.frozen
class TrainingStatistics:
    """Counters of a run; ``backward_reduction_pct = 100 * (1 - backward_passes / total_steps)``.

    Attributes:
        total_steps: steps taken (predicted ones included).
        backward_passes: full steps (the user's backward and optimizer step).
        forward_only_passes: probe losses taken (calls of the user's ``probe``).
        predicted_steps: steps whose update came from the predictor.
        observed_steps: full steps the trajectory observed (the loss read, the average moved).
        rollbacks: returns to a saved state (judged jumps and critical events).
        jumps: Predict phases started; ``jumps_accepted`` of them were kept.
        divergence_events: count of monitor events by signal name.
        phase_steps: steps spent in each phase, by phase name.
        floor_credit: steps jumps may still lose before the run falls below the floor (the
            floor guard's ledger); ``None`` with the guard off.
    """

    total_steps: int
    backward_passes: int
    forward_only_passes: int
    predicted_steps: int
    observed_steps: int
    rollbacks: int
    jumps: int
    jumps_accepted: int
    divergence_events: dict[str, int]
    phase_steps: dict[str, int]
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


@attrs.frozen
class JumpRecord:
    """How one jump went: where it started, how far it went, how it was judged."""

    step: int
    arm: str
    horizon: int
    taken: int
    confidence: float
    loss_after: float
    steps_gained: float
    rolled_back: bool
