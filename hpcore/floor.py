"""The floor guard: jumps may only risk progress the run can afford to lose (DESIGN section 4).

A conservative-exploration ledger in full-step units (in the spirit of conservative bandits:
explore only while the worst case keeps the learner above a fixed share of the baseline):

- ``(1 - floor) * basis``: the slack a floor allows, over the steps so far (over the whole run
  when ``total_steps`` is known);
- ``+ gained``: what kept jumps gained against the loss trend, at the lower bound of their
  sum (``gained - 2 sqrt(variance)``), and never below zero: a kept jump passed the judge (it
  did not lose ground beyond the noise), and one jump's estimate is noisy and, on a curving
  trend, low (a sum of per-jump lower bounds drained the slack after four or five jumps);
- ``- spent``: what jumps cost: probes at ``probe_cost`` of a full step each, and the full
  steps a rollback threw away.

A jump starts only when the credit covers its worst case (its Correct steps and its probes,
lost to a rollback). Counted in steps, it reads no clock: a loaded machine cannot fool it, and
with ``total_steps`` known the first jump is allowed as soon as the history is ready.
"""

from __future__ import annotations

import math

import attrs

__all__ = ["FloorState", "credit", "record"]


@attrs.frozen
class FloorState:
    """The ledger: ``gained`` by kept jumps (the sum of their estimates, with ``variance`` its
    error's), ``spent`` on probes and rollbacks (full steps)."""

    gained: float = 0.0
    spent: float = 0.0
    variance: float = 0.0


def credit(state: FloorState, floor: float, steps: int, total_steps: int | None) -> float:
    """Full steps jumps may still lose, ``steps`` steps into the run.

    Example:
        >>> round(credit(FloorState(), 0.95, 1000, None), 6)
        50.0
        >>> round(credit(FloorState(gained=10.0, spent=4.0, variance=4.0), 0.95, 100, 2000), 6)
        102.0
        >>> round(credit(FloorState(gained=-30.0, variance=100.0), 0.95, 100, 2000), 6)
        100.0
    """
    basis = float(max(steps, total_steps or 0))
    gained = max(state.gained - 2.0 * math.sqrt(state.variance), 0.0)
    return (1.0 - floor) * basis + gained - state.spent


def record(state: FloorState, *, gained: float = 0.0, spent: float = 0.0,
           gained_se: float = 0.0) -> FloorState:
    """The ledger after a kept jump (``gained`` full steps, may be negative, with standard
    error ``gained_se``) or a cost (``spent``)."""
    return FloorState(gained=state.gained + gained, spent=state.spent + spent,
                      variance=state.variance + gained_se ** 2)
