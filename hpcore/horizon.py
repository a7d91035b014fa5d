"""Horizon policy: how far the next jump goes, learned from how the last ones were judged.

Multiplicative and cautious: the first jump is the shortest useful one; a jump that paid for
most of its skipped steps doubles the horizon; a jump that lost ground (or was rolled back)
halves it and sits out a back-off that doubles with every failure in a row. While the
policy sits out, the engine goes dormant (DESIGN section 6: where jumps do not pay, the
cost is only the guard).
"""

from __future__ import annotations

import math

__all__ = ["HorizonPolicy"]


class HorizonPolicy:
    """State: the current horizon, and the decision points to sit out before the next jump.

    Args:
        max_horizon: the longest jump.
        min_horizon: the shortest jump; also the first one.
        good_ratio: share of the skipped steps a jump must deliver to double the horizon.
    """

    def __init__(self, max_horizon: int, min_horizon: int, good_ratio: float = 0.6) -> None:
        self.max_horizon = max_horizon
        self.min_horizon = min(min_horizon, max_horizon)
        self.good_ratio = good_ratio
        self.horizon = self.min_horizon
        self.pause = 0  # decision points to skip before jumping again
        self.backoff = 1  # length of the next pause

    @property
    def idle_decisions(self) -> int:
        """Decision points after the current one at which the policy will not jump."""
        return self.pause

    def choose(self, context: object = None) -> int | str:
        """Horizon of the next jump, ``"none"`` for no jump at this decision point."""
        if self.pause > 0:
            self.pause -= 1
            return "none"
        return self.horizon

    def learn(self, arm: int | str, context: object, steps_gained: float | None, taken: int,
              steps_spent: int, rolled_back: bool) -> None:
        """Learn from a judged jump: ``steps_gained`` of ``taken`` skipped steps survived."""
        gained = -math.inf if steps_gained is None else steps_gained
        ratio = gained / max(taken, 1)
        if not rolled_back and ratio >= self.good_ratio:
            self.horizon = min(self.max_horizon, 2 * self.horizon)
            self.backoff = 1
            return
        if not rolled_back and ratio >= 0:
            return  # paid for itself, if not much: keep the horizon
        self.horizon = max(self.min_horizon, self.horizon // 2)
        self.pause = self.backoff
        self.backoff *= 2
