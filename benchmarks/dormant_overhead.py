"""What the hybrid trainer costs a training step when it makes no jump: the price of the floor.

Usage: ``python benchmarks/dormant_overhead.py [--check-interval N] [--device cuda]
[workload ...]`` (default:
the suite's workloads, each with its first optimizer; ``N`` fixes
``DivergenceConfig.dormant_check_interval``, by default chosen from the measured cost; 1
guards every dormant step fully; ``--device cuda`` runs PyTorch workloads on the GPU, where
the plain loop never waits for its loss and the hybrid trainer reads it every step).
For each workload it builds the plain loop and the hybrid trainer (default config) on the
same model and data, forces the engine dormant (as the floor guard does when no jump is
affordable), and times the two side by side in alternating blocks of 50 steps, 40 blocks each
after 300 steps of warm-up: a drift of the machine's speed falls on both alike. Printed: the
mean step time of each, the ratio plain / hybrid (the speed the floor is measured in; the
median over blocks too) and the engine's own time per dormant step (``engine_time_s``, which
excludes the framework's work in the port).
"""

from __future__ import annotations

import logging
import statistics
import sys
import time

import structlog

from hpcore.bench.runner import warm_up_engine
from hpcore.bench.workloads import SUITE_DEFAULT, WORKLOADS, get_task
from hpcore.config import DivergenceConfig, HybridTrainerConfig

BLOCK, BLOCKS, WARM = 50, 40, 300


def measure(name: str, check_interval: int | None = None,
            device: str | None = None) -> dict[str, float]:
    """Plain and dormant-hybrid step times of one workload, side by side."""
    task = get_task(name, WORKLOADS[name].optimizers[0])
    lr = task.lr_grid[len(task.lr_grid) // 2]
    plain = task.build(seed=0, lr=lr, steps=50_000, schedule="constant")
    hybrid = task.build(seed=0, lr=lr, steps=50_000, schedule="constant")
    if device is not None:
        if task.workload.framework != "torch":
            msg = f"--device moves PyTorch workloads only, not {name}"
            raise SystemExit(msg)
        plain, hybrid = plain.to(device), hybrid.to(device)

    def sync() -> None:
        for run in (plain, hybrid):
            getattr(run, "sync", lambda: None)()
    warm_up_engine(hybrid.get_flat().size)
    divergence = DivergenceConfig(dormant_check_interval=check_interval)
    trainer = hybrid.make_hybrid(HybridTrainerConfig(total_steps=10**7, divergence=divergence))
    engine = trainer.engine
    engine._dormant = 10**9  # dormant throughout, as when no jump is affordable
    data_p, data_h = plain.batches(), hybrid.batches()
    for _ in range(WARM):
        plain.plain_step(next(data_p))
        trainer.step(next(data_h))
    t_plain = t_hybrid = 0.0
    ratios = []
    trainer.statistics()  # brings the short path's counters and timers up to date
    engine_before, steps_before = engine._timer.dormant, engine._timer.dormant_steps
    for _ in range(BLOCKS):
        batches_p = [next(data_p) for _ in range(BLOCK)]
        batches_h = [next(data_h) for _ in range(BLOCK)]
        sync()
        t0 = time.perf_counter()
        for b in batches_p:
            plain.plain_step(b)
        sync()
        t1 = time.perf_counter()
        for b in batches_h:
            trainer.step(b)
        sync()
        t2 = time.perf_counter()
        t_plain += t1 - t0
        t_hybrid += t2 - t1
        ratios.append((t1 - t0) / (t2 - t1))
    n = BLOCK * BLOCKS
    trainer.statistics()
    engine_s = (engine._timer.dormant - engine_before) / (engine._timer.dormant_steps - steps_before)
    return {"plain_us": 1e6 * t_plain / n, "hybrid_us": 1e6 * t_hybrid / n,
            "ratio": t_plain / t_hybrid, "median_ratio": statistics.median(ratios),
            "engine_us": 1e6 * engine_s, "interval": engine._guard_interval}


def main(argv: list[str]) -> int:
    args = argv[1:]
    interval = device = None
    while args[:1] in (["--check-interval"], ["--device"]):
        if args[0] == "--device":
            device = args[1]
        else:
            interval = int(args[1])
        args = args[2:]
    names = args or list(SUITE_DEFAULT)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    print(f"{'workload':28s} {'plain':>9s} {'hybrid':>9s} {'speed':>7s} {'median':>7s} "
          f"{'engine':>8s} {'guard 1 in':>10s}")
    for name in names:
        m = measure(name, interval, device)
        print(f"{name:28s} {m['plain_us']:7.1f}us {m['hybrid_us']:7.1f}us {m['ratio']:6.3f}x "
              f"{m['median_ratio']:6.3f}x {m['engine_us']:6.1f}us {m['interval']:10d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
