"""The compute-equivalent frontier (DESIGN section 9): what the baseline needs for a loss.

Baseline runs at several budgets give their final loss against their cost (backward passes,
or seconds); the lower envelope of those points, linearly interpolated, is the frontier. A
method's final loss placed on it gives the cost the baseline would need; divided by the
method's own cost, that is its compute-equivalent speed-up. Under a constant learning rate a
shorter budget's run is the longer run's prefix, so one run's curve gives the whole frontier;
an annealed schedule needs one run per budget (each with its own schedule).
"""

from __future__ import annotations

import math

import attrs
import numpy as np

__all__ = ["Frontier", "from_runs"]


@attrs.frozen(eq=False)
class Frontier:
    """Points ``(cost[i], loss[i])`` of the lower envelope, cost rising, loss falling."""

    cost: np.ndarray  # (P,) float64
    loss: np.ndarray  # (P,) float64

    def cost_for(self, loss: float) -> float | None:
        """The least cost at which the frontier reaches ``loss`` (interpolated); ``None``
        where it never does (the method beats every budget measured).

        Example:
            >>> f = from_runs([100, 200, 400], [1.0, 0.5, 0.25])
            >>> f.cost_for(0.75), f.cost_for(0.1), f.cost_for(2.0)
            (150.0, None, 100.0)
        """
        if not math.isfinite(loss) or self.cost.size == 0 or loss < self.loss[-1]:
            return None
        if loss >= self.loss[0]:
            return float(self.cost[0])
        i = int(np.nonzero(self.loss <= loss)[0][0])  # first point at or below
        c0, c1, l0, l1 = self.cost[i - 1], self.cost[i], self.loss[i - 1], self.loss[i]
        return float(c0 + (c1 - c0) * (l0 - loss) / (l0 - l1))

    def speedup(self, loss: float, cost: float) -> float | None:
        """Compute-equivalent speed-up of a method that reached ``loss`` for ``cost``
        (``None`` where the frontier does not reach that loss)."""
        need = self.cost_for(loss)
        return None if need is None or cost <= 0 else need / cost


def from_runs(costs: list[float] | np.ndarray, losses: list[float] | np.ndarray) -> Frontier:
    """The frontier of baseline ``(cost, final loss)`` points: sorted by cost, each point kept
    only if its loss is below every cheaper one's (the lower envelope). For one
    constant-rate run, pass its validation points (losses averaged over a few, so that one
    lucky evaluation does not set it): each is the end of a shorter budget's run."""
    c = np.asarray(costs, dtype=np.float64)
    v = np.asarray(losses, dtype=np.float64)
    if c.shape != v.shape or c.ndim != 1:
        msg = f"costs and losses must be 1-D of one length (got {c.shape} and {v.shape})"
        raise ValueError(msg)
    ok = np.isfinite(c) & np.isfinite(v)
    order = np.argsort(c[ok], kind="stable")
    c, v = c[ok][order], v[ok][order]
    keep = v < np.minimum.accumulate(np.concatenate([[np.inf], v[:-1]]))
    return Frontier(c[keep], v[keep])
