"""Horizon policies: how far the next jump goes, or whether to jump (DESIGN section 7).

Each policy is an ``init`` / ``choose`` / ``learn`` triple over a small frozen state, so the
controller composes it and a checkpoint is simply its state:

- **doubling** (default): the first jump is the longest (a jump of the line is worth about
  the same whatever its horizon up to 200 steps, DESIGN 2); a jump that paid most of its
  skipped steps doubles the horizon; one that lost ground (or was rolled back) halves it and
  sits out a back-off that doubles with every failure in a row (where jumps stop paying, on a
  plateau, it sits out longer and longer);
- **linucb**: a contextual bandit (:mod:`hpcore.bandit`).
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from hpcore import bandit
from hpcore.config import HybridTrainerConfig

__all__ = ["Arm", "DoublingState", "PolicyState", "choose", "init", "learn"]

Arm = int | str  # a horizon in steps, "none" (no jump) or "average" (to the averaged point)
GOOD_RATIO = 0.6  # share of the skipped steps a jump must deliver to double the horizon


@attrs.frozen
class DoublingState:
    """``horizon`` of the next jump; ``pause`` decision points to sit out; ``backoff`` the
    length of the next pause."""

    max_horizon: int
    min_horizon: int
    horizon: int
    pause: int = 0
    backoff: int = 1


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
          spent: int, rolled_back: bool) -> PolicyState:
    """The state after a jump was judged: ``gained`` steps of ``taken`` skipped survived,
    after ``spent`` full steps of Correct."""
    if isinstance(state, bandit.BanditState):
        return bandit.learn(state, arm, context, gained, spent, rolled_back)
    ratio = (-math.inf if gained is None else gained) / max(taken, 1)
    if not rolled_back and ratio >= GOOD_RATIO:
        return attrs.evolve(state, horizon=min(state.max_horizon, 2 * state.horizon), backoff=1)
    if not rolled_back and ratio >= 0:
        return state  # paid for itself, if not much: keep the horizon
    return attrs.evolve(state, horizon=max(state.min_horizon, state.horizon // 2),
                        pause=state.backoff, backoff=min(2 * state.backoff, 64))
