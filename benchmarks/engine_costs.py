"""The hybrid core's own cost: time per step by kind, and extra memory while jumping.

Time: a PyTorch MLP of about ``--params`` parameters with AdamW trains through jumps (a small
cadence so that every kind of step occurs); around each call of the core (``after_full`` on
unobserved and observed full steps, ``predicted``) the wall time is taken, and reported as a
median in microseconds and as a share of the plain step's median (forward, backward, AdamW).

Memory: the same with ``--memory`` on a model of ``--params`` parameters (10M by default for
the memory run): the process's resident set is read after every step (``/proc/self/statm``);
the peak above the resident set before wrapping, in units of N float32 numbers, is reported
beside the design's bound ``(history_size + 4) N`` plus one copy of the optimizer state
(AdamW: 2 N).

    python benchmarks/engine_costs.py                       # time, 420k parameters
    python benchmarks/engine_costs.py --memory --params 10000000

Figures on the 2-core CPU VM are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from hpcore import HybridTrainerConfig, LinearConfig
from hpcore.adapters.torch import HybridOptimizer

CFG = HybridTrainerConfig(history_size=10, snapshot_interval=8, predictor=LinearConfig(window=10),
                          full_steps=30, correct_steps=30, max_predict_steps=60, check_interval=20,
                          floor=None)


def model_of(params: int) -> torch.nn.Module:
    width = max(16, int((params / 3) ** 0.5))
    return torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU(),
                               torch.nn.Linear(width, width), torch.nn.ReLU(),
                               torch.nn.Linear(width, width), torch.nn.ReLU(),
                               torch.nn.Linear(width, 10))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=int, default=420_000)
    ap.add_argument("--steps", type=int, default=600)
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
    base_rss = rss_bytes()
    opt = HybridOptimizer(inner, CFG)
    core = opt._core  # timed from outside: the library itself reads no clock
    times: dict[str, list[float]] = {"full, not observed": [], "full, observed": [], "predicted": []}
    peak = base_rss
    for i in range(args.steps):
        if opt.need_grads:
            observed = core.reads_loss
            opt.zero_grad()
            xb, yb = batch(i)
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            inner_t0 = time.perf_counter()
            opt.optimizer.step()  # what the wrapper calls; timed apart from the core
            value, norm = float(loss), opt._flat.grad_norm()
            t0 = time.perf_counter()
            core.before_full()
            core.after_full(value, norm)
            t1 = time.perf_counter()
            del inner_t0
            times["full, observed" if observed else "full, not observed"].append(t1 - t0)
        else:
            t0 = time.perf_counter()
            core.predicted()
            times["predicted"].append(time.perf_counter() - t0)
        if args.memory:
            peak = max(peak, rss_bytes())
    stats = opt.statistics()
    plain_med = statistics.median(plain[5:])
    out = {"params": n, "plain_step_ms": plain_med * 1e3, "jumps": stats.jumps,
           "rollbacks": stats.rollbacks, "predicted": stats.predicted_steps}
    print(f"N = {n:,} parameters, plain AdamW step {plain_med * 1e3:.2f} ms; "
          f"{stats.jumps} jumps, {stats.rollbacks} rolled back, {stats.predicted_steps} predicted")
    print(f"{'step kind':<22}{'count':>7}{'median us':>11}{'of a plain step':>17}")
    for kind, ts in times.items():
        if ts:
            med = statistics.median(ts)
            out[kind] = {"count": len(ts), "median_us": med * 1e6, "share": med / plain_med}
            print(f"{kind:<22}{len(ts):>7}{med * 1e6:>11.1f}{100 * med / plain_med:>16.2f}%")
    if args.memory:
        extra = (peak - base_rss) / (4 * n)
        bound = CFG.history_size + 4 + 2
        out["extra_memory_N"] = extra
        print(f"peak extra memory: {extra:.1f} N float32 (bound (history_size + 4) N + AdamW "
              f"state 2 N = {bound} N)")
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    np.seterr()


if __name__ == "__main__":
    main()
