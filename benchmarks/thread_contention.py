"""Do the Numba kernels of a jump slow the user's own torch steps? Interleaved, as a ratio.

Usage: ``python benchmarks/thread_contention.py [--threads T] [--neighbours M] [--rounds R]
[--out PATH]`` (default ``--out hpcore-results/thread_contention.json``).

Each case runs in its own process (the thread policy applies once per process, at the first
Numba dispatch): ``follow`` is the kernels' default (Numba's threads follow torch's,
``hpcore.kernels.follow_framework_threads``), ``free`` sets ``HPCORE_NUMBA_THREADS=free`` and
leaves Numba to its own defaults (what users had before). In that process, a ~420k-parameter
MLP (64-512-740-10, synthetic data, batch 128) trains with AdamW on ``T`` torch threads, as
the user set them (default: cores / 2). It first runs ``--pre`` blocks of plain steps before
any kernel call, then ``R`` rounds of: a block of plain steps, a jump's kernels at N = the
number of parameters (``ema_update``, ``lincomb`` over 8 snapshots, ``--horizon`` calls of
``axpy_path``, through the public functions with ``kernels.use("numba")``: auto dispatch would
pick NumPy below 2^19 elements), then a block of full steps after the jump. Only the torch
steps are timed. Meanwhile ``M`` neighbour processes (default: the cores the loop leaves free,
in loops of T threads) train the same plain loop, as other data-parallel ranks or jobs on the
machine do, so a core taken by a stray thread costs what it costs in practice.

Printed per case: torch's threads as set and after the first jump, Numba's threads and
layer, the median step before any kernel, in the plain blocks and after the jumps, and
``ratio`` = after-jump median / plain-block median (interleaved, so a drift of the machine
falls on both). Numba's thread launch changes torch's count once and for good, so under
``free`` the plain blocks after the first jump are slowed too; ``vs_pre`` = after-jump median /
the median before any kernel shows that.

Measured on the 2-core reference VM (torch 2.13 CPU, numba 0.68.1, ``omp`` layer),
``python benchmarks/thread_contention.py`` (T = 1, one neighbour, 8 rounds of 30 steps)::

    policy  torch set->after numba  pre ms  plain ms  after ms  ratio  vs_pre  jump ms
    follow  1 -> 1               1    4.35      4.26      4.27  1.00x   0.98x     8.19
    free    1 -> 2               2    5.61     39.77     59.89  1.51x  10.68x     8.50

With one thread of the user's and a neighbour on the other core, Numba's launch under
``free`` puts torch on 2 threads for good: three OpenMP threads that spin-wait share two cores,
and every step after the first jump costs 10.7x the plain loop's. With the policy the steps
after the jumps cost what the plain ones do. Over seven runs, while other jobs came and went on
the VM: ``follow`` ratio 1.00-1.03 (1.09-1.15 in two runs under a load of 4-6), ``free``
vs_pre 2.1x-15x; the ``pre`` column drifts with that load, the interleaved ratio much less.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ENV_VAR = "HPCORE_NUMBA_THREADS"
POLICIES = ("follow", "free")
SIZES = (64, 512, 740, 10)  # 420,310 parameters
BATCH, CLASSES, SNAPSHOTS, BETA = 128, 10, 8, 0.9


def _build(threads: int, seed: int = 0):
    """Model, optimizer and one training step of the plain loop, on ``threads`` torch threads."""
    import torch

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(seed)
    layers: list = []
    for i, (a, b) in enumerate(itertools.pairwise(SIZES)):
        layers += [torch.nn.Linear(a, b)] + ([torch.nn.ReLU()] if i < len(SIZES) - 2 else [])
    model = torch.nn.Sequential(*layers)
    centres = torch.randn(CLASSES, SIZES[0], generator=gen)
    y = torch.randint(0, CLASSES, (BATCH * 8,), generator=gen)
    x = centres[y] + 0.5 * torch.randn(BATCH * 8, SIZES[0], generator=gen)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    batch = [0]

    def step() -> float:
        i = batch[0] % 8
        batch[0] += 1
        xb, yb = x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(xb), yb).backward()
        opt.step()
        return time.perf_counter() - t0

    return model, step


def _block(step, n: int) -> list[float]:
    return [step() for _ in range(n)]


def worker(args: argparse.Namespace) -> dict:
    """One case: interleaved plain and after-jump blocks in this process (policy from env)."""
    import torch

    model, step = _build(args.threads)
    import numba
    import numpy as np

    from hpcore import kernels

    n = sum(p.numel() for p in model.parameters())
    rng = np.random.default_rng(0)
    theta = rng.standard_normal(n, dtype=np.float32)
    ema, out, origin = np.zeros_like(theta), np.zeros_like(theta), theta.copy()
    ring = rng.standard_normal((SNAPSHOTS, n), dtype=np.float32)
    weights = np.full(SNAPSHOTS, 1.0 / SNAPSHOTS)

    def jump() -> float:
        t0 = time.perf_counter()
        with kernels.use("numba"):
            kernels.ema_update(theta, ema, BETA)
            kernels.lincomb(weights, ring, ema, -1.0, out)
            for k in range(1, args.horizon + 1):
                kernels.axpy_path(theta, origin, out, k / args.horizon)
        return time.perf_counter() - t0

    _block(step, args.warm)
    pre = [t for _ in range(args.pre) for t in _block(step, args.steps)]
    torch_set = torch.get_num_threads()
    plain: list[float] = []
    after: list[float] = []
    jumps: list[float] = []
    torch_after = None
    for _ in range(args.rounds):
        plain += _block(step, args.steps)
        jumps.append(jump())
        torch_after = torch.get_num_threads() if torch_after is None else torch_after
        after += _block(step, args.steps)
    med = statistics.median
    return {
        "policy": os.environ.get(ENV_VAR, "follow"),
        "params": n,
        "torch_threads_set": torch_set,
        "torch_threads_after_jump": torch_after,
        "numba_threads": kernels.numba_threads(),
        "threading_layer": numba.threading_layer(),
        "pre_ms": 1e3 * med(pre),
        "plain_ms": 1e3 * med(plain),
        "after_ms": 1e3 * med(after),
        "ratio": med(after) / med(plain),
        "vs_pre": med(after) / med(pre),
        "jump_ms": 1e3 * med(jumps[1:] or jumps),  # the first jump also loads the twins
    }


def neighbour(args: argparse.Namespace) -> None:
    """The plain loop on its own, until terminated (or ``--neighbour-seconds`` passed)."""
    _, step = _build(args.threads, seed=1)
    _block(step, 20)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    end = time.monotonic() + args.neighbour_seconds
    while time.monotonic() < end:
        _block(step, 10)


def _script_args(args: argparse.Namespace, role: str) -> list[str]:
    keys = ("threads", "warm", "pre", "rounds", "steps", "horizon", "neighbour_seconds")
    opts = [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in keys]
    return [sys.executable, __file__, f"--{role}", *opts]


def run_case(args: argparse.Namespace, policy: str) -> dict:
    """``worker`` in a subprocess under ``policy``, next to ``args.neighbours`` plain loops."""
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR and not k.startswith("NUMBA_")}
    env[ENV_VAR] = policy
    others = [subprocess.Popen(_script_args(args, "neighbour"), stdout=subprocess.PIPE,
                               text=True, env=env) for _ in range(args.neighbours)]
    try:
        for p in others:
            p.stdout.readline()  # "ready": warmed up, so the load is steady from the start
        done = subprocess.run(_script_args(args, "worker"), capture_output=True, text=True,
                              env=env, check=True)
    finally:
        for p in others:
            p.terminate()
            p.wait()
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["neighbours"] = args.neighbours
    return result


def table(results: list[dict]) -> str:
    """The printed table of :func:`main`."""
    head = (f"{'policy':7s} {'torch set->after':16s} {'numba':>5s} {'pre ms':>7s} {'plain ms':>9s} "
            f"{'after ms':>9s} {'ratio':>6s} {'vs_pre':>7s} {'jump ms':>8s}")
    rows = [head]
    for r in results:
        threads = f"{r['torch_threads_set']} -> {r['torch_threads_after_jump']}"
        rows.append(f"{r['policy']:7s} {threads:16s} {r['numba_threads']:5d} {r['pre_ms']:7.2f} "
                    f"{r['plain_ms']:9.2f} {r['after_ms']:9.2f} {r['ratio']:5.2f}x "
                    f"{r['vs_pre']:6.2f}x {r['jump_ms']:8.2f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    """Parse the options, run both cases (or one role of a subprocess), print, write JSON."""
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=max(1, cores // 2),
                        help="torch threads of the measured loop and of each neighbour")
    parser.add_argument("--neighbours", type=int, default=None,
                        help="plain loops running alongside (default: cores // threads - 1)")
    parser.add_argument("--warm", type=int, default=50, help="steps before any measurement")
    parser.add_argument("--pre", type=int, default=3, help="plain blocks before any kernel call")
    parser.add_argument("--rounds", type=int, default=8, help="(plain, jump, after) rounds")
    parser.add_argument("--steps", type=int, default=30, help="steps per block")
    parser.add_argument("--horizon", type=int, default=10, help="axpy_path calls per jump")
    parser.add_argument("--neighbour-seconds", type=float, default=600.0, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path("hpcore-results/thread_contention.json"))
    role = parser.add_mutually_exclusive_group()
    role.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    role.add_argument("--neighbour", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        sys.stdout.write(json.dumps(worker(args)) + "\n")
        return
    if args.neighbour:
        neighbour(args)
        return
    if args.neighbours is None:
        args.neighbours = max(0, cores // args.threads - 1)
    results = [run_case(args, policy) for policy in POLICIES]
    print(f"{cores} cores, {args.threads} torch thread(s), {args.neighbours} neighbour(s), "
          f"{results[0]['params']:,} parameters, {args.rounds} rounds of {args.steps} steps")
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items() if k not in ("worker", "neighbour", "out")}
    args.out.write_text(json.dumps({"cores": cores, "config": config, "results": results},
                                   indent=1))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
