"""``hpcore bench --suite``: workloads x optimizers x schedules x seeds, every method, one table.

For each (workload, optimizer, schedule) the baseline's learning rate is tuned once, on seed 0,
by a sweep over the workload's grid at the full step budget (the plain loop, lowest final
validation loss); every seed then runs the baseline and each method at that rate, side by side
(:func:`hpcore.bench.runner.run_together`). Medians are
over seeds; a run that does not reach the target counts as a speed-up of 0 in the median.

The headline is each method's compute-equivalent speed-up: its final loss at the budget placed
on the baseline's frontier (:mod:`hpcore.bench.equivalent`, as the long-run study builds it).
Under a constant rate the side-by-side baseline runs on to the longest budget (alongside the
methods that go on to the target) and its curve is the frontier; under an annealed schedule
the baseline also runs alone at the other budgets, each with its own schedule, after the
side-by-side group. A loss below every budget's reads "beyond" and counts as infinity in the
median.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from hpcore.bench.equivalent import (
    BUDGETS,
    WINDOW,
    BaselineFrontier,
    baseline_frontier,
    extra_baseline_steps,
    fmt_interval,
    frontier_steps,
    interval,
    place,
)
from hpcore.bench.runner import (
    Curve,
    CurveRun,
    at_step,
    overhead_pct,
    run_together,
    smoothed,
    time_to_target,
    tune_lr,
)
from hpcore.bench.workloads import WORKLOADS, Task, get_task
from hpcore.config import HybridTrainerConfig

__all__ = ["DEFAULT_SCHEDULES", "SCHEDULES", "SUITE_METHODS", "equivalent_result",
           "markdown_table", "run_suite", "seed_result", "summarise", "total_steps"]

SUITE_METHODS = ("hybrid", "lookahead", "extrapolation", "control")
SCHEDULES = ("constant", "cosine", "wsd")  # what the suite accepts
DEFAULT_SCHEDULES = ("constant", "cosine")  # what it runs unless told
# With a constant learning rate the methods may run on past the baseline's budget to reach its
# final loss (steps are not the cost, wall-clock is); an annealed schedule (cosine, wsd) ends
# with the budget.
OVERRUN = 1.5
# Validation points averaged for the target and for reaching it (and for the equal-step loss):
# one evaluation's noise must not decide a row (the control row shows how much it can).
TARGET_WINDOW = 3
# The floor the issue sets: never slower than this share of the tuned baseline's speed.
FLOOR = 0.95


def seed_result(baseline: Curve, other: Curve) -> dict[str, Any]:
    """One seed's comparison of ``other`` with the baseline, as plain numbers."""
    ttt = time_to_target(baseline, other, window=TARGET_WINDOW)
    steps = max(int(other.steps[-1]), 1)
    s = other.statistics or {}
    base_final = float(smoothed(baseline, TARGET_WINDOW)[-1])
    i = at_step(other, int(baseline.steps[-1]))  # equal steps: the baseline's budget
    other_final = float(smoothed(other, TARGET_WINDOW)[i])
    return {
        "wall_speedup": ttt["wall_speedup"],
        "backward_speedup": ttt["backward_speedup"],
        "reached": ttt["reached"],
        "steps_run": steps,
        "final_val_loss": other_final,
        "final_val_acc": float(other.val_acc[i]),
        "baseline_val_loss": base_final,
        "baseline_val_acc": float(baseline.val_acc[-1]),
        "final_loss_vs_baseline_pct": 100.0 * (other_final / base_final - 1.0),
        "predicted_pct": 100.0 * s.get("predicted_steps", 0) / steps,
        "rollbacks": int(s.get("rollbacks", 0)),
        "jumps": int(s.get("jumps", 0)),
        "jumps_accepted": int(s.get("jumps_accepted", 0)),
        "overhead_pct": overhead_pct(baseline, other),
        "wall_s": float(other.wall[-1]),
        "baseline_wall_s": float(baseline.wall[-1]),
    }


def equivalent_result(front: BaselineFrontier, other: Curve, schedule: str,
                      budget: int) -> dict[str, Any]:
    """One seed's compute-equivalent speed-ups of ``other`` at the budget, and the frontier."""
    p = place(front, other, schedule, at=budget)
    return {
        "equivalent_final_loss": p.loss,
        "equivalent_backward_speedup": p.backward_speedup,
        "equivalent_wall_speedup": p.wall_speedup,
        "beyond_frontier": p.beyond,
        "frontier": front.points,
    }


def _median_speedup(values: list[float | None]) -> float | None:
    m = statistics.median([0.0 if v is None else v for v in values])
    return None if m == 0.0 else m


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over seeds (``None`` time-to-target speed-up: the median run did not reach the
    target); compute-equivalent speed-ups as (median, low, high), ``None`` beyond the frontier."""
    return {
        "seeds": len(per_seed),
        "equivalent_backward_speedup": interval(
            [r["equivalent_backward_speedup"] for r in per_seed]),
        "equivalent_wall_speedup": interval([r["equivalent_wall_speedup"] for r in per_seed]),
        "beyond_frontier": sum(r["beyond_frontier"] for r in per_seed),
        "reached": sum(r["reached"] for r in per_seed),
        "wall_speedup": _median_speedup([r["wall_speedup"] for r in per_seed]),
        "backward_speedup": _median_speedup([r["backward_speedup"] for r in per_seed]),
        "final_loss_vs_baseline_pct": statistics.median(
            r["final_loss_vs_baseline_pct"] for r in per_seed),
        "predicted_pct": statistics.median(r["predicted_pct"] for r in per_seed),
        "rollbacks": statistics.median(r["rollbacks"] for r in per_seed),
        "overhead_pct": statistics.median(r["overhead_pct"] for r in per_seed),
    }


def verdict(summary: dict[str, Any], method: str = "hybrid") -> str:
    """Plain words: does the method beat the tuned baseline to its own final loss?"""
    w = summary["wall_speedup"]
    if method == "control":
        return "noise floor (the baseline, batches one step out of line)"
    if method in ("hybrid", "extrapolation") and summary["predicted_pct"] == 0.0:
        return "never jumped (plain loop + overhead)" if (w or 0.0) >= 1.0 else (
            "loses: never jumped, overhead only")
    if w is None:
        return "loses: target not reached"
    if w < 1.0:
        return "loses: slower"
    if summary["final_loss_vs_baseline_pct"] > 0.0:
        return "faster to target, ends worse"
    return "wins"


def run_suite(
    workloads: Sequence[str],
    *,
    seeds: int = 3,
    steps: int | None = None,
    schedules: Sequence[str] = DEFAULT_SCHEDULES,
    optimizers: Sequence[str] | None = None,
    methods: Sequence[str] = SUITE_METHODS,
    config: HybridTrainerConfig | None = None,
    on_step: Callable[[int], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_config: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the suite; returns a JSON-ready dict with every seed's numbers and the medians.
    ``optimizers`` (default: each workload's own) keeps those of a workload's optimizers;
    ``on_config`` gets the suite so far after each (workload, optimizer, schedule), so that
    a long run interrupted keeps what it finished."""
    started = time.time()
    results: list[dict[str, Any]] = []

    def suite() -> dict[str, Any]:
        return {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": platform.platform(), "seeds": seeds, "elapsed_s": time.time() - started,
            "hybrid_floor": (config or HybridTrainerConfig()).floor, "results": list(results),
        }

    for name in workloads:
        work = WORKLOADS[name]
        budget = steps or work.steps
        for optimizer in _kept(work.optimizers, optimizers):
            task = get_task(name, optimizer)
            for schedule in schedules:
                if on_stage:
                    on_stage(f"{name} {optimizer} {schedule}: lr sweep")
                lr, finals = tune_lr(task, steps=budget, seed=0, schedule=schedule,
                                     on_step=on_step)
                per_method: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
                for seed in range(seeds):
                    if on_stage:
                        on_stage(f"{name} {optimizer} {schedule}: seed {seed}")
                    for m, r in _seed(task, lr, budget, seed, schedule, methods, config,
                                      on_step).items():
                        per_method[m].append(r)
                for m in methods:
                    summary = summarise(per_method[m])
                    results.append({
                        "workload": name, "framework": work.framework,
                        "description": work.description, "optimizer": optimizer,
                        "schedule": schedule, "method": m, "steps": budget, "lr": lr,
                        "lr_sweep": {str(k): v for k, v in finals.items()},
                        "summary": summary, "verdict": verdict(summary, m), "per_seed": per_method[m],
                    })
                if on_config:
                    on_config(suite())
    return suite()


def _seed(task: Task, lr: float, budget: int, seed: int, schedule: str, methods: Sequence[str],
          config: HybridTrainerConfig | None,
          on_step: Callable[[int], None] | None) -> dict[str, dict[str, Any]]:
    """One seed of a configuration: the baseline and the methods side by side to the budget;
    past it the methods that have not reached the target go on together, with the baseline
    under a constant rate (on to the frontier's longest budget); then an annealed schedule's
    other budgets, alone. Each method's numbers, by name."""
    overrun = round(budget * OVERRUN) if schedule == "constant" else budget
    base_run = CurveRun(task, lr=lr, steps=budget, seed=seed, schedule=schedule,
                        on_step=on_step, run_steps=frontier_steps(schedule, budget))
    runs = [CurveRun(task, lr=lr, steps=budget, seed=seed, schedule=schedule, method=m,
                     config=config if m == "hybrid" else None, on_step=on_step,
                     run_steps=overrun, stop_window=TARGET_WINDOW) for m in methods]
    run_together([base_run, *runs], until=budget)
    base = base_run.curve()  # the baseline at the budget: the target, the equal-step loss
    target = float(smoothed(base, TARGET_WINDOW)[-1])
    for run in runs:
        run.set_target(target)
    run_together([base_run, *runs])
    front = baseline_frontier(task, schedule=schedule, steps=budget, seed=seed, lr=lr,
                              baseline=base_run.curve(), on_step=on_step)
    out = {}
    for m, run in zip(methods, runs, strict=True):
        curve = run.curve()
        out[m] = {**seed_result(base, curve), **equivalent_result(front, curve, schedule, budget),
                  "seed": seed}
    return out


def _fmt_speed(v: float | None, reached: int, seeds: int) -> str:
    text = "not reached" if v is None else f"{v:.2f}x"
    return text if reached == seeds else f"{text} ({reached}/{seeds} reached)"


def _config_text(suite: dict[str, Any]) -> str:
    """The hybrid trainer's config as the table names it (suites before ``hybrid_floor``
    was recorded ran the default)."""
    floor = suite.get("hybrid_floor", HybridTrainerConfig().floor)
    if floor == HybridTrainerConfig().floor:
        return "default `HybridTrainerConfig()`"
    return f"`HybridTrainerConfig(floor={floor!r})`" + (", the floor guard off" if floor is None else "")


def markdown_table(suite: dict[str, Any]) -> str:
    """The suite's medians as a Markdown table, a legend and the tuned learning rates."""
    head = ["workload", "optimizer", "schedule", "method", "compute-equivalent, backward passes",
            "compute-equivalent, wall-clock", "time-to-target, wall",
            "time-to-target, backward passes", "final val loss vs baseline", "predicted",
            "rollbacks", "engine overhead", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lrs: dict[tuple[str, str, str], tuple[float, int]] = {}
    for r in suite["results"]:
        s = r["summary"]
        lrs[(r["workload"], r["optimizer"], r["schedule"])] = (r["lr"], r["steps"])
        lines.append("| " + " | ".join([
            r["workload"], r["optimizer"], r["schedule"], r["method"],
            fmt_interval(s["equivalent_backward_speedup"]),
            fmt_interval(s["equivalent_wall_speedup"]),
            _fmt_speed(s["wall_speedup"], s["reached"], s["seeds"]),
            _fmt_speed(s["backward_speedup"], s["reached"], s["seeds"]),
            f"{s['final_loss_vs_baseline_pct']:+.1f}%",
            f"{s['predicted_pct']:.0f}%",
            f"{s['rollbacks']:g}",
            f"{s['overhead_pct']:.1f}%",
            r["verdict"],
        ]) + " |")
    hybrid = [r for r in suite["results"] if r["method"] == "hybrid"]
    wins = sum(r["verdict"] == "wins" for r in hybrid)
    peers = {m: sum(r["verdict"] == "wins" for r in suite["results"] if r["method"] == m)
             for m in ("lookahead", "extrapolation")}
    floor = sum((r["summary"]["wall_speedup"] or 0.0) >= FLOOR for r in hybrid)
    equal = {k: sum(_at_least_one(r["summary"][f"equivalent_{k}_speedup"]) for r in hybrid)
             for k in ("backward", "wall")}
    control = [r["summary"]["wall_speedup"] for r in suite["results"] if r["method"] == "control"]
    noise = ""
    if control:
        reached = [v for v in control if v is not None]
        missed = len(control) - len(reached)
        span = (f"ranges {min(reached):.2f}-{max(reached):.2f}x where it reaches the target"
                if reached else "never reaches the target")
        noise = (f" The control row (the baseline with its batches one step out of line) "
                 f"{span}"
                 + (f" and misses it in {missed} of {len(control)}" if missed else "")
                 + f" ({sum((v or 0.0) >= FLOOR for v in control)} of {len(control)} at or "
                 f"above {FLOOR}x): differences of that size are chance.")
    lines += [
        "",
        f"Compute-equivalent (the headline): the hybrid trainer's median is at or above 1x in "
        f"backward passes in {equal['backward']} of {len(hybrid)} configurations and in "
        f"wall-clock in {equal['wall']} of {len(hybrid)}.",
        "",
        f"Hybrid trainer ({_config_text(suite)}): wins in {wins} of {len(hybrid)} "
        "configurations against the tuned baseline (wall-clock to the baseline's final "
        f"validation loss, median over seeds) and is at or above the {FLOOR}x floor in "
        f"{floor} of {len(hybrid)}; Lookahead wins in "
        f"{peers['lookahead']}, raw-update extrapolation in {peers['extrapolation']}.{noise}",
        "",
        "Compute-equivalent: the baseline's cost (backward passes, or seconds) to reach the "
        "method's final validation loss at the step budget T, on the baseline's frontier, over "
        "the method's own cost there; median (min-max) over seeds. Under a constant rate the "
        f"frontier is the baseline's own run on to {max(BUDGETS):g} T (a shorter budget's run "
        f"is its prefix), losses averaged over {WINDOW} evaluations, the method's too; under an "
        "annealed schedule one baseline run per budget ("
        + ", ".join(f"{b:g}" for b in BUDGETS) + " T), each annealed over its own, and the "
        "method's last evaluation. 'beyond': the method's loss is below every budget's (it "
        "counts as infinity in the median); a diverged run reads 0.00x. "
        "Time-to-target speed-ups are baseline / method, medians over seeds (above 1: the "
        "method reaches the tuned baseline's final validation loss first; a run that never "
        "reaches it counts as 0). "
        f"Validation losses are averaged over {TARGET_WINDOW} consecutive evaluations, for the "
        "target (the baseline's last ones) and for reaching it. "
        "Final val loss vs baseline: median relative difference at the same step budget "
        "(negative is better). Predicted: share of steps with no backward pass. Engine overhead: "
        "the method's wall-clock beyond its backward passes, these priced at the baseline's mean "
        "step time (the runs side by side), per step, as a share of the baseline's mean step "
        "time: the wrapper's work on full steps, decisions, predicted steps and rollbacks; the "
        "control row shows the noise of this difference. Wall-clock excludes validation and the "
        "steps in which JAX compiled (JIT warm-up: compilation and the first call's set-up).",
        "",
        "Tuned learning rates (sweep on seed 0, plain loop, same step budget):",
        "",
    ]
    for (w, o, sch), (lr, steps) in lrs.items():
        lines.append(f"- {w} {o} {sch}: lr {lr:g}, {steps} steps")
    return "\n".join(lines)


def _at_least_one(iv: tuple[float | None, float | None, float | None]) -> bool:
    """Whether an interval's median is at or above 1x (beyond the frontier is)."""
    return iv[0] is None or iv[0] >= 1.0


def _kept(offered: Sequence[str], wanted: Sequence[str] | None) -> list[str]:
    return [o for o in offered if wanted is None or o in wanted]


def total_steps(workloads: Sequence[str], *, seeds: int, steps: int | None,
                schedules: Sequence[str] = DEFAULT_SCHEDULES,
                optimizers: Sequence[str] | None = None,
                methods: Sequence[str] = SUITE_METHODS) -> int:
    """Training steps the suite will take (for a progress bar): the sweep, each seed's
    baseline and methods to the budget and the baseline's frontier beyond it; under a constant
    rate the methods that have not reached the target by the budget go on past it, uncounted."""
    n = 0
    for name in workloads:
        work = WORKLOADS[name]
        budget = steps or work.steps
        for optimizer in _kept(work.optimizers, optimizers):
            runs = len(work.lr_grids[optimizer]) + seeds * (1 + len(methods))
            n += sum(runs * budget + seeds * extra_baseline_steps(schedule, budget)
                     for schedule in schedules)
    return n
