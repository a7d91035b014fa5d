"""The floor guard: jumps may only risk progress the run can afford to lose.

A conservative-exploration ledger (in the spirit of conservative bandits: explore only while
the worst case keeps the learner above a fixed share of its safe policy). The safe policy is
the engine sitting out, dormant: the plain loop plus a finiteness check per step. Everything
is counted in full steps, the unit the plain loop progresses in:

- ``alpha * steps``: the slack a floor of ``1 - alpha`` allows over the steps so far (over
  the whole run when its length is known);
- ``+ realized``: what judged jumps gained against the loss trend (a rolled-back jump loses
  the full steps it discarded);
- ``- excess``: the engine's time beyond what sitting out would have cost (bookkeeping for
  the forecast, probe forward passes, predicted steps), in units of a full step.

A jump is started only when this credit covers its worst case (its Correct steps and probe
forward passes, lost to a rollback): so, up to the accuracy of the loss trend that values a
kept jump, jumping never costs more than ``1 - floor`` of the run against sitting out.
"""

from __future__ import annotations

import math

__all__ = ["FloorGuard"]


class FloorGuard:
    """The ledger of what jumps have gained and lost, against what the floor allows.

    Args:
        floor: share of the safe policy's progress per unit of time the run must keep
            (``alpha = 1 - floor`` is the slack jumps may spend).
        total_steps: the run's length when known: the slack is then the whole run's (the
            floor holds at its end); otherwise it grows with the steps taken (the floor
            holds at every step).
    """

    def __init__(self, floor: float, total_steps: int | None = None) -> None:
        self.alpha = 1.0 - floor
        self.total_steps = total_steps
        self.realized = 0.0  # steps gained (+) or lost (-) by judged jumps

    def credit(self, steps: int, excess: float) -> float:
        """Steps jumps may still lose, ``steps`` full steps into the run, after ``excess``
        full steps' worth of engine time beyond the safe policy's."""
        basis = float(max(steps, self.total_steps or 0))
        return self.alpha * basis + self.realized - excess

    def steps_until(self, deficit: float) -> float:
        """Full steps without a jump until the credit grows by ``deficit`` (``inf`` when the
        slack is the whole run's already: waiting adds none)."""
        if self.total_steps is not None or self.alpha <= 0.0:
            return math.inf
        return deficit / self.alpha

    def record(self, realized: float) -> None:
        """A jump was judged: ``realized`` steps gained (negative: lost)."""
        self.realized += realized
