"""Command line: ``hpcore bench`` runs a tuned baseline and the hybrid trainer side by side."""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hpcore", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="time-to-target: tuned baseline vs hybrid trainer")
    b.add_argument("--workload", default="numpy-mlp-digits", choices=["numpy-mlp-digits"])
    b.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    b.add_argument("--steps", type=int, default=1500, help="step budget of every run")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--schedule", default="constant", choices=["constant", "cosine"])
    b.add_argument("--lr", type=float, default=None, help="skip the sweep and use this rate")
    b.add_argument("--out", type=Path, default=Path("hpcore-results"), help="output folder")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _bench(args: argparse.Namespace) -> int:
    import structlog
    from tqdm import tqdm

    from hpcore import HybridTrainerConfig
    from hpcore.bench.report import plot, summary_rows, table, write_json
    from hpcore.bench.runner import digits_mlp, run_curve, time_to_target, tune_lr

    if args.steps < 50:
        print("hpcore bench: --steps must be >= 50", file=sys.stderr)
        return 2
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    work = digits_mlp(args.seed, args.optimizer)
    n_sweep = 0 if args.lr is not None else len(work.lr_grid)
    bar = tqdm(total=(n_sweep + 2) * args.steps, unit="step", disable=args.quiet,
               desc="tuning lr" if n_sweep else "baseline")
    tick = lambda _i: bar.update(1)  # noqa: E731
    started = time.time()
    if args.lr is None:
        lr, finals = tune_lr(work, steps=args.steps, seed=args.seed, schedule=args.schedule,
                             on_step=tick)
    else:
        lr, finals = args.lr, {}
    bar.set_description("baseline")
    base = run_curve(work, lr=lr, steps=args.steps, seed=args.seed, schedule=args.schedule,
                     on_step=tick)
    bar.set_description("hybrid")
    hyb = run_curve(work, lr=lr, steps=args.steps, seed=args.seed, schedule=args.schedule,
                    config=HybridTrainerConfig(), on_step=tick)
    bar.close()
    ttt = time_to_target(base, hyb)
    rows = summary_rows(base, hyb, ttt)
    title = f"{work.name}, {args.schedule} lr {lr:g} (tuned), seed {args.seed}"
    print(f"\n{title}\n")
    print(table(rows, ttt))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{work.name}-{args.schedule}-seed{args.seed}"
    payload = {
        "workload": work.name, "schedule": args.schedule, "seed": args.seed,
        "steps": args.steps, "lr": lr, "lr_sweep": {str(k): v for k, v in finals.items()},
        "time_to_target": ttt, "rows": rows, "machine": platform.platform(),
        "elapsed_s": time.time() - started,
        "curves": {c.label: {"steps": c.steps, "wall": c.wall, "backward": c.backward,
                             "val_loss": c.val_loss, "val_acc": c.val_acc}
                   for c in (base, hyb)},
        "hybrid_statistics": hyb.statistics,
    }
    js = write_json(args.out / f"{stem}.json", payload)
    png = plot(args.out / f"{stem}.png", base, hyb, title)
    print(f"\nwrote {js} and {png}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hpcore`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "bench":
        return _bench(args)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
