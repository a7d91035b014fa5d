"""The baseline's loss curve, fitted on full-phase losses, to judge jumps against (DESIGN section 4)."""

from __future__ import annotations

import math
from collections import deque

import numpy as np

__all__ = ["LossTrend"]


class LossTrend:
    """Least-squares line through the most recent full-phase ``(step, loss)`` points.

    Only losses of undisturbed full steps enter (Warmup and Full, not Correct), so the
    slope says how fast the plain optimizer was making progress before a jump.
    """

    def __init__(self, window: int) -> None:
        self._steps: deque[float] = deque(maxlen=window)  # trajectory step of each loss
        self._losses: deque[float] = deque(maxlen=window)

    def __len__(self) -> int:
        return len(self._losses)

    def add(self, step: float, loss: float) -> None:
        """Record the loss of a full step."""
        self._steps.append(float(step))
        self._losses.append(float(loss))

    def clear(self) -> None:
        """Forget every point (the run was put back to an earlier state)."""
        self._steps.clear()
        self._losses.clear()

    def slope(self) -> float:
        """Loss change per full step (negative while training makes progress); 0 if unknown."""
        return self._fit()[0]

    def _fit(self) -> tuple[float, float]:
        """Least-squares slope and its standard error (``(0, inf)`` if unknown)."""
        if len(self._losses) < 3:
            return 0.0, math.inf
        t = np.asarray(self._steps)
        y = np.asarray(self._losses)
        tc = t - t.mean()
        denom = float(tc @ tc)
        if denom <= 0:
            return 0.0, math.inf
        slope = float(tc @ (y - y.mean()) / denom)
        resid = y - y.mean() - slope * tc
        se = math.sqrt(float(resid @ resid) / max(len(y) - 2, 1) / denom)
        return slope, se

    def steps_gained(self, loss_before: float, loss_after: float, steps_spent: int) -> float:
        """Steps ahead of the baseline after spending ``steps_spent`` full steps.

        The baseline would have lowered the loss by ``-slope * steps_spent``; each unit of
        loss beyond that is worth ``1 / -slope`` steps. Without measurable progress (a slope
        not two standard errors below zero) the answer is +/- ``steps_spent`` by the sign
        of the change.
        """
        drop = loss_before - loss_after
        slope, se = self._fit()
        if not slope < -2.0 * se:  # no progress the noise cannot explain: no rate to divide by
            return float(steps_spent) if drop > 0 else -float(steps_spent)
        return drop / -slope - steps_spent

    def steps_gained_at_least(self, loss_before: float, loss_after: float,
                              steps_spent: int) -> float:
        """A lower bound of :meth:`steps_gained` for a jump that was kept: the drop valued
        at the fastest progress the fit allows (slope two standard errors steeper), and
        nothing gained where no progress is measurable (the trend cannot price a drop)."""
        drop = loss_before - loss_after
        slope, se = self._fit()
        if not slope < -2.0 * se:
            return 0.0 if drop >= 0 else -float(steps_spent)
        return drop / (-slope + 2.0 * se) - steps_spent
