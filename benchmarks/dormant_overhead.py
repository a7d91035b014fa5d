"""The engine's own time per full step, active and dormant, on a suite workload.

Usage: ``python benchmarks/dormant_overhead.py [workload]`` (default ``torch-mlp-mnist``).
Trains 300 steps with the default config (jumps switched off by a confidence threshold of 1,
the floor guard off so that it does not send the engine dormant on its own),
then times 1,000 steps active and 1,000 steps with the engine forced dormant, twice each, and
prints the step time and the engine's share (``engine_time_s`` per step).
"""

from __future__ import annotations

import logging
import sys
import time

import structlog

from hpcore.bench.runner import warm_up_engine
from hpcore.bench.workloads import get_task
from hpcore.config import HybridTrainerConfig


def main(argv: list[str]) -> int:
    name = argv[1] if len(argv) > 1 else "torch-mlp-mnist"
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    run = get_task(name, "sgd").build(seed=0, lr=0.03, steps=50_000, schedule="constant")
    warm_up_engine(run.get_flat().size)
    data = run.batches()
    batches = [next(data) for _ in range(50)]
    trainer = run.make_hybrid(HybridTrainerConfig(confidence_threshold=1.0, floor=None))
    engine = trainer.engine
    for i in range(300):
        trainer.step(batches[i % 50])
    print(f"{name}: {run.get_flat().size} parameters")
    for mode in ("active", "dormant", "active", "dormant"):
        engine._dormant = 10**9 if mode == "dormant" else 0  # force the mode for the timing
        before = trainer.statistics()
        t0 = time.perf_counter()
        for i in range(1000):
            trainer.step(batches[i % 50])
        step_us = (time.perf_counter() - t0) * 1e3
        engine_us = (trainer.statistics().engine_time_s - before.engine_time_s) * 1e3
        print(f"{mode:8s} step {step_us:7.1f} us, engine {engine_us:6.1f} us "
              f"({100 * engine_us / step_us:.1f}% of the step)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
