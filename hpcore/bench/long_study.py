"""Long-run studies: the hybrid trainer on the compute-equivalent frontier (DESIGN section 9).

For one task, schedule and step budget ``T``, each seed runs:

- the baseline at several budgets, each with its own schedule laid over its own budget; under
  a constant rate a shorter budget's run is the longer one's prefix, so one run to the longest
  budget gives every point (its validation points, averaged over :data:`WINDOW`);
- the hybrid trainer (its default config, told ``total_steps = T``), side by side with the
  baseline at ``T`` (:func:`hpcore.bench.runner.run_together`), so that the machine's drift
  falls on both.

The baselines' (cost, final loss) points give the frontier (:mod:`hpcore.bench.frontier`), in
backward passes and in seconds; the hybrid's final loss placed on it gives its speed-up in
each. A hybrid that beats every budget measured reads ``None`` (beyond the frontier): the
table says so rather than extrapolate. The learning rate is tuned by a sweep of the plain loop
at ``T`` on a seed that is not reported (:data:`TUNING_SEED`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hpcore.bench.frontier import from_runs
from hpcore.bench.runner import Curve, CurveRun, at_step, run_together, smoothed, tune_lr
from hpcore.bench.workloads import Task
from hpcore.config import HybridTrainerConfig

__all__ = ["BUDGETS", "TUNING_SEED", "WINDOW", "markdown_rows", "seed_study", "summarise", "tune"]

# Baseline budgets, as shares of T, for the annealed schedules (each its own run), and the
# longest one for the constant rate (one run, its prefix points).
BUDGETS = (0.6, 0.8, 1.0, 1.25, 1.5)
WINDOW = 3  # validation points averaged under a constant rate (one evaluation is noisy)
TUNING_SEED = 100  # the sweep's seed: never one of those reported


def _final(curve: Curve, schedule: str, at: int | None = None) -> float:
    """A run's final loss: under a constant rate averaged over the last WINDOW points (up to
    step ``at``), under an annealed schedule the last point (the run ends annealed)."""
    i = len(curve.steps) - 1 if at is None else at_step(curve, at)
    if schedule == "constant":
        return float(smoothed(curve, WINDOW)[i])
    return float(curve.val_loss[i])


def seed_study(task: Task, *, schedule: str, steps: int, seed: int, lr: float,
               config: HybridTrainerConfig | None = None, eval_every: int | None = None,
               budgets: Sequence[float] = BUDGETS,
               on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """One seed: the baseline frontier and the hybrid placed on it (plain numbers)."""
    config = config or HybridTrainerConfig()
    every = eval_every or task.eval_every
    longest = round(max(budgets) * steps)
    kw = {"lr": lr, "seed": seed, "schedule": schedule, "eval_every": every, "on_step": on_step}
    base = CurveRun(task, steps=steps, run_steps=longest if schedule == "constant" else steps,
                    **kw)
    hyb = CurveRun(task, steps=steps, config=config, **kw)
    run_together([base, hyb])
    b, h = base.curve(), hyb.curve()
    points: list[tuple[float, float, float]] = []  # (backward passes, seconds, final loss)
    if schedule == "constant":
        sm = smoothed(b, WINDOW)
        points = [(float(b.backward[i]), float(b.wall[i]), float(sm[i]))
                  for i in range(WINDOW, len(b.steps))]
    else:
        for share in budgets:
            n = round(share * steps)
            if n == steps:
                c = b
            else:
                run = CurveRun(task, steps=n, **kw)
                run.advance(n)
                c = run.curve()
            points.append((float(c.backward[-1]), float(c.wall[-1]), _final(c, schedule)))
    cost, wall, loss = (np.array(v) for v in zip(*points, strict=True))
    by_passes, by_wall = from_runs(cost, loss), from_runs(wall, loss)
    final = _final(h, schedule)
    base_final = _final(b, schedule, at=steps)
    s = h.statistics or {}
    return {
        "seed": seed, "final_val_loss": final, "baseline_val_loss": base_final,
        "final_loss_vs_baseline_pct": 100.0 * (final / base_final - 1.0),
        "backward_passes": float(h.backward[-1]), "wall_s": float(h.wall[-1]),
        "baseline_wall_s": float(b.wall[at_step(b, steps)]),
        "backward_speedup": by_passes.speedup(final, float(h.backward[-1])),
        "wall_speedup": by_wall.speedup(final, float(h.wall[-1])),
        "beyond_frontier": by_passes.cost_for(final) is None,
        "predicted_pct": 100.0 * s.get("predicted_steps", 0) / max(steps, 1),
        "jumps": int(s.get("jumps", 0)), "kept": int(s.get("jumps_accepted", 0)),
        "rollbacks": int(s.get("rollbacks", 0)),
        "frontier": {"backward": cost.tolist(), "wall": wall.tolist(), "loss": loss.tolist()},
        "hybrid_curve": {"steps": h.steps.tolist(), "backward": h.backward.tolist(),
                         "wall": h.wall.tolist(), "val_loss": h.val_loss.tolist()},
        "predict_spans": h.predict_spans,
    }


def tune(task: Task, *, schedule: str, steps: int,
         on_step: Callable[[int], None] | None = None) -> tuple[float, dict[float, float]]:
    """The grid's best learning rate for the plain loop at ``steps``, on :data:`TUNING_SEED`."""
    return tune_lr(task, steps=steps, seed=TUNING_SEED, schedule=schedule, on_step=on_step)


def _interval(values: list[float | None]) -> tuple[float | None, float | None, float | None]:
    """(median, low, high) over seeds; ``None`` (beyond the frontier) counts as infinity."""
    v = [math.inf if x is None else x for x in values]
    med = statistics.median(v)
    return (None if math.isinf(med) else med, min(v), None if math.isinf(max(v)) else max(v))


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and range over seeds of each figure a row shows."""
    out: dict[str, Any] = {"seeds": len(per_seed)}
    for key in ("backward_speedup", "wall_speedup"):
        out[key] = _interval([r[key] for r in per_seed])
    for key in ("final_loss_vs_baseline_pct", "predicted_pct"):
        vals = [r[key] for r in per_seed]
        out[key] = (statistics.median(vals), min(vals), max(vals))
    for key in ("jumps", "kept", "rollbacks"):
        out[key] = sum(r[key] for r in per_seed)
    return out


def _fmt(iv: tuple[float | None, float | None, float | None]) -> str:
    med, lo, hi = iv
    text = lambda x: "beyond" if x is None else f"{x:.2f}x"  # noqa: E731
    return f"{text(med)} ({text(lo)}-{text(hi)})"


def markdown_rows(rows: list[dict[str, Any]]) -> str:
    """The study's table: one row per (task, schedule)."""
    head = ("| workload | schedule | lr | steps | compute-equivalent, backward passes | "
            "compute-equivalent, wall-clock | final loss vs baseline at T | predicted | "
            "jumps kept / rolled back |\n|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        s = r["summary"]
        f, p = s["final_loss_vs_baseline_pct"], s["predicted_pct"]
        lines.append(
            f"| {r['task']} | {r['schedule']} | {r['lr']:g} | {r['steps']} | "
            f"{_fmt(s['backward_speedup'])} | {_fmt(s['wall_speedup'])} | "
            f"{f[0]:+.1f}% ({f[1]:+.1f} to {f[2]:+.1f}) | {p[0]:.0f}% | "
            f"{s['kept']} / {s['rollbacks']} |")
    return "\n".join(lines)
