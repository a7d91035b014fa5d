"""The hybrid core's own cost: time per step by kind, and extra memory while jumping.

Time: a PyTorch MLP of about ``--params`` parameters with AdamW trains through jumps (the
default cadence with the floor guard off, or ``--cadence fast``); around what the wrapper
adds (reading the loss, the gradient norm where the core uses it, ``after_full`` on
unobserved and observed full steps, ``predicted``; the inner optimizer's step left out) the
wall time is taken, and reported as a median and a mean in microseconds (the mean holds the
jumps' starts, landings and judgements) and as a share of the plain step's median (forward, backward, AdamW).

Memory: with ``--memory``, the same loop runs twice more in fresh processes, once plain and
once wrapped; each reads its resident set (``/proc/self/statm``) after every step, and the
peak above the resident set before the loop (after 5 plain steps) is taken. The hybrid's
peak less the plain loop's (so the step's own allocations count alike), in units of N
float32 numbers, is reported beside the design's bound ``(history_size + 4) N`` plus one
copy of the optimizer state (AdamW: 2 N).

    python benchmarks/engine_costs.py                       # time, 420k parameters
    python benchmarks/engine_costs.py --memory --params 10000000 --steps 300 --cadence fast

Figures on the 2-core CPU VM are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

import torch

from hpcore import HybridTrainerConfig, LinearConfig
from hpcore.adapters.torch import HybridOptimizer
from hpcore.bench.runner import warm_up_engine

# The default cadence (floor off, so the first jump comes once the history is ready), and a
# fast one whose every step kind comes within a few hundred steps (the memory run).
DEFAULT = HybridTrainerConfig(floor=None)
CFG = HybridTrainerConfig(history_size=10, snapshot_interval=8, predictor=LinearConfig(window=10),
                          full_steps=30, correct_steps=30, max_predict_steps=60, check_interval=20,
                          floor=None)


def model_of(params: int) -> torch.nn.Module:
    width = max(16, int((params / 2) ** 0.5))
    return torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU(),
                               torch.nn.Linear(width, width), torch.nn.ReLU(),
                               torch.nn.Linear(width, width), torch.nn.ReLU(),
                               torch.nn.Linear(width, 10))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss(params: int, steps: int, hybrid: bool) -> float:
    """Peak resident set above the start of the loop, in units of N float32 (own process)."""
    import subprocess
    import sys

    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import engine_costs as e; print(e._peak({params}, {steps}, {hybrid}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _peak(params: int, steps: int, hybrid: bool) -> float:
    torch.manual_seed(0)
    model = model_of(params)
    n = sum(p.numel() for p in model.parameters())
    x, y = torch.randn(4096, 64), torch.randint(0, 10, (4096,))
    inner = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(5):
        inner.zero_grad()
        torch.nn.functional.cross_entropy(model(x[:64]), y[:64]).backward()
        inner.step()
    base = peak = rss_bytes()
    opt = HybridOptimizer(inner, CFG) if hybrid else inner  # the fast cadence
    for i in range(steps):
        idx = torch.arange(i * 64, i * 64 + 64) % 4096
        if not hybrid or opt.need_grads:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step(loss) if hybrid else opt.step()
        else:
            opt.step()
        peak = max(peak, rss_bytes())
    return (peak - base) / (4 * n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=int, default=420_000)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--cadence", choices=("default", "fast"), default="default",
                    help="default: HybridTrainerConfig(floor=None); fast: small intervals")
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--out", default="hpcore-results/engine_costs.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = model_of(args.params)
    n = sum(p.numel() for p in model.parameters())
    x, y = torch.randn(4096, 64), torch.randint(0, 10, (4096,))
    inner = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def batch(i: int):
        idx = torch.arange(i * 64, i * 64 + 64) % 4096
        return x[idx], y[idx]

    plain = []
    for i in range(30):  # the plain loop's step, with the optimizer's state created
        t0 = time.perf_counter()
        inner.zero_grad()
        torch.nn.functional.cross_entropy(model(batch(i)[0]), batch(i)[1]).backward()
        inner.step()
        plain.append(time.perf_counter() - t0)
    warm_up_engine(n)  # the JIT kernels' compilation is start-up, not a step's cost
    opt = HybridOptimizer(inner, DEFAULT if args.cadence == "default" else CFG)
    core = opt._core  # timed from outside: the library itself reads no clock
    times: dict[str, list[float]] = {"full, not observed": [], "full, observed": [], "predicted": []}
    for i in range(args.steps):
        if opt.need_grads:
            observed = core.reads_loss
            opt.zero_grad()
            xb, yb = batch(i)
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            t0 = time.perf_counter()  # what the wrapper adds around the inner step
            value = float(loss.detach())
            norm = opt._flat.grad_norm() if core.reads_grad_norm else math.nan
            core.before_full()
            t_inner = time.perf_counter()
            opt.optimizer.step()  # the user's optimizer: not the engine's time
            t_inner = time.perf_counter() - t_inner
            core.after_full(value, norm)
            t1 = time.perf_counter()
            times["full, observed" if observed else "full, not observed"].append(
                t1 - t0 - t_inner)
        else:
            t0 = time.perf_counter()
            core.predicted()
            times["predicted"].append(time.perf_counter() - t0)
    stats = opt.statistics()
    plain_med = statistics.median(plain[5:])
    out = {"params": n, "plain_step_ms": plain_med * 1e3, "jumps": stats.jumps,
           "rollbacks": stats.rollbacks, "predicted": stats.predicted_steps}
    print(f"N = {n:,} parameters, plain AdamW step {plain_med * 1e3:.2f} ms; "
          f"{stats.jumps} jumps, {stats.rollbacks} rolled back, {stats.predicted_steps} predicted")
    print(f"{'step kind':<22}{'count':>7}{'median us':>11}{'mean us':>9}{'mean of a plain step':>22}")
    for kind, ts in times.items():
        if ts:
            med, mean = statistics.median(ts), statistics.fmean(ts)
            out[kind] = {"count": len(ts), "median_us": med * 1e6, "mean_us": mean * 1e6,
                         "share": mean / plain_med}
            print(f"{kind:<22}{len(ts):>7}{med * 1e6:>11.1f}{mean * 1e6:>9.1f}"
                  f"{100 * mean / plain_med:>21.2f}%")
    every = [t for ts in times.values() for t in ts]
    out["all"] = {"mean_us": statistics.fmean(every) * 1e6,
                  "share": statistics.fmean(every) / plain_med}
    print(f"{'every step':<22}{len(every):>7}{'':>11}{out['all']['mean_us']:>9.1f}"
          f"{100 * out['all']['share']:>21.2f}%")
    if args.memory:
        plain_peak = peak_rss(args.params, args.steps, hybrid=False)
        hybrid_peak = peak_rss(args.params, args.steps, hybrid=True)
        extra = hybrid_peak - plain_peak
        bound = CFG.history_size + 4 + 2
        out.update(extra_memory_N=extra, plain_peak_N=plain_peak, hybrid_peak_N=hybrid_peak)
        print(f"peak memory above the loop's start: plain {plain_peak:.1f} N, hybrid "
              f"{hybrid_peak:.1f} N float32; extra {extra:.1f} N (bound (history_size + 4) N + "
              f"AdamW state 2 N = {bound} N)")
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
