"""Where a dormant hybrid run's extra time goes, stage by stage, on the smallest models.

Usage: ``python benchmarks/overhead_by_stage.py [workload] [steps] [repeats]`` (default: the
NumPy breast-cancer softmax regression, 1,000 steps, 5 repeats; seconds).

The plain loop and the hybrid trainer (``HybridTrainerConfig(total_steps=steps)``, the suite's
config) each run the whole budget, every step timed, alternating, ``repeats`` times over
seeds 0, 1, ...; per step index the median over repeats is taken. Printed: the run's total
for each, their ratio, and the hybrid's extra time summed over stages of the run: the first
step, the first 20 (the monitor learns the gradient's level: every step fully guarded), the
warm-up's remainder, the rest; and the costliest single steps (decision points, first calls).
It answers whether the floor's shortfall on a model whose step takes tens of microseconds
comes from start-up and decisions (a one-off a longer run amortises) or from every step.
A step in which JAX compiled, in any of the runs, is left out of both.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import numpy as np
import structlog

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                      "intra_op_parallelism_threads=1")  # as hpcore bench runs JAX

from hpcore import HybridTrainerConfig
from hpcore.bench.runner import warm_up_engine
from hpcore.bench.workloads import WORKLOADS, Task, compile_seconds, get_task

STAGES = ((0, 1), (1, 21), (21, 100), (100, None))


def step_times(task: Task, lr: float, steps: int, seed: int, hybrid: bool) -> np.ndarray:
    """Microseconds of each step of one run; NaN where JAX compiled (as ``hpcore bench``
    leaves those steps out of the wall clock)."""
    run = task.build(seed=seed, lr=lr, steps=steps)
    data = run.batches()
    step = (run.make_hybrid(HybridTrainerConfig(total_steps=steps)).step if hybrid
            else run.plain_step)
    out = np.empty(steps)
    for i in range(steps):
        batch = next(data)
        c0 = compile_seconds()
        t0 = time.perf_counter()
        step(batch)
        out[i] = time.perf_counter() - t0 if compile_seconds() == c0 else np.nan
    return out * 1e6


def main(name: str, steps: int, repeats: int) -> None:
    task = get_task(name, WORKLOADS[name].optimizers[0])
    lr = task.lr_grid[len(task.lr_grid) // 2]
    warm_up_engine(task.build(seed=0, lr=lr, steps=steps).get_flat().size)
    plain, hybrid = [], []
    for seed in range(repeats):
        plain.append(step_times(task, lr, steps, seed, hybrid=False))
        hybrid.append(step_times(task, lr, steps, seed, hybrid=True))
    p, h = np.median(plain, axis=0), np.median(hybrid, axis=0)
    compiled = np.isnan(p) | np.isnan(h)  # in any run: left out of both
    p[compiled] = h[compiled] = 0.0
    extra = h - p
    left_out = f"; {compiled.sum()} steps in which JAX compiled left out" if compiled.any() else ""
    print(f"{name}, {steps} steps, medians over {repeats} runs per step index{left_out}")
    print(f"  plain {p.sum() / 1e3:.2f} ms, hybrid {h.sum() / 1e3:.2f} ms: "
          f"{p.sum() / h.sum():.3f}x; hybrid's extra {extra.sum() / 1e3:.2f} ms")
    for lo, hi in STAGES:
        part = extra[lo:hi]
        label = f"steps {lo}-{(hi or steps) - 1}"
        print(f"  {label:16s} extra {part.sum():7.0f} us ({100 * part.sum() / extra.sum():3.0f}%)"
              f", median {np.median(part):5.1f} us a step")
    top = np.argsort(extra)[::-1][:8]
    print("  costliest steps (index: extra us): "
          + ", ".join(f"{int(i)}: {extra[i]:.0f}" for i in top))


if __name__ == "__main__":
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    args = sys.argv[1:]
    main(args[0] if args else "numpy-softmax-breastcancer",
         int(args[1]) if len(args) > 1 else 1000, int(args[2]) if len(args) > 2 else 5)
