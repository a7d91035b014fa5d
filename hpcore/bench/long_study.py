"""Long-run studies: the hybrid trainer on the compute-equivalent frontier (DESIGN section 9).

For one task, schedule and step budget ``T``, each seed runs:

- the baseline at several budgets, each with its own schedule laid over its own budget; under
  a constant rate a shorter budget's run is the longer one's prefix, so one run to the longest
  budget gives every point (its validation points, averaged over :data:`WINDOW`);
- the hybrid trainer (its default config, told ``total_steps = T``), side by side with the
  baseline at ``T`` (:func:`hpcore.bench.runner.run_together`), so that the machine's drift
  falls on both.

The baselines' (cost, final loss) points give the frontier (:mod:`hpcore.bench.frontier`, built
by :func:`hpcore.bench.equivalent.baseline_frontier`, which the suite shares), in
backward passes and in seconds; the hybrid's final loss placed on it gives its speed-up in
each. A hybrid that beats every budget measured reads ``None`` (beyond the frontier): the
table says so rather than extrapolate. The learning rate is tuned by a sweep of the plain loop
at ``T`` on a seed that is not reported (:data:`TUNING_SEED`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from hpcore.bench.equivalent import (
    BUDGETS,
    WINDOW,
    baseline_frontier,
    final_loss,
    fmt_interval,
    frontier_steps,
    interval,
    place,
)
from hpcore.bench.runner import CurveRun, at_step, run_together, tune_lr
from hpcore.bench.workloads import Task
from hpcore.config import HybridTrainerConfig

__all__ = ["BUDGETS", "TUNING_SEED", "WINDOW", "config_fields", "markdown_rows", "seed_study",
           "summarise", "tune"]

TUNING_SEED = 100  # the sweep's seed: never one of those reported


def config_fields(text: str) -> dict[str, Any]:
    """``field=value;field=value`` (values as Python literals, ``None`` included) as the
    keyword arguments of a config change, for the studies' command lines.

    ``predictor.field=value`` changes a field of the default predictor's config.

    Example:
        >>> config_fields("judge_margin=2.0;anneal_share=None")
        {'judge_margin': 2.0, 'anneal_share': None}
        >>> config_fields("predictor.shrink=0.5")["predictor"].shrink
        0.5
    """
    import ast

    fields: dict[str, Any] = {}
    predictor: dict[str, Any] = {}
    for item in filter(None, (t.strip() for t in text.split(";"))):
        key, eq, value = item.partition("=")
        if not eq:
            msg = f"a config change is field=value (got {item!r})"
            raise ValueError(msg)
        key = key.strip()
        if key.startswith("predictor."):
            predictor[key.removeprefix("predictor.")] = ast.literal_eval(value.strip())
        else:
            fields[key] = ast.literal_eval(value.strip())
    if predictor:
        fields["predictor"] = attrs.evolve(HybridTrainerConfig().predictor, **predictor)
    return fields


def seed_study(task: Task, *, schedule: str, steps: int, seed: int, lr: float,
               config: HybridTrainerConfig | None = None, eval_every: int | None = None,
               budgets: Sequence[float] = BUDGETS,
               on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """One seed: the baseline frontier and the hybrid placed on it (plain numbers)."""
    config = config or HybridTrainerConfig()
    every = eval_every or task.eval_every
    kw = {"lr": lr, "seed": seed, "schedule": schedule, "eval_every": every, "on_step": on_step}
    base = CurveRun(task, steps=steps, run_steps=frontier_steps(schedule, steps, budgets), **kw)
    hyb = CurveRun(task, steps=steps, config=config, **kw)
    run_together([base, hyb])
    b, h = base.curve(), hyb.curve()
    front = baseline_frontier(task, schedule=schedule, steps=steps, seed=seed, lr=lr, baseline=b,
                              eval_every=every, budgets=budgets, on_step=on_step)
    p = place(front, h, schedule, at=steps)
    base_final = final_loss(b, schedule, at=steps)
    s = h.statistics or {}
    return {
        "seed": seed, "final_val_loss": p.loss, "baseline_val_loss": base_final,
        "final_loss_vs_baseline_pct": 100.0 * (p.loss / base_final - 1.0),
        "backward_passes": p.backward, "wall_s": p.wall,
        "baseline_wall_s": float(b.wall[at_step(b, steps)]),
        "backward_speedup": p.backward_speedup, "wall_speedup": p.wall_speedup,
        "beyond_frontier": p.beyond,
        "predicted_pct": 100.0 * s.get("predicted_steps", 0) / max(steps, 1),
        "jumps": int(s.get("jumps", 0)), "kept": int(s.get("jumps_accepted", 0)),
        "rollbacks": int(s.get("rollbacks", 0)),
        "frontier": front.points,
        "hybrid_curve": {"steps": h.steps.tolist(), "backward": h.backward.tolist(),
                         "wall": h.wall.tolist(), "val_loss": h.val_loss.tolist()},
        "predict_spans": h.predict_spans,
    }


def tune(task: Task, *, schedule: str, steps: int,
         on_step: Callable[[int], None] | None = None) -> tuple[float, dict[float, float]]:
    """The grid's best learning rate for the plain loop at ``steps``, on :data:`TUNING_SEED`."""
    return tune_lr(task, steps=steps, seed=TUNING_SEED, schedule=schedule, on_step=on_step)


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and range over seeds of each figure a row shows."""
    out: dict[str, Any] = {"seeds": len(per_seed)}
    for key in ("backward_speedup", "wall_speedup"):
        out[key] = interval([r[key] for r in per_seed])
    for key in ("final_loss_vs_baseline_pct", "predicted_pct"):
        vals = [r[key] for r in per_seed]
        out[key] = (statistics.median(vals), min(vals), max(vals))
    for key in ("jumps", "kept", "rollbacks"):
        out[key] = sum(r[key] for r in per_seed)
    return out


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
            f"{fmt_interval(s['backward_speedup'])} | {fmt_interval(s['wall_speedup'])} | "
            f"{f[0]:+.1f}% ({f[1]:+.1f} to {f[2]:+.1f}) | {p[0]:.0f}% | "
            f"{s['kept']} / {s['rollbacks']} |")
    return "\n".join(lines)
