"""What the hybrid trainer's jumps buy per backward pass when nothing stops them.

Usage: ``python benchmarks/jump_worth.py [--workload W] [--steps N] [--seeds S]
[--optimizers sgd,adam] [--schedule constant|cosine]`` (default: the PyTorch MLP on MNIST,
2,000 steps, 3 seeds, SGD-momentum and Adam, constant rate; about 4 min on a 2-core CPU).

``hpcore bench --suite ... --floor off`` shows that unguarded jumps lose time-to-target. This
script asks where the progress goes, on a measure free of the machine's timing noise: each
run's final validation loss against the baseline's **at equal backward passes** (the
baseline's curve interpolated at the run's count; losses averaged over the last 3
evaluations). Negative: the jumps bought progress per backward pass. The same at equal steps,
and the control (the baseline with its batches one step out of line) for the noise. On a
plateau (a constant rate near the end of its budget) 10% fewer backward passes cost the
baseline little, so a short ``--steps`` asks the question where the curve still falls.
Variants, all with the floor guard off:

- ``judged``: ``HybridTrainerConfig(floor=None)``, the default engine;
- ``never rolled back``: the same with the judge after the Correct phase keeping every jump
  whose loss after it is finite (a diagnostic, not a config option: for the run, the
  controller's judge sees a loss trend of infinite noise, so its margin never rejects a jump;
  the steps gained it reports and the horizon policy learns from are the judge's own), which
  shows whether the jumps or the judge's rollbacks lose the progress;
- ``half line``: the Linear forecast shrunk to half its length (``LinearConfig(shrink=0.5)``);
- ``short jumps``: at most 40 predicted steps per jump (``max_predict_steps=40``).

Prints medians over seeds (at equal backward passes, at equal steps, share of steps
predicted), the jumps kept of taken over all seeds, and each seed's figure at equal backward
passes.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import numpy as np
import structlog

from hpcore import trend
from hpcore.bench.runner import Curve, run_curve, smoothed, tune_lr, warm_up_engine
from hpcore.bench.workloads import WORKLOADS, get_task
from hpcore.config import HybridTrainerConfig, LinearConfig
from hpcore.controller import Controller

WINDOW = 3
Patch = Callable[[], contextlib.AbstractContextManager[Any]]


@contextlib.contextmanager
def judge_keeps_every_jump() -> Iterator[None]:
    """The judge after the Correct phase keeps every jump whose loss after it is finite
    (diagnostic only; a probe during the jump, a critical event and a non-finite loss still
    roll back). While the controller judges, the loss trend's fit reports infinite noise, so
    the judge's margin (two deviations of its expectation) admits any finite loss; its slope,
    hence the steps gained that the policy learns from, is the real one."""
    original = Controller._judge
    real_fit = trend.fit

    def wide(state: trend.TrendState) -> trend.TrendFit | None:
        f = real_fit(state)
        return None if f is None else attrs.evolve(f, noise=math.inf)

    def keep(self: Controller, *args: Any, **kwargs: Any) -> Any:
        trend.fit = wide
        try:
            return original(self, *args, **kwargs)
        finally:
            trend.fit = real_fit

    Controller._judge = keep  # type: ignore[method-assign]
    try:
        yield
    finally:
        Controller._judge = original  # type: ignore[method-assign]


# name -> (config, a context the run is taken in)
VARIANTS: dict[str, tuple[HybridTrainerConfig, Patch]] = {
    "judged": (HybridTrainerConfig(floor=None), contextlib.nullcontext),
    "never rolled back": (HybridTrainerConfig(floor=None), judge_keeps_every_jump),
    "half line": (HybridTrainerConfig(floor=None, predictor=LinearConfig(shrink=0.5)),
                  contextlib.nullcontext),
    "short jumps": (HybridTrainerConfig(floor=None, max_predict_steps=40),
                    contextlib.nullcontext),
}


def at_equal_backward(base: Curve, run: Curve) -> float:
    """The run's final validation loss against the baseline's after as many backward passes
    (interpolated between its evaluations), in percent: negative, the jumps bought progress."""
    loss = float(smoothed(run, WINDOW)[-1])
    ref = float(np.interp(float(run.backward[-1]), base.steps, smoothed(base, WINDOW)))
    return 100.0 * (loss / ref - 1.0)


def one_seed(task: Any, lr: float, steps: int, seed: int, schedule: str) -> dict[str, Any]:
    base = run_curve(task, lr=lr, steps=steps, seed=seed, schedule=schedule)
    base_final = float(smoothed(base, WINDOW)[-1])
    out: dict[str, Any] = {}
    control = run_curve(task, lr=lr, steps=steps, seed=seed, schedule=schedule, method="control")
    out["control"] = {"bwd_pct": at_equal_backward(base, control), "predicted_pct": 0.0,
                      "gap_pct": 100 * (float(smoothed(control, WINDOW)[-1]) / base_final - 1),
                      "kept": 0, "jumps": 0}
    for name, (config, patch) in VARIANTS.items():
        with patch():
            curve = run_curve(task, lr=lr, steps=steps, seed=seed, schedule=schedule,
                              config=config)
        s = curve.statistics or {}
        out[name] = {
            "bwd_pct": at_equal_backward(base, curve),
            "gap_pct": 100 * (float(smoothed(curve, WINDOW)[-1]) / base_final - 1),
            "predicted_pct": 100 * s.get("predicted_steps", 0) / max(s.get("total_steps", 1), 1),
            "kept": int(s.get("jumps_accepted", 0)), "jumps": int(s.get("jumps", 0)),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="torch-mlp-mnist", choices=list(WORKLOADS))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--optimizers", default="sgd,adam")
    parser.add_argument("--schedule", default="constant", choices=["constant", "cosine"])
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    started = time.perf_counter()
    for opt in args.optimizers.split(","):
        task = get_task(args.workload, opt)
        warm_up_engine(task.build(seed=0, lr=1e-3, steps=args.steps).get_flat().size)
        lr, _ = tune_lr(task, steps=args.steps, seed=0, schedule=args.schedule)
        seeds = [one_seed(task, lr, args.steps, s, args.schedule) for s in range(args.seeds)]
        print(f"\n{args.workload} {opt} {args.schedule} lr {lr:g}, {args.steps} steps, "
              f"{args.seeds} seeds (medians)")
        print(f"  {'variant':18s} {'equal bwd':>9s} {'equal steps':>11s} {'predicted':>9s} "
              f"{'kept/jumps':>10s}  equal bwd per seed")
        for name in ("control", *VARIANTS):
            rows = [s[name] for s in seeds]
            med = lambda k, rows=rows: statistics.median(r[k] for r in rows)  # noqa: E731
            print(f"  {name:18s} {med('bwd_pct'):+8.1f}% {med('gap_pct'):+10.1f}% "
                  f"{med('predicted_pct'):8.0f}% {sum(r['kept'] for r in rows):4d}/"
                  f"{sum(r['jumps'] for r in rows):<5d}  "
                  + " ".join(f"{r['bwd_pct']:+.1f}%" for r in rows), flush=True)
    print(f"\n{(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
