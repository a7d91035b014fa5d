"""LinUCB over jump horizons: how far to jump, or whether to jump at all (DESIGN section 7).

Arms are ``"none"`` (no jump: its reward is 0 by definition, so it starts well known),
forecast horizons, and ``"average"`` (move to the averaged point only, Lookahead-like).
The context is a bias, the predictor's confidence and two normalised state features; the
reward, given when the jump is judged after its Correct phase, is the steps gained against
the baseline trend per full step spent, minus a penalty for a rollback. Pure functions over
a frozen :class:`BanditState` (its small matrices are copied on update).

References:
    Li, Chu, Langford and Schapire, "A Contextual-Bandit Approach to Personalized News
    Article Recommendation", WWW 2010 (disjoint LinUCB, Algorithm 1).
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from hpcore import kernels

__all__ = ["CONTEXT_DIM", "BanditState", "choose", "context_vector", "init", "learn", "reward"]

CONTEXT_DIM = 4
ROLLBACK_PENALTY = 1.0


def context_vector(confidence: float, state: np.ndarray) -> np.ndarray:
    """``[1, confidence, progress_rate z, update_cosine z]`` (see :mod:`hpcore.encoder`)."""
    conf = confidence if math.isfinite(confidence) else 0.0
    return np.array([1.0, conf, state[1] / 3.0, state[5] / 3.0])


@attrs.frozen(eq=False)
class BanditState:
    """Disjoint LinUCB with full matrices.

    ``arms`` the K arm names; ``a_inv`` (K, d, d) float64 inverse design matrices; ``b``
    (K, d) float64 reward-weighted contexts; ``pulls`` (K,) int64 times each arm was judged.
    """

    arms: tuple[int | str, ...]
    alpha: float
    a_inv: np.ndarray
    b: np.ndarray
    pulls: np.ndarray


def init(horizons: list[int], alpha: float = 0.5, prior_reward: float = 0.5,
         average_arm: bool = True) -> BanditState:
    """Arms ``none``, the horizons (longest first) and ``average``; the jump arms start
    optimistic (``prior_reward``), so they are tried before the bandit settles on none.

    Example:
        >>> init([100, 50]).arms
        ('none', 100, 50, 'average')
    """
    arms: list[int | str] = ["none", *sorted(set(horizons), reverse=True)]
    if average_arm:
        arms.append("average")
    k, d = len(arms), CONTEXT_DIM
    a_inv = np.tile(np.eye(d), (k, 1, 1))
    a_inv[0] *= 1e-3  # "none" is known to pay 0
    b = np.zeros((k, d))
    b[1:, 0] = prior_reward
    return BanditState(tuple(arms), float(alpha), a_inv, b, np.zeros(k, dtype=np.int64))


def choose(state: BanditState, context: np.ndarray) -> int | str:
    """The arm with the highest upper confidence bound (ties: the first listed)."""
    scores = kernels.linucb_scores(state.a_inv, state.b, context, state.alpha)
    return state.arms[int(np.argmax(scores))]


def reward(gained: float | None, spent: int, rolled_back: bool) -> float:
    """Steps gained per full step spent, clipped to [-2, 4], minus the rollback penalty."""
    g = -float(spent) if gained is None else gained
    r = float(np.clip(g / max(spent, 1), -2.0, 4.0))
    return r - ROLLBACK_PENALTY if rolled_back else r


def learn(state: BanditState, arm: int | str, context: np.ndarray, gained: float | None,
          spent: int, rolled_back: bool) -> BanditState:
    """The state after ``arm`` played in ``context`` was judged."""
    i = state.arms.index(arm)
    a_inv, b, pulls = state.a_inv.copy(), state.b.copy(), state.pulls.copy()
    kernels.linucb_update(a_inv, b, i, context, reward(gained, spent, rolled_back))
    pulls[i] += 1
    return attrs.evolve(state, a_inv=a_inv, b=b, pulls=pulls)
