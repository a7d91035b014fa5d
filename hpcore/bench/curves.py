"""A run's record (:class:`Curve`: validation points against steps, seconds and backward
passes) and what the benchmarks read from it: points at a step, running means, the first
point at a target, time-to-target, the engine's time per step.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np

from hpcore.config import HybridTrainerConfig

__all__ = ["Curve", "at_step", "engine_seconds", "first_reach", "overhead_pct", "prefix_points",
           "smoothed", "step_seconds", "time_to_target", "truncated"]

@attrs.frozen
class Curve:
    """Validation points of one run: steps, wall-clock (s), backward passes, loss, accuracy.

    ``statistics`` is the hybrid trainer's (``None`` for plain loops), ``config`` the config
    it ran with. ``timed_steps`` and ``timed_backward`` count the steps and the full steps
    whose time is in ``wall`` (all of them but JAX's compilation steps; ``None``: all, as
    ``steps[-1]`` and ``backward[-1]`` say): :func:`engine_seconds` prices them.
    """

    label: str
    steps: np.ndarray  # (P,) float64, step of each validation point
    wall: np.ndarray  # (P,) float64, training seconds before it (validation excluded)
    backward: np.ndarray  # (P,) float64, backward passes before it
    val_loss: np.ndarray  # (P,) float64
    val_acc: np.ndarray  # (P,) float64
    predict_spans: list[tuple[int, int]]
    statistics: dict[str, Any] | None
    config: HybridTrainerConfig | None = None
    timed_steps: int | None = None
    timed_backward: int | None = None

    @property
    def steps_timed(self) -> int:
        """Steps whose time is in ``wall[-1]``."""
        return int(self.steps[-1]) if self.timed_steps is None else self.timed_steps

    @property
    def backward_timed(self) -> int:
        """Full steps (backward passes) whose time is in ``wall[-1]``."""
        return int(self.backward[-1]) if self.timed_backward is None else self.timed_backward


def step_seconds(baseline: Curve) -> float:
    """The plain loop's mean step time: its wall clock over its timed (all full) steps."""
    return float(baseline.wall[-1]) / max(baseline.backward_timed, 1)


def engine_seconds(baseline: Curve, other: Curve) -> float:
    """What ``other`` spent beyond its backward passes, in seconds: its wall clock less its
    timed full steps at the baseline's mean step time (:func:`step_seconds`; the two runs
    should be taken side by side). Everything the method adds is in it (module docstring);
    so is the noise of two measured times (it may be below zero)."""
    return float(other.wall[-1]) - other.backward_timed * step_seconds(baseline)


def overhead_pct(baseline: Curve, other: Curve) -> float:
    """:func:`engine_seconds` per step of ``other``, in percent of a baseline step."""
    per_step = engine_seconds(baseline, other) / max(other.steps_timed, 1)
    return 100.0 * per_step / max(step_seconds(baseline), 1e-12)


def at_step(curve: Curve, step: int) -> int:
    """Index of the last validation point at or before ``step``."""
    return max(int(np.searchsorted(curve.steps, step, side="right")) - 1, 0)


def truncated(curve: Curve, step: int) -> Curve:
    """``curve`` up to ``step``: its validation points at or before it and its predicted spans
    cut there, so that a run taken past its budget (``run_steps``) reads as the run at it.

    The timed counts are cut with the steps: the steps left out of the timing (JAX's
    compilation) are taken to lie before ``step``, as a plain loop's do (it compiles on its
    first step). ``statistics`` and ``config`` are the whole run's (the engine keeps no
    history of its counters).

    Raises:
        ValueError: ``step`` is negative.
    """
    if step < 0:
        msg = f"cannot cut a curve at a negative step (got {step})"
        raise ValueError(msg)
    n = at_step(curve, step) + 1
    if n == len(curve.steps):
        return curve
    spans = [(a, min(b, step)) for a, b in curve.predict_spans if a <= step]
    timed_steps = timed_backward = None
    if curve.timed_steps is not None:
        untimed = int(curve.steps[-1]) - curve.timed_steps
        timed_steps = max(int(curve.steps[n - 1]) - untimed, 0)
    if curve.timed_backward is not None:
        untimed = int(curve.backward[-1]) - curve.timed_backward
        timed_backward = max(int(curve.backward[n - 1]) - untimed, 0)
    return attrs.evolve(curve, steps=curve.steps[:n], wall=curve.wall[:n],
                        backward=curve.backward[:n], val_loss=curve.val_loss[:n],
                        val_acc=curve.val_acc[:n], predict_spans=spans,
                        timed_steps=timed_steps, timed_backward=timed_backward)


def smoothed(curve: Curve, window: int) -> np.ndarray:
    """Validation loss averaged over each point and the ``window - 1`` before it (fewer at
    the start): one evaluation's noise should neither set nor meet a target."""
    loss = np.asarray(curve.val_loss, dtype=np.float64)
    if window <= 1:
        return loss
    c = np.cumsum(np.concatenate([[0.0], loss]))
    i = np.arange(1, loss.size + 1)
    lo = np.maximum(i - window, 0)
    return (c[i] - c[lo]) / (i - lo)


def prefix_points(curve: Curve, window: int, first: int) -> dict[str, list[float]]:
    """A constant-rate run's validation points from index ``first`` on, as ``backward``,
    ``wall`` and ``loss`` (averaged over ``window`` points) lists: each is the end of a
    shorter budget's run, so together they give a frontier (:mod:`hpcore.bench.frontier`)."""
    loss = smoothed(curve, window)
    return {"backward": [float(v) for v in curve.backward[first:]],
            "wall": [float(v) for v in curve.wall[first:]],
            "loss": [float(v) for v in loss[first:]]}


def first_reach(curve: Curve, target: float, window: int = 1) -> tuple[float, float, float] | None:
    """``(step, wall, backward)`` of the first validation point whose loss (averaged over
    ``window`` points) is at or below ``target``."""
    hit = np.nonzero(smoothed(curve, window) <= target)[0]
    if hit.size == 0:
        return None
    i = int(hit[0])
    return float(curve.steps[i]), float(curve.wall[i]), float(curve.backward[i])


def time_to_target(baseline: Curve, other: Curve, window: int = 1) -> dict[str, Any]:
    """Speed-ups of ``other`` to the baseline's final validation loss.

    With ``window > 1`` both curves are averaged over ``window`` validation points first:
    the target is the mean of the baseline's last ``window`` points and a curve reaches it
    where its own running mean does (one lucky evaluation of either run moves nothing).

    Returns a dict with ``target_val_loss``, ``reached``, the baseline's and the method's
    wall-clock and backward passes to the target (``method_*``, ``None`` where not reached),
    and ``wall_speedup`` / ``backward_speedup`` (baseline / method; ``None`` where not
    reached). A speed-up above 1 means the method got there first.
    """
    target = float(smoothed(baseline, window)[-1])
    b = first_reach(baseline, target, window)
    if b is None or not math.isfinite(target):
        msg = f"the baseline's final validation loss is {target}: tune its learning rate first"
        raise ValueError(msg)
    h = first_reach(other, target, window)
    out: dict[str, Any] = {"target_val_loss": target, "window": window, "reached": h is not None,
                           "baseline_wall_s": b[1], "baseline_backward": b[2]}
    if h is None:
        out.update(method_wall_s=None, method_backward=None, wall_speedup=None,
                   backward_speedup=None)
    else:
        out.update(method_wall_s=h[1], method_backward=h[2],
                   wall_speedup=b[1] / max(h[1], 1e-12), backward_speedup=b[2] / max(h[2], 1.0))
    return out
