"""The baseline's loss trend, to judge jumps against (DESIGN section 7), as pure functions.

A least-squares line through the most recent ``(full step, loss)`` points of undisturbed full
steps (Warmup and Full, not Correct). Time is counted in full steps (backward passes), the
baseline's own unit. A kept jump re-levels the stored points by what it gained, so the line
stays the real-step trend with the jumps taken out, like the snapshot ring.
"""

from __future__ import annotations

import math

import attrs
import numpy as np

__all__ = ["TrendFit", "TrendState", "add", "fit", "relevel"]


@attrs.frozen
class TrendState:
    """The points of the line: ``steps[i]`` (full-step time) and ``losses[i]``, oldest first."""

    window: int  # most points kept
    steps: tuple[float, ...] = ()
    losses: tuple[float, ...] = ()


@attrs.frozen
class TrendFit:
    """The fitted line: ``level`` at step ``at``, ``slope`` per full step and its standard
    error ``slope_se``, and ``noise``, the residual deviation of one loss about the line."""

    at: float
    level: float
    slope: float
    slope_se: float
    noise: float

    @property
    def significant(self) -> bool:
        """Progress the noise cannot explain: the slope is two standard errors below zero."""
        return self.slope < -2.0 * self.slope_se

    def value(self, step: float) -> float:
        """The line's loss at full step ``step``."""
        return self.level + self.slope * (step - self.at)


def add(state: TrendState, step: float, loss: float) -> TrendState:
    """``state`` with the point ``(step, loss)`` appended (the oldest dropped past ``window``)."""
    keep = state.window - 1
    return attrs.evolve(state, steps=(*state.steps[-keep:], float(step)),
                        losses=(*state.losses[-keep:], float(loss)))


def relevel(state: TrendState, delta: float) -> TrendState:
    """Every stored loss moved by ``delta`` (a kept jump lowered the level by ``-delta``)."""
    return attrs.evolve(state, losses=tuple(v + delta for v in state.losses))


def fit(state: TrendState) -> TrendFit | None:
    """The least-squares line through the points, at the newest one; ``None`` below 3 points.

    Example:
        >>> s = TrendState(window=10)
        >>> for t in range(5):
        ...     s = add(s, t, 10.0 - t)
        >>> f = fit(s)
        >>> round(f.slope, 6), round(f.value(6), 6)
        (-1.0, 4.0)
    """
    if len(state.losses) < 3:
        return None
    t = np.asarray(state.steps)
    y = np.asarray(state.losses)
    tc = t - t.mean()
    denom = float(tc @ tc)
    if denom <= 0:
        return None
    slope = float(tc @ (y - y.mean()) / denom)
    resid = y - y.mean() - slope * tc
    var = float(resid @ resid) / max(len(y) - 2, 1)
    at = float(t[-1])
    level = float(y.mean() + slope * (at - t.mean()))
    return TrendFit(at=at, level=level, slope=slope, slope_se=math.sqrt(var / denom),
                    noise=math.sqrt(var))
