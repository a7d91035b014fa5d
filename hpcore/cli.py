"""Command line: ``hpcore bench`` runs a tuned baseline and the hybrid trainer side by side.

``hpcore bench`` (the main job) compares the plain loop at a tuned learning rate with the
hybrid trainer (default config, told the step budget as ``total_steps``) on one long-run
workload: the char transformer on Shakespeare with AdamW for 5,000 steps at the rate recorded
for it (tuned on seed 100), or the NumPy MLP on digits when PyTorch is not installed; other
rates come from a sweep of the plain loop on the run's seed (``--tune`` forces one). Under a
constant rate the baseline runs on to 1.5x the budget beside the hybrid, so that its curve is
the compute-equivalent frontier: the headline is the share of the baseline's backward passes
and seconds the hybrid needed for its final loss. The table reports time-to-target at the
budget and the hybrid's engine time per step, measured by the benchmark (the library reads no
clock): its wall clock less its backward passes at the baseline's mean step time, the two
runs taken side by side. ``hpcore bench --suite`` runs several workloads x optimizers x
schedules x seeds against Lookahead and raw-update extrapolation too.
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
    from hpcore.bench.runner import Curve
    from hpcore.bench.workloads import Task
    from hpcore.config import HybridTrainerConfig

__all__ = ["MAIN_WORKLOAD", "main"]

MAIN_WORKLOAD = "torch-chartf-long"  # the main job's workload
FALLBACK_WORKLOAD = "numpy-mlp-digits"  # without PyTorch
OPTIMIZERS = ("sgd", "adam", "adamw")


def _parser() -> argparse.ArgumentParser:
    from hpcore.bench.suite import DEFAULT_SCHEDULES, SCHEDULES
    from hpcore.bench.workloads import SUITE_DEFAULT, WORKLOADS

    p = argparse.ArgumentParser(prog="hpcore", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="time-to-target: tuned baseline vs hybrid trainer")
    b.add_argument("--workload", default=None, choices=list(WORKLOADS),
                   help=f"main job's workload (default {MAIN_WORKLOAD}, {FALLBACK_WORKLOAD} "
                        "without PyTorch)")
    b.add_argument("--optimizer", default=None, choices=list(OPTIMIZERS),
                   help="main job's optimizer (default: the workload's first)")
    b.add_argument("--steps", type=int, default=None,
                   help="step budget of every run (default: the workload's own)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--schedule", default="constant", choices=list(SCHEDULES))
    b.add_argument("--lr", type=float, default=None,
                   help="main job: use this rate (default: the workload's recorded one, else "
                        "a sweep)")
    b.add_argument("--tune", action="store_true",
                   help="main job: tune the rate by a sweep on --seed even where one is recorded")
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
                        f"{','.join(OPTIMIZERS)})")
    b.add_argument("--schedules", default=",".join(DEFAULT_SCHEDULES),
                   help=f"suite schedules, comma-separated, of {','.join(SCHEDULES)} "
                        f"(default {','.join(DEFAULT_SCHEDULES)})")
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


def _resolve(args: argparse.Namespace) -> tuple[Task, int, float | None, str]:
    """The main job's task, step budget and learning rate, and where the rate comes from:
    ``"given"`` (``--lr``), ``"recorded"`` (the workload's rate tuned at its budget) or
    ``"sweep"`` (rate ``None``: the caller tunes it on ``--seed``).

    Raises:
        ValueError: an unknown workload, an optimizer the workload does not run, or both
            ``--lr`` and ``--tune``.
    """
    from hpcore.bench.workloads import WORKLOADS, get_task, torch_available

    if args.lr is not None and args.tune:
        msg = "--lr and --tune both choose the rate; give one"
        raise ValueError(msg)
    name = args.workload or (MAIN_WORKLOAD if torch_available() else FALLBACK_WORKLOAD)
    if name not in WORKLOADS:
        msg = f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}"
        raise ValueError(msg)
    task = get_task(name, args.optimizer or WORKLOADS[name].optimizers[0])
    steps = args.steps or task.workload.steps
    if args.lr is not None:
        return task, steps, args.lr, "given"
    # A recorded rate was tuned at the workload's budget: another budget needs its own sweep.
    recorded = task.tuned_lr(args.schedule) if steps == task.workload.steps else None
    if recorded is not None and not args.tune:
        return task, steps, recorded, "recorded"
    return task, steps, None, "sweep"


def _lr_text(lr: float, how: str, seed: int) -> str:
    """The learning rate and where it came from, for the title."""
    from hpcore.bench.workloads import TUNED_SEED

    where = {"given": "(given)", "recorded": f"tuned on seed {TUNED_SEED} (recorded)",
             "sweep": f"tuned on seed {seed} (sweep)"}[how]
    return f"lr {lr:g} {where}"


def _main_job(args: argparse.Namespace, config: HybridTrainerConfig) -> int:
    """The main job: resolve the task and rate, run the baseline and the hybrid, report."""
    from hpcore.bench.runner import warm_up_engine

    try:
        task, steps, lr, how = _resolve(args)
    except ValueError as exc:
        print(f"hpcore bench: {exc}", file=sys.stderr)
        return 2
    if args.workload is None and task.workload.name != MAIN_WORKLOAD:
        print("hpcore bench: PyTorch is not installed; running the NumPy MLP on digits "
              'instead (pip install "hybrid-predict-trainer[torch]" for the default)',
              file=sys.stderr)
    started = time.time()
    try:
        warm_up_engine(task.build(seed=args.seed, lr=1e-3, steps=steps).get_flat().size)
    except ModuleNotFoundError as exc:  # the workload's data ship in a package not installed
        print(f"hpcore bench: {exc}", file=sys.stderr)
        return 2
    lr, finals, frontier, hyb = _run_main(args, task, steps, lr, config)
    _report_main(args, task, steps, (lr, how, finals), frontier, hyb, started)
    return 0


def _baseline_steps(steps: int, schedule: str) -> int:
    """How far the main job's baseline runs: under a constant rate on past the budget (a
    shorter run is the longer one's prefix, so its curve is the frontier), else the budget."""
    from hpcore.bench.suite import OVERRUN

    return round(OVERRUN * steps) if schedule == "constant" else steps


def _run_main(args: argparse.Namespace, task: Task, steps: int, lr: float | None,
              config: HybridTrainerConfig) -> tuple[float, dict[float, float], Curve, Curve]:
    """The sweep (where ``lr`` is None), then the baseline and the hybrid side by side:
    ``(lr, the sweep's final losses, the baseline's whole curve, the hybrid's)``."""
    from tqdm import tqdm

    from hpcore.bench.runner import CurveRun, run_together, tune_lr

    base_steps = _baseline_steps(steps, args.schedule)
    n_sweep = len(task.lr_grid) if lr is None else 0
    bar = tqdm(total=n_sweep * steps + base_steps + steps, unit="step", disable=args.quiet,
               desc="tuning lr" if n_sweep else "baseline and hybrid")
    tick = lambda _i: bar.update(1)  # noqa: E731
    finals: dict[float, float] = {}
    if lr is None:
        lr, finals = tune_lr(task, steps=steps, seed=args.seed, schedule=args.schedule,
                             on_step=tick)
    # Side by side, one validation interval of each in turn: a drift of the machine's speed
    # slows both alike (the baseline's steps past the budget run alone).
    bar.set_description("baseline and hybrid")
    runs = [CurveRun(task, lr=lr, steps=steps, seed=args.seed, schedule=args.schedule,
                     on_step=tick, run_steps=base_steps),
            CurveRun(task, lr=lr, steps=steps, seed=args.seed, schedule=args.schedule,
                     config=config, on_step=tick)]
    run_together(runs)
    bar.close()
    frontier, hyb = (r.curve() for r in runs)
    return lr, finals, frontier, hyb


def _report_main(args: argparse.Namespace, task: Task, steps: int,
                 rate: tuple[float, str, dict[float, float]], frontier: Curve, hyb: Curve,
                 started: float) -> None:
    """Print the headline (compute-equivalent) and the table; write the JSON and the plot.
    ``rate`` is ``(lr, where it came from, the sweep's final losses)``."""
    from hpcore.bench import report
    from hpcore.bench.runner import time_to_target, truncated
    from hpcore.bench.suite import TARGET_WINDOW

    lr, how, finals = rate
    base = truncated(frontier, steps)  # the baseline at the budget, for the table
    ttt = time_to_target(base, hyb, window=TARGET_WINDOW)
    rows = report.summary_rows(base, hyb, ttt)
    equivalent = report.compute_equivalent(frontier, hyb, args.schedule, TARGET_WINDOW)
    title = _title(args, task, steps, lr, how, int(frontier.steps[-1]), hyb.config)
    print(f"\n{title}\n")
    print(equivalent["summary"] + "\n")
    print(report.table(rows, ttt))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{task.name}-{args.schedule}-seed{args.seed}"
    # the baseline's (backward passes, seconds, smoothed loss) points; none under an annealed
    # schedule, where its curve is no frontier
    points = (report.frontier_points(frontier, TARGET_WINDOW) if args.schedule == "constant"
              else None)
    payload = {
        "workload": task.workload.name, "optimizer": task.optimizer, "schedule": args.schedule,
        "seed": args.seed, "steps": steps, "baseline_steps": int(frontier.steps[-1]),
        "lr": lr, "lr_from": how, "floor": hyb.config.floor if hyb.config else None,
        "lr_sweep": {str(k): v for k, v in finals.items()},
        "time_to_target": ttt, "compute_equivalent": equivalent,
        "frontier": points,
        "rows": rows,
        "machine": platform.platform(),
        "elapsed_s": time.time() - started,
        "curves": {c.label: {"steps": c.steps, "wall": c.wall, "backward": c.backward,
                             "val_loss": c.val_loss, "val_acc": c.val_acc}
                   for c in (frontier, hyb)},
        "predict_spans": hyb.predict_spans,
        "hybrid_statistics": hyb.statistics,
        "hybrid_config": _config_dict(hyb.config),
    }
    js = report.write_json(args.out / f"{stem}.json", payload)
    png = report.plot(args.out / f"{stem}.png", frontier, hyb, title, equivalent=equivalent,
                      window=TARGET_WINDOW)
    print(f"\nwrote {js} and {png} ({time.time() - started:.0f} s)")


def _title(args: argparse.Namespace, task: Task, steps: int, lr: float, how: str,
           base_steps: int, config: HybridTrainerConfig | None) -> str:
    """The run in one line: task, schedule, rate and its origin, budget, seed, guard."""
    title = (f"{task.name}, {args.schedule} {_lr_text(lr, how, args.seed)}, {steps} steps, "
             f"seed {args.seed}")
    if args.floor is not None and config is not None:
        title += ", floor guard " + ("off" if config.floor is None else f"{config.floor:g}")
    if base_steps > steps:
        title += f"; baseline run on to {base_steps} steps as the frontier"
    return title


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
    optimizers = _names(args.optimizers, OPTIMIZERS, "--optimizers") \
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
