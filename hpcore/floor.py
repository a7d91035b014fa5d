"""The floor guard: jumps may only risk progress the run can afford to lose (DESIGN section 4).

A conservative-exploration ledger in full-step units (in the spirit of conservative bandits:
explore only while the worst case keeps the learner above a fixed share of the baseline):

- ``(1 - floor) * basis``: the slack a floor allows, over the steps so far (over the whole run
  when ``total_steps`` is known);
- ``+ gained``: what kept jumps gained against the loss trend, at its lower bound;
- ``- spent``: what jumps cost: probes at ``probe_cost`` of a full step each, and the full
  steps a rollback threw away.

A jump starts only when the credit covers its worst case (its Correct steps and its probes,
lost to a rollback). Counted in steps, it reads no clock: a loaded machine cannot fool it, and
with ``total_steps`` known the first jump is allowed as soon as the history is ready.
"""

from __future__ import annotations

import attrs

__all__ = ["FloorState", "credit", "record"]


@attrs.frozen
class FloorState:
    """The ledger: ``gained`` by kept jumps, ``spent`` on probes and rollbacks (full steps)."""

    gained: float = 0.0
    spent: float = 0.0


def credit(state: FloorState, floor: float, steps: int, total_steps: int | None) -> float:
    """Full steps jumps may still lose, ``steps`` steps into the run.

    Example:
        >>> credit(FloorState(), 0.95, 1000, None)
        50.0
        >>> credit(FloorState(gained=10.0, spent=4.0), 0.95, 100, 2000)
        106.0
    """
    basis = float(max(steps, total_steps or 0))
    return (1.0 - floor) * basis + state.gained - state.spent


def record(state: FloorState, *, gained: float = 0.0, spent: float = 0.0) -> FloorState:
    """The ledger after a judged jump (``gained``, may be negative) or a cost (``spent``)."""
    return FloorState(gained=state.gained + gained, spent=state.spent + spent)
