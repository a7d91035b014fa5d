"""LinUCB over jump horizons: how far to jump, or whether to jump at all (DESIGN section 6).

Arms are ``"none"`` (no jump: its reward is 0 by definition, so it starts well known),
forecast horizons, and ``"average"`` (move to the averaged point only, Lookahead-like).
The context is a bias, the predictor's confidence and two normalised state features; the
reward, given when the jump is judged after its Correct phase, is the steps gained against
the baseline trend per full step spent, minus a penalty for a rollback.

References:
    Li, Chu, Langford and Schapire, "A Contextual-Bandit Approach to Personalized News
    Article Recommendation", WWW 2010 (disjoint LinUCB, Algorithm 1).
"""

from __future__ import annotations

import math

import numpy as np

from hpcore import kernels

__all__ = ["CONTEXT_DIM", "HorizonBandit", "context_vector"]

CONTEXT_DIM = 4


def context_vector(confidence: float, state: np.ndarray) -> np.ndarray:
    """``[1, confidence, progress_rate z, update_cosine z]`` (see :mod:`hpcore.encoder`)."""
    conf = confidence if math.isfinite(confidence) else 0.0
    return np.array([1.0, conf, state[1] / 3.0, state[5] / 3.0])


class HorizonBandit:
    """Disjoint LinUCB with full matrices, updated by Sherman-Morrison in the kernel layer.

    Args:
        horizons: forecast horizons (steps) offered as arms, besides "none" and "average".
        alpha: width of the confidence bonus.
        prior_reward: optimistic initial mean reward of the jump arms (so that they are
            tried before the bandit settles on "none").
        rollback_penalty: subtracted from the reward of a jump that was rolled back.
    """

    def __init__(self, horizons: list[int], alpha: float = 0.5, prior_reward: float = 0.5,
                 rollback_penalty: float = 1.0, average_arm: bool = True) -> None:
        self.arms: list[str | int] = ["none", *sorted(set(horizons), reverse=True)]
        if average_arm:
            self.arms.append("average")
        k, d = len(self.arms), CONTEXT_DIM
        self.alpha = alpha
        self.rollback_penalty = rollback_penalty
        self.a_inv = np.tile(np.eye(d), (k, 1, 1))  # (K, d, d) float64 inverse design matrices
        self.b = np.zeros((k, d))  # (K, d) float64 reward-weighted contexts
        # Priors on the bias weight: "none" is known to pay 0; jump arms start optimistic.
        self.a_inv[0] *= 1e-3
        self.b[1:, 0] = prior_reward
        self.pulls = np.zeros(k, dtype=np.int64)  # (K,) times each arm was judged

    @property
    def idle_decisions(self) -> int:
        """Always 0: the bandit decides afresh at every decision point (the engine never goes
        dormant on its account)."""
        return 0

    def choose(self, context: np.ndarray) -> str | int:
        """The arm with the highest upper confidence bound (ties: the first listed)."""
        scores = kernels.linucb_scores(self.a_inv, self.b, context, self.alpha)
        return self.arms[int(np.argmax(scores))]

    def reward(self, steps_gained: float | None, steps_spent: int, rolled_back: bool) -> float:
        """Steps gained per full step spent, clipped to [-2, 4], minus the rollback penalty."""
        gained = -float(steps_spent) if steps_gained is None else steps_gained
        r = float(np.clip(gained / max(steps_spent, 1), -2.0, 4.0))
        return r - self.rollback_penalty if rolled_back else r

    def learn(self, arm: str | int, context: np.ndarray, steps_gained: float | None, taken: int,
              steps_spent: int, rolled_back: bool) -> None:
        """Reward ``arm`` played in ``context`` with the judged outcome of its jump."""
        self.update(arm, context, self.reward(steps_gained, steps_spent, rolled_back))

    def update(self, arm: str | int, context: np.ndarray, reward: float) -> None:
        """Learn ``reward`` for ``arm`` played in ``context``."""
        i = self.arms.index(arm)
        kernels.linucb_update(self.a_inv, self.b, i, context, reward)
        self.pulls[i] += 1

    def state_dict(self) -> dict[str, object]:
        return {"a_inv": self.a_inv.copy(), "b": self.b.copy(), "pulls": self.pulls.copy()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        for name in ("a_inv", "b", "pulls"):
            src = np.asarray(state[name])
            if src.shape != getattr(self, name).shape:
                msg = f"bandit state {name!r} has shape {src.shape}, expected {getattr(self, name).shape}"
                raise ValueError(msg)
        self.a_inv = np.array(state["a_inv"], dtype=np.float64)
        self.b = np.array(state["b"], dtype=np.float64)
        self.pulls = np.array(state["pulls"], dtype=np.int64)
