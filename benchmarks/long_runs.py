"""Long-run study: the default hybrid trainer on the compute-equivalent frontier.

For each workload and schedule: the learning rate tuned by a sweep of the plain loop on a seed
that is not reported (``hpcore.bench.long_study.TUNING_SEED``), then per seed the baseline at
several budgets and the hybrid trainer at the workload's budget, placed on the frontier
(``hpcore.bench.long_study``). Writes ``long.md`` and ``long.json`` to ``--out`` after every
row, so an interrupted study keeps what it measured.

    python benchmarks/long_runs.py --workloads torch-chartf-long --schedules constant
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workloads", default="torch-chartf-long,torch-cnn-mnist-long,torch-ae-mnist")
    p.add_argument("--schedules", default="constant,wsd,cosine")
    p.add_argument("--optimizer", default="adamw")
    p.add_argument("--seeds", default="0,1,2", help="reported seeds (never the tuning seed)")
    p.add_argument("--steps", type=int, default=None, help="override the workloads' budgets")
    p.add_argument("--lr", type=float, default=None, help="skip the sweep, use this rate")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results-long-v2"))
    p.add_argument("--set", default="", help="the hybrid's config changes, field=value;...")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    import structlog
    import torch
    from tqdm import tqdm

    from hpcore import HybridTrainerConfig
    from hpcore.bench.long_study import (
        TUNING_SEED,
        config_fields,
        markdown_rows,
        seed_study,
        summarise,
        tune,
    )
    from hpcore.bench.runner import warm_up_engine
    from hpcore.bench.workloads import get_task

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    if TUNING_SEED in seeds:
        print(f"long_runs: seed {TUNING_SEED} tunes the rate; it cannot be reported", file=sys.stderr)
        return 2
    config = HybridTrainerConfig(**config_fields(args.set))
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    rows: list[dict] = []
    for name in args.workloads.split(","):
        task = get_task(name, args.optimizer)
        steps = args.steps or task.workload.steps
        warm_up_engine(task.build(seed=0, lr=1e-3, steps=steps).get_flat().size)
        for schedule in args.schedules.split(","):
            bar = tqdm(desc=f"{name} {schedule}", unit="step", disable=args.quiet,
                       total=steps * (len(task.lr_grid) * (args.lr is None)
                                      + len(seeds) * (6 if schedule != "constant" else 2.5)))
            def tick(_i: int, bar: tqdm = bar) -> None:
                bar.update(1)
            if args.lr is None:
                lr, sweep = tune(task, schedule=schedule, steps=steps, on_step=tick)
            else:
                lr, sweep = args.lr, {}
            per_seed = [seed_study(task, schedule=schedule, steps=steps, seed=s, lr=lr,
                                   config=config, on_step=tick) for s in seeds]
            bar.close()
            rows.append({"task": task.name, "schedule": schedule, "lr": lr, "steps": steps,
                         "sweep": {str(k): v for k, v in sweep.items()},
                         "summary": summarise(per_seed), "per_seed": per_seed})
            head = (f"Long-run study {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on "
                    f"{platform.platform()} ({__import__('os').cpu_count()} CPUs), seeds "
                    f"{args.seeds}, lr tuned on seed {TUNING_SEED}, "
                    f"{(time.time() - started) / 60:.1f} min so far; command: "
                    f"`python benchmarks/long_runs.py {' '.join(argv or sys.argv[1:])}`\n\n")
            (args.out / "long.md").write_text(head + markdown_rows(rows) + "\n")
            (args.out / "long.json").write_text(json.dumps(rows, indent=1, default=str))
            print(markdown_rows(rows[-1:]).splitlines()[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
