"""Horizon policies: how far the next jump goes, or whether to jump (DESIGN section 7).

Each policy is an ``init`` / ``choose`` / ``learn`` triple over a small frozen state, so the
controller composes it and a checkpoint is simply its state:

- **doubling** (default): the first jump is the longest (a jump of the line is worth about
  the same whatever its horizon up to 200 steps, DESIGN 2). A rollback (a jump judged behind
  the trend beyond the judge's margin) halves the horizon and sits out a back-off that
  doubles with every failure in a row: where jumps stop paying, as on a plateau, it sits out
  longer and longer. One kept jump's worth is lost in the loss's noise (late in a run a
  Correct phase's mean loss has an error of a few hundred steps' progress), so the policy
  pools the evidence of the kept jumps since its last change: the pooled share of skipped
  steps delivered reaching ``GOOD_RATIO``, or ``REGROW_JUMPS`` jumps that pooled lost no
  ground against the trend, doubles the horizon. Pooled jumps behind the trend do not halve
  it: the judged loss, read soon after a jump against a trend fitted through earlier
  recoveries, errs against the jump, and halving on it cost a fifth of the speed-up on four
  tuning seeds (``benchmarks/RESULTS.md``);
- **linucb**: a contextual bandit (:mod:`hpcore.bandit`).
"""

from __future__ import annotations

import attrs
import numpy as np

from hpcore import bandit
from hpcore.config import HybridTrainerConfig

__all__ = ["Arm", "DoublingState", "PolicyState", "choose", "init", "learn"]

Arm = int | str  # a horizon in steps, "none" (no jump) or "average" (to the averaged point)
GOOD_RATIO = 0.6  # share of the skipped steps the pooled jumps must deliver to double it
REGROW_JUMPS = 2  # or this many kept jumps, pooled, that lost no ground against the trend


@attrs.frozen
class DoublingState:
    """``horizon`` of the next jump; ``pause`` decision points to sit out; ``backoff`` the
    length of the next pause. The pool, over the kept jumps since the horizon last changed:
    ``jumps`` kept, ``gained`` steps of ``taken`` skipped (where the trend's rate was known),
    and ``ahead``, their loss below the trend."""

    max_horizon: int
    min_horizon: int
    horizon: int
    pause: int = 0
    backoff: int = 1
    jumps: int = 0
    gained: float = 0.0
    taken: int = 0
    ahead: float = 0.0


PolicyState = DoublingState | bandit.BanditState


def init(config: HybridTrainerConfig) -> PolicyState:
    """The configured policy's first state."""
    longest = config.max_predict_steps
    shortest = min(longest, config.check_interval)
    if config.horizon_policy == "doubling":
        return DoublingState(longest, shortest, longest)
    horizons = [longest]
    while horizons[-1] // 2 >= shortest:
        horizons.append(horizons[-1] // 2)
    return bandit.init(horizons, alpha=config.bandit_alpha)


def idle_decisions(state: PolicyState) -> int:
    """Decision points from here at which the policy will not jump (0 for the bandit)."""
    return state.pause if isinstance(state, DoublingState) else 0


def choose(state: PolicyState, context: np.ndarray) -> tuple[PolicyState, Arm]:
    """The arm for this decision point, and the state after choosing it."""
    if isinstance(state, bandit.BanditState):
        return state, bandit.choose(state, context)
    if state.pause > 0:
        return attrs.evolve(state, pause=state.pause - 1), "none"
    return state, state.horizon


def learn(state: PolicyState, arm: Arm, context: np.ndarray, gained: float | None, taken: int,
          spent: int, rolled_back: bool, *, ahead: float = 0.0,
          rate_known: bool = True) -> PolicyState:
    """The state after a jump was judged: ``gained`` steps of ``taken`` skipped survived,
    after ``spent`` full steps of Correct; its loss was ``ahead`` below the trend's;
    ``rate_known`` says whether the trend's rate could price it in steps."""
    if isinstance(state, bandit.BanditState):
        return bandit.learn(state, arm, context, gained, spent, rolled_back)
    if rolled_back or gained is None:
        return _halve(state)
    pool = attrs.evolve(state, jumps=state.jumps + 1, ahead=state.ahead + ahead,
                        gained=state.gained + (gained if rate_known else 0.0),
                        taken=state.taken + (taken if rate_known else 0))
    paid = pool.taken and pool.gained / pool.taken >= GOOD_RATIO
    held = pool.jumps >= REGROW_JUMPS and pool.ahead >= 0.0  # no ground lost, pooled
    if (paid or held) and state.horizon < state.max_horizon:
        return attrs.evolve(_fresh(state), horizon=min(state.max_horizon, 2 * state.horizon))
    return attrs.evolve(pool, backoff=1) if pool.ahead >= 0.0 else pool


def _fresh(state: DoublingState) -> DoublingState:
    """``state`` with an empty pool and no back-off (the horizon changes)."""
    return attrs.evolve(state, jumps=0, gained=0.0, taken=0, ahead=0.0, backoff=1)


def _halve(state: DoublingState) -> DoublingState:
    """Half the horizon, and a pause whose length doubles with every failure in a row."""
    return attrs.evolve(_fresh(state), horizon=max(state.min_horizon, state.horizon // 2),
                        pause=state.backoff, backoff=min(2 * state.backoff, 64))
