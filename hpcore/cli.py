"""Command line: ``hpcore bench`` runs a tuned baseline and the hybrid trainer side by side.

``hpcore bench`` (the main job) compares the plain loop at a learning rate tuned by a small
sweep with the hybrid trainer (default config, told the step budget as ``total_steps``) on one
workload: a PyTorch MLP on scikit-learn's digits, or the NumPy MLP when PyTorch is not
installed. The table reports the hybrid's engine time per step, measured by the benchmark
(the library reads no clock): its wall clock less its backward passes at the baseline's mean
step time, the two runs taken side by side. ``hpcore bench --suite`` runs several
workloads x optimizers x schedules x seeds against Lookahead and raw-update extrapolation too.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hpcore.config import HybridTrainerConfig

__all__ = ["main"]

MAIN_STEPS = 1500


def _parser() -> argparse.ArgumentParser:
    from hpcore.bench.workloads import SUITE_DEFAULT, WORKLOADS

    p = argparse.ArgumentParser(prog="hpcore", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="time-to-target: tuned baseline vs hybrid trainer")
    b.add_argument("--workload", default=None, choices=list(WORKLOADS),
                   help="main job's workload (default torch-mlp-digits, numpy-mlp-digits "
                        "without PyTorch)")
    b.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    b.add_argument("--steps", type=int, default=None,
                   help=f"step budget of every run (main job: {MAIN_STEPS}; suite: per workload)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--schedule", default="constant", choices=["constant", "cosine"])
    b.add_argument("--lr", type=float, default=None, help="skip the sweep and use this rate")
    b.add_argument("--out", type=Path, default=Path("hpcore-results"), help="output folder")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.add_argument("--verbose", action="store_true", help="show the engine's warnings")
    b.add_argument("--threads", type=int, default=1,
                   help="intra-op threads for PyTorch and JAX (default 1: small models run "
                        "fastest and steadiest that way on a CPU)")
    b.add_argument("--suite", action="store_true",
                   help="run the benchmark suite and write a Markdown table")
    b.add_argument("--workloads", default=",".join(SUITE_DEFAULT),
                   help=f"suite workloads, comma-separated (default {','.join(SUITE_DEFAULT)})")
    b.add_argument("--seeds", type=int, default=3, help="suite seeds (default 3)")
    b.add_argument("--optimizers", default=None,
                   help="suite optimizers, comma-separated (default: each workload's own, of "
                        "sgd,adam)")
    b.add_argument("--schedules", default="constant,cosine",
                   help="suite schedules, comma-separated (default constant,cosine)")
    b.add_argument("--floor", default=None,
                   help="the hybrid trainer's floor guard: a share in [0, 1] of the plain "
                        "loop's speed it must keep, or 'off' to let it jump unguarded "
                        "(default: HybridTrainerConfig's, 0.95)")
    return p


def _set_threads(n: int) -> None:
    if "jax" not in sys.modules:  # XLA reads its flags once, at import
        flags = os.environ.get("XLA_FLAGS", "")
        if "intra_op_parallelism_threads" not in flags and n == 1:
            os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false "
                                       "intra_op_parallelism_threads=1").strip()
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(n)


def _bench(args: argparse.Namespace) -> int:
    import structlog

    level = logging.WARNING if args.verbose else logging.ERROR
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level))
    if args.threads < 1:
        print("hpcore bench: --threads must be >= 1", file=sys.stderr)
        return 2
    if args.steps is not None and args.steps < 50:
        print("hpcore bench: --steps must be >= 50", file=sys.stderr)
        return 2
    config = _hybrid_config(args.floor)
    if config is None:
        return 2
    _set_threads(args.threads)
    if args.suite:
        return _suite(args, config)
    return _main_job(args, config)


def _hybrid_config(floor: str | None) -> HybridTrainerConfig | None:
    """The hybrid trainer's config: the default, or with ``--floor``'s guard (None and a
    message if the value is not one)."""
    from hpcore import HybridTrainerConfig

    if floor is None:
        return HybridTrainerConfig()
    if floor.strip().lower() == "off":
        return HybridTrainerConfig(floor=None)
    try:
        return HybridTrainerConfig(floor=float(floor))
    except ValueError as exc:
        print(f"hpcore bench: --floor takes a share in [0, 1] or 'off' (got {floor!r}): {exc}",
              file=sys.stderr)
        return None


def _main_job(args: argparse.Namespace, config: HybridTrainerConfig) -> int:
    from tqdm import tqdm

    from hpcore.bench.report import compute_equivalent, plot, summary_rows, table, write_json
    from hpcore.bench.runner import CurveRun, run_together, time_to_target, tune_lr, warm_up_engine
    from hpcore.bench.suite import TARGET_WINDOW
    from hpcore.bench.workloads import get_task, torch_available

    name = args.workload
    if name is None:
        if torch_available():
            name = "torch-mlp-digits"
        else:
            name = "numpy-mlp-digits"
            print("hpcore bench: PyTorch is not installed; running the NumPy MLP on digits "
                  'instead (pip install "hybrid-predict-trainer[torch]" for the default)',
                  file=sys.stderr)
    try:
        task = get_task(name, args.optimizer)
    except ValueError as exc:
        print(f"hpcore bench: {exc}", file=sys.stderr)
        return 2
    steps = args.steps or MAIN_STEPS
    started = time.time()
    warm_up_engine(task.build(seed=args.seed, lr=1e-3, steps=steps).get_flat().size)
    n_sweep = 0 if args.lr is not None else len(task.lr_grid)
    bar = tqdm(total=(n_sweep + 2) * steps, unit="step", disable=args.quiet,
               desc="tuning lr" if n_sweep else "baseline")
    tick = lambda _i: bar.update(1)  # noqa: E731
    if args.lr is None:
        lr, finals = tune_lr(task, steps=steps, seed=args.seed, schedule=args.schedule,
                             on_step=tick)
    else:
        lr, finals = args.lr, {}
    # Side by side, one validation interval of each in turn: a drift of the machine's speed
    # slows both alike.
    bar.set_description("baseline and hybrid")
    runs = [CurveRun(task, lr=lr, steps=steps, seed=args.seed, schedule=args.schedule,
                     on_step=tick),
            CurveRun(task, lr=lr, steps=steps, seed=args.seed, schedule=args.schedule,
                     config=config, on_step=tick)]
    run_together(runs)
    base, hyb = (r.curve() for r in runs)
    bar.close()
    ttt = time_to_target(base, hyb, window=TARGET_WINDOW)
    rows = summary_rows(base, hyb, ttt)
    tuned = "tuned" if args.lr is None else "given"
    title = f"{task.name}, {args.schedule} lr {lr:g} ({tuned}), {steps} steps, seed {args.seed}"
    if args.floor is not None:
        title += ", floor guard " + ("off" if config.floor is None else f"{config.floor:g}")
    print(f"\n{title}\n")
    print(table(rows, ttt))
    equivalent = compute_equivalent(base, hyb, args.schedule, TARGET_WINDOW)
    print(equivalent["summary"])
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{task.name}-{args.schedule}-seed{args.seed}"
    payload = {
        "workload": task.workload.name, "optimizer": task.optimizer, "schedule": args.schedule,
        "seed": args.seed, "steps": steps, "lr": lr, "floor": config.floor,
        "lr_sweep": {str(k): v for k, v in finals.items()},
        "time_to_target": ttt, "compute_equivalent": equivalent, "rows": rows,
        "machine": platform.platform(),
        "elapsed_s": time.time() - started,
        "curves": {c.label: {"steps": c.steps, "wall": c.wall, "backward": c.backward,
                             "val_loss": c.val_loss, "val_acc": c.val_acc}
                   for c in (base, hyb)},
        "predict_spans": hyb.predict_spans,
        "hybrid_statistics": hyb.statistics,
        "hybrid_config": _config_dict(hyb.config),
    }
    js = write_json(args.out / f"{stem}.json", payload)
    png = plot(args.out / f"{stem}.png", base, hyb, title)
    print(f"\nwrote {js} and {png} ({time.time() - started:.0f} s)")
    return 0


def _config_dict(config: HybridTrainerConfig | None) -> dict[str, Any] | None:
    """The config the hybrid ran with (``total_steps`` included), JSON-ready."""
    if config is None:
        return None
    import attrs

    d = attrs.asdict(config)
    d["predictor"]["kind"] = type(config.predictor).__name__
    return d


def _names(text: str, allowed: tuple[str, ...], flag: str) -> list[str] | None:
    """A comma-separated list of names, each one of ``allowed``; None (and a message) if not."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        print(f"hpcore bench: {flag} takes {', '.join(allowed)} (got {text!r})", file=sys.stderr)
        return None
    return names


def _suite(args: argparse.Namespace, config: HybridTrainerConfig) -> int:
    from tqdm import tqdm

    from hpcore.bench.report import write_json
    from hpcore.bench.runner import warm_up_engine
    from hpcore.bench.suite import SCHEDULES, markdown_table, run_suite, total_steps
    from hpcore.bench.workloads import WORKLOADS, get_task

    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown or not names:
        print(f"hpcore bench: unknown workload(s) {', '.join(unknown) or '(none given)'}; "
              f"known: {', '.join(WORKLOADS)}", file=sys.stderr)
        return 2
    if args.seeds < 1:
        print("hpcore bench: --seeds must be >= 1", file=sys.stderr)
        return 2
    schedules = _names(args.schedules, SCHEDULES, "--schedules")
    optimizers = _names(args.optimizers, ("sgd", "adam"), "--optimizers") \
        if args.optimizers is not None else None
    if schedules is None or (args.optimizers is not None and optimizers is None):
        return 2
    if optimizers and not any(o in WORKLOADS[n].optimizers for n in names for o in optimizers):
        print(f"hpcore bench: no workload of {', '.join(names)} offers {', '.join(optimizers)}",
              file=sys.stderr)
        return 2
    started = time.time()
    for name in names:
        warm_up_engine(get_task(name, WORKLOADS[name].optimizers[0])
                       .build(seed=0, lr=1e-3, steps=100).get_flat().size)
    bar = tqdm(total=total_steps(names, seeds=args.seeds, steps=args.steps, schedules=schedules,
                                 optimizers=optimizers), unit="step", disable=args.quiet)
    configs = len(schedules) * sum(
        sum(optimizers is None or o in optimizers for o in WORKLOADS[n].optimizers) for n in names)
    command = ("hpcore bench --suite " + " ".join(a for a in args.argv[1:] if a != "--suite")).strip()
    args.out.mkdir(parents=True, exist_ok=True)
    md, js = args.out / "suite.md", args.out / "suite.json"
    written: list[int] = []  # configurations written so far

    def write(suite: dict[str, Any]) -> str:
        """The suite so far as Markdown and JSON (rewritten after every configuration)."""
        suite["command"] = command
        table = markdown_table(suite)
        done = len({(r["workload"], r["optimizer"], r["schedule"]) for r in suite["results"]})
        partial = "" if done == configs else f" (partial: {done} of {configs} configurations)"
        header = (f"Suite run {suite['date']} on {platform.platform()} "
                  f"({os.cpu_count()} CPUs), {args.seeds} seeds, "
                  f"{(time.time() - started) / 60:.1f} min{partial}; command: `{command}`")
        md.write_text(header + "\n\n" + table + "\n")
        write_json(js, suite)
        written.append(done)
        return table

    try:
        suite = run_suite(names, seeds=args.seeds, steps=args.steps, schedules=schedules,
                          optimizers=optimizers, config=config, on_step=lambda _i: bar.update(1),
                          on_stage=lambda s: bar.set_description(s), on_config=write)
    except KeyboardInterrupt:
        bar.close()
        where = (f"the {written[-1]} of {configs} configurations finished are in {md} and {js}"
                 if written else "no configuration had finished; nothing was written")
        print(f"\nhpcore bench: interrupted; {where}", file=sys.stderr)
        return 130
    bar.close()
    table = write(suite)
    print("\n" + table)
    print(f"\nwrote {md} and {js} ({(time.time() - started) / 60:.1f} min)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hpcore`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    args.argv = argv  # the suite records the command that made it
    if args.command == "bench":
        return _bench(args)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
