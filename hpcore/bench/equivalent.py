"""The baseline's compute-equivalent frontier for one seed, and a method placed on it.

Shared by the long-run study (:mod:`hpcore.bench.long_study`) and the suite
(:mod:`hpcore.bench.suite`). For a task, schedule and step budget ``T``:

- under a constant rate a shorter budget's run is the longer one's prefix, so one baseline
  run to the longest budget gives every point: its validation points past the first
  :data:`WINDOW` (a run with no more keeps its last), each loss averaged over the
  :data:`WINDOW` points up to it;
- under an annealed schedule (cosine, wsd) each budget of :data:`BUDGETS` (shares of ``T``)
  is a run of its own, its schedule laid over its own budget, its final loss its last point;
  the run at ``T`` is the one the caller took side by side with the methods, the others run
  alone after it.

The (cost, final loss) points give the frontier (:func:`hpcore.bench.frontier.from_runs`) in
backward passes and in seconds; a method's final loss at ``T`` placed on it gives its
compute-equivalent speed-up in each (``None``: beyond the frontier, below every budget's loss).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from hpcore.bench.curves import prefix_points
from hpcore.bench.frontier import Frontier, from_runs
from hpcore.bench.runner import Curve, at_step, run_curve, smoothed
from hpcore.bench.workloads import Task

__all__ = ["BUDGETS", "WINDOW", "BaselineFrontier", "Placed", "baseline_frontier",
           "extra_baseline_steps", "final_loss", "fmt_interval", "frontier_steps", "interval",
           "place"]

# Baseline budgets, as shares of T, for the annealed schedules (each its own run), and the
# longest one for the constant rate (one run, its prefix points).
BUDGETS = (0.6, 0.8, 1.0, 1.25, 1.5)
WINDOW = 3  # validation points averaged under a constant rate (one evaluation is noisy)

Interval = tuple[float | None, float | None, float | None]


class BaselineFrontier(NamedTuple):
    """The frontier by backward passes and by seconds, and the points it was built from."""

    backward: Frontier
    wall: Frontier
    points: dict[str, list[float]]  # "backward", "wall", "loss": one entry a point


class Placed(NamedTuple):
    """A method's final loss at the budget, its cost there and its speed-ups on a frontier."""

    loss: float
    backward: float
    wall: float
    backward_speedup: float | None  # None: beyond the frontier
    wall_speedup: float | None
    beyond: bool


def frontier_steps(schedule: str, steps: int, budgets: Sequence[float] = BUDGETS) -> int:
    """How far the side-by-side baseline runs: to the longest budget under a constant rate
    (its prefix is every shorter budget's run), else to ``steps`` (its own schedule's end)."""
    return max(round(max(budgets) * steps), steps) if schedule == "constant" else steps


def _annealed_budgets(steps: int, budgets: Sequence[float]) -> list[int]:
    """The step counts of the annealed schedules' budgets, in the order given."""
    return [round(share * steps) for share in budgets]


def extra_baseline_steps(schedule: str, steps: int, budgets: Sequence[float] = BUDGETS) -> int:
    """Baseline steps the frontier takes beyond one run to ``steps`` (for a progress bar)."""
    if schedule == "constant":
        return frontier_steps(schedule, steps, budgets) - steps
    return sum(n for n in _annealed_budgets(steps, budgets) if n != steps)


def final_loss(curve: Curve, schedule: str, at: int | None = None) -> float:
    """A run's final loss: under a constant rate averaged over the last WINDOW points (up to
    step ``at``), under an annealed schedule the last point (the run ends annealed)."""
    i = len(curve.steps) - 1 if at is None else at_step(curve, at)
    if schedule == "constant":
        return float(smoothed(curve, WINDOW)[i])
    return float(curve.val_loss[i])


def baseline_frontier(task: Task, *, schedule: str, steps: int, seed: int, lr: float,
                      baseline: Curve, eval_every: int | None = None,
                      budgets: Sequence[float] = BUDGETS,
                      on_step: Callable[[int], None] | None = None) -> BaselineFrontier:
    """The baseline's frontier for one seed. ``baseline`` is the side-by-side run: under a
    constant rate taken to :func:`frontier_steps`, else to ``steps``; an annealed schedule's
    other budgets run here, alone, with the same rate, seed and validation interval.

    Raises:
        ValueError: a constant-rate ``baseline`` stops short of the longest budget.
    """
    if schedule == "constant":
        longest = frontier_steps(schedule, steps, budgets)
        if int(baseline.steps[-1]) < longest:
            msg = (f"a constant-rate frontier needs the baseline run to {longest} steps "
                   f"(got {int(baseline.steps[-1])})")
            raise ValueError(msg)
        first = min(WINDOW, len(baseline.steps) - 1)  # a tiny budget's run: its last point
        p = prefix_points(baseline, WINDOW, first)
        points = list(zip(p["backward"], p["wall"], p["loss"], strict=True))
    else:
        points = []
        for n in _annealed_budgets(steps, budgets):
            c = baseline if n == steps else run_curve(
                task, lr=lr, steps=n, seed=seed, schedule=schedule, eval_every=eval_every,
                on_step=on_step)
            points.append((float(c.backward[-1]), float(c.wall[-1]), final_loss(c, schedule)))
    cost, wall, loss = (np.array(v, dtype=np.float64) for v in zip(*points, strict=True))
    return BaselineFrontier(from_runs(cost, loss), from_runs(wall, loss),
                            {"backward": cost.tolist(), "wall": wall.tolist(),
                             "loss": loss.tolist()})


def place(front: BaselineFrontier, curve: Curve, schedule: str, at: int) -> Placed:
    """``curve``'s final loss at step ``at`` (:func:`final_loss`) on the frontier, against its
    own backward passes and seconds there. A diverged run (a non-finite loss) reads 0: the
    frontier's "beyond" is for losses below the baseline's, not for none at all."""
    i = at_step(curve, at)
    loss = final_loss(curve, schedule, at)
    backward, wall = float(curve.backward[i]), float(curve.wall[i])
    if not math.isfinite(loss):
        return Placed(loss, backward, wall, 0.0, 0.0, False)
    return Placed(loss, backward, wall, front.backward.speedup(loss, backward),
                  front.wall.speedup(loss, wall), front.backward.cost_for(loss) is None)


def interval(values: list[float | None]) -> Interval:
    """(median, low, high) over seeds; ``None`` (beyond the frontier) counts as infinity,
    and reads ``None`` wherever it lands."""
    v = [math.inf if x is None else x for x in values]
    return _finite(statistics.median(v)), _finite(min(v)), _finite(max(v))


def _finite(x: float) -> float | None:
    """``x``, or ``None`` where it is infinite (beyond the frontier)."""
    return None if math.isinf(x) else x


def fmt_interval(iv: Interval) -> str:
    """An :func:`interval` as table text: ``1.20x (0.90x-beyond)``."""
    med, lo, hi = iv
    return f"{_speed(med)} ({_speed(lo)}-{_speed(hi)})"


def _speed(x: float | None) -> str:
    """One speed-up as table text (``None``: beyond the frontier)."""
    return "beyond" if x is None else f"{x:.2f}x"
