"""The floor guard: jumps may only risk progress the run can afford to lose.

A conservative-exploration ledger (in the spirit of conservative bandits: explore only while
the worst case keeps the learner above a fixed share of the baseline). The baseline is the
plain loop; everything is counted in its unit, full steps:

- ``alpha * steps``: the slack a floor of ``1 - alpha`` allows over the steps so far (over
  the whole run when its length is known);
- ``+ realized``: what judged jumps gained against the loss trend, at its lower bound
  (:meth:`hpcore.trend.LossTrend.steps_gained_at_least`; a rolled-back jump loses the full
  steps it discarded);
- ``- overhead``: the engine's own time beyond the full steps (bookkeeping, probe forward
  passes, predicted steps, the guard of dormant steps), in units of a full step; with the run's
  length known, the overhead of the steps still to come is reserved as well.

A jump is started only when this credit covers its worst case (its Correct steps and probe
forward passes, lost to a rollback): so, up to the accuracy of the loss trend that values a
kept jump, the trainer keeps ``floor`` of the plain loop's progress per unit of time, as far
as its own decisions go. Where sitting out alone costs more than the slack (a model whose
step is not much longer than the engine's per-step guard) no jump is ever affordable and the
floor is out of the engine's reach.
"""

from __future__ import annotations

import math

__all__ = ["FloorGuard"]


class FloorGuard:
    """The ledger of what jumps have gained and lost, against what the floor allows.

    Args:
        floor: share of the plain loop's progress per unit of time the run must keep
            (``alpha = 1 - floor`` is the slack jumps and the engine's time may spend).
        total_steps: the run's length when known: the slack is then the whole run's (the
            floor holds at its end); otherwise it grows with the steps taken (the floor
            holds at every step).
    """

    def __init__(self, floor: float, total_steps: int | None = None) -> None:
        self.alpha = 1.0 - floor
        self.total_steps = total_steps
        self.realized = 0.0  # steps gained (+) or lost (-) by judged jumps

    def credit(self, steps: int, overhead: float, rate: float) -> float:
        """Steps jumps may still lose, ``steps`` full steps and ``overhead`` full steps' worth
        of engine time into the run; ``rate`` is the overhead per step to expect from here on
        (reserved for the rest of the run when its length is known)."""
        basis = float(steps)
        projected = overhead
        if self.total_steps is not None and self.total_steps > steps:
            basis = float(self.total_steps)
            projected += rate * (self.total_steps - steps)
        return self.alpha * basis + self.realized - projected

    def steps_until(self, deficit: float, rate: float) -> float:
        """Full steps without a jump until the credit grows by ``deficit`` at overhead
        ``rate`` per step; ``inf`` when it does not grow (the slack is the whole run's
        already, or the overhead eats it)."""
        growth = self.alpha - rate
        if self.total_steps is not None or growth <= 0.0:
            return math.inf
        return deficit / growth

    def record(self, realized: float) -> None:
        """A jump was judged: ``realized`` steps gained (negative: lost)."""
        self.realized += realized
