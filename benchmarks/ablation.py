"""Predictor ablation on the digits workload: floor, Linear, MLP, RSSM-lite (DESIGN 5 and 9).

Run: ``python benchmarks/ablation.py`` (``--seeds``, ``--steps`` to change the budget).
For each optimizer the baseline's learning rate is tuned on seed 0 (``tune_lr``, the plain
loop's lowest final validation loss over the workload's grid); every seed then runs the
baseline and the four predictors at that rate, from the same initial point and batch order.
Prints a table of medians over seeds and writes it to ``benchmarks/ABLATION.md`` and the
per-seed numbers to ``benchmarks/results/ablation.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import structlog

from hpcore.bench.runner import (
    digits_mlp,
    engine_seconds,
    extrapolation_config,
    run_curve,
    time_to_target,
    tune_lr,
    warm_up_engine,
)
from hpcore.config import HybridTrainerConfig, LinearConfig, MLPConfig, RSSMConfig

HERE = Path(__file__).resolve().parent

PREDICTORS: dict[str, HybridTrainerConfig] = {
    # Plain momentum extrapolation: raw theta every step, a two-point line (the floor).
    "floor (raw 2-point)": extrapolation_config(),
    # The floor guard off throughout: this compares what the predictors' jumps do.
    "Linear": HybridTrainerConfig(predictor=LinearConfig(), floor=None),
    "MLP": HybridTrainerConfig(predictor=MLPConfig(), floor=None),
    "RSSM": HybridTrainerConfig(predictor=RSSMConfig(), floor=None),
}


def one_seed(task: Any, lr: float, steps: int, seed: int) -> dict[str, dict[str, Any]]:
    base = run_curve(task, lr=lr, steps=steps, seed=seed)
    base_final = float(base.val_loss[-1])
    out = {"baseline": {"final_val_loss": base_final, "wall_s": float(base.wall[-1])}}
    for name, config in PREDICTORS.items():
        t0 = time.perf_counter()
        curve = run_curve(task, lr=lr, steps=steps, seed=seed, config=config)
        elapsed = time.perf_counter() - t0
        ttt = time_to_target(base, curve)
        s = curve.statistics or {}
        out[name] = {
            "backward_reduction_pct": float(s.get("backward_reduction_pct", 0.0)),
            "final_val_loss": float(curve.val_loss[-1]),
            "final_gap_pct": 100.0 * (float(curve.val_loss[-1]) / base_final - 1.0),
            "backward_speedup": ttt["backward_speedup"],
            "wall_speedup": ttt["wall_speedup"],
            "reached": ttt["reached"],
            "wall_s": float(curve.wall[-1]),
            # the run's wall clock beyond its backward passes at the baseline's step time
            # (hpcore.bench.runner.engine_seconds; the two runs one after the other here)
            "engine_s": engine_seconds(base, curve),
            "elapsed_s": elapsed,
            "jumps": int(s.get("jumps", 0)),
            "jumps_accepted": int(s.get("jumps_accepted", 0)),
            "rollbacks": int(s.get("rollbacks", 0)),
        }
    return out


def _median_speedup(rows: list[dict[str, Any]], key: str) -> str:
    """Median over seeds; a run that never reached the target counts as 0 in the median."""
    vals = [r[key] if r["reached"] else 0.0 for r in rows]
    m = statistics.median(vals)
    missed = sum(not r["reached"] for r in rows)
    cell = f"{m:.2f}x" if m > 0 else "not reached"
    return f"{cell} ({missed}/{len(rows)} not reached)" if missed else cell


def table(results: dict[str, dict[str, Any]]) -> str:
    head = ("| predictor | optimizer (lr) | backward reduction | final val loss gap vs baseline "
            "| time-to-target speedup, backward passes | time-to-target speedup, wall-clock "
            "| wall-clock per run (baseline) | jumps kept / taken, rollbacks |")
    lines = [head, "|" + "---|" * 8]
    for opt, res in results.items():
        seeds = res["seeds"]
        base_wall = statistics.median(s["baseline"]["wall_s"] for s in seeds)
        for name in PREDICTORS:
            rows = [s[name] for s in seeds]
            med = lambda k, rows=rows: statistics.median(r[k] for r in rows)  # noqa: E731
            lines.append(
                f"| {name} | {opt} ({res['lr']:g}) | {med('backward_reduction_pct'):.1f}% "
                f"| {med('final_gap_pct'):+.2f}% | {_median_speedup(rows, 'backward_speedup')} "
                f"| {_median_speedup(rows, 'wall_speedup')} | {med('wall_s'):.2f} s ({base_wall:.2f} s) "
                f"| {med('jumps_accepted'):.0f} / {med('jumps'):.0f}, {med('rollbacks'):.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--optimizers", default="sgd,adam")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    warm_up_engine()
    results: dict[str, dict[str, Any]] = {}
    t_start = time.perf_counter()
    for opt in args.optimizers.split(","):
        task = digits_mlp(0, opt)
        lr, sweep = tune_lr(task, steps=args.steps, seed=0)
        print(f"{opt}: tuned lr {lr:g} (final val loss by lr: "
              f"{ {k: round(v, 4) for k, v in sweep.items()} })", flush=True)
        seeds = []
        for seed in range(args.seeds):
            seeds.append(one_seed(task, lr, args.steps, seed))
            for name in PREDICTORS:
                r = seeds[-1][name]
                print(f"  seed {seed} {name:20s} bwd -{r['backward_reduction_pct']:.1f}% "
                      f"gap {r['final_gap_pct']:+.2f}% ttt bwd {r['backward_speedup']} "
                      f"wall {r['wall_speedup']} run {r['wall_s']:.2f}s engine {r['engine_s']:.2f}s",
                      flush=True)
        results[opt] = {"lr": lr, "sweep": sweep, "seeds": seeds}
    md = table(results)
    print(md)
    if args.no_write:
        return
    total = time.perf_counter() - t_start
    cmd = "python benchmarks/ablation.py" + (
        "" if (args.seeds, args.steps, args.optimizers) == (3, 3000, "sgd,adam")
        else f" --seeds {args.seeds} --steps {args.steps} --optimizers {args.optimizers}")
    doc = f"""# Predictor ablation (digits MLP)

Command: `{cmd}` ({total / 60:.1f} min in all).
Machine: 2-core CPU VM, no GPU ({platform.processor() or platform.machine()}, Python
{platform.python_version()}); other jobs shared the machine, so wall-clock numbers are noisy.

Workload: `numpy-mlp-digits` (NumPy MLP 64-64-10 on scikit-learn's digits, batch 32,
N = 4810 parameters), {args.steps} steps, seeds 0-{args.seeds - 1}, constant learning rate tuned
for the plain loop on seed 0 (`tune_lr` over the workload's grid). Every predictor runs with the
default `HybridTrainerConfig()` except its `predictor` and with the floor guard off
(`floor=None`: this compares what the jumps do); the floor predictor is plain momentum
extrapolation (`snapshot_interval=1, snapshot_ema=None, history_size=2,
predictor=LinearConfig(window=2)`). Medians over seeds. Target = the baseline's final
validation loss; speed-up = baseline's / method's backward passes (or wall-clock) to reach it;
a seed that never reaches it counts as 0 in the median. Wall-clock is the training loop only
(validation excluded), engine and predictor time included; the engine's time (printed per
seed) is a run's wall clock less its backward passes at the baseline's mean step time.

{md}
"""
    (HERE / "ABLATION.md").write_text(doc)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "ablation.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
