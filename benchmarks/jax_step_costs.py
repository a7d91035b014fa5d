"""Two costs of a JAX step on a CPU that the hybrid trainer's design answers to.

Usage: ``python benchmarks/jax_step_costs.py`` (JAX digits MLP of the suite, XLA on one
intra-op thread as ``hpcore bench`` runs it).

1. Host work after the wait. A loop that waits for each step's loss (``float(loss)``) and
   then spends a little Python before dispatching the next step is slowed by much more than
   that Python's own time, while the same work done between dispatch and wait costs nothing
   (the engine's short path for lean dormant steps is laid out for this). Printed: median
   microseconds per step over alternating blocks, for the plain step alone and with an
   object built (a ``StepResult``) or 2 us of busy work after the wait, or both before it.
2. First calls. Each jitted function's first call costs milliseconds beyond the compilation
   that ``jax.monitoring`` reports (and the suite excludes): printed per function of the
   adapter's port (full step, lean step, parameter sync, commit, forward) and the plain step.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                      "intra_op_parallelism_threads=1")

from hpcore import HybridTrainerConfig, Phase, StepResult
from hpcore.bench.workloads import compile_seconds, get_task

BLOCK, BLOCKS = 50, 40


def _busy(seconds: float) -> None:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        pass


def host_gap() -> None:
    task = get_task("jax-mlp-digits", "sgd")
    run = task.build(seed=0, lr=0.03, steps=50_000)
    port = run.make_hybrid(HybridTrainerConfig(floor=None)).engine.port
    data = run.batches()

    def dispatch(batch: Any) -> Any:
        port.params, port.opt_state, loss = port._lean_step(port.params, port.opt_state, batch)
        return loss

    def plain(b: Any) -> Any:
        return float(dispatch(b))

    def result_after(b: Any) -> Any:
        loss = float(dispatch(b))
        return StepResult(0, Phase.FULL, loss, False, 0.0, False)

    def busy_after(b: Any) -> Any:
        loss = float(dispatch(b))
        _busy(2e-6)
        return loss

    def both_before(b: Any) -> Any:
        pending = dispatch(b)
        result = StepResult(0, Phase.FULL, None, False, 0.0, False)
        _busy(2e-6)
        float(pending)
        return result

    loops: dict[str, Callable[[Any], Any]] = {
        "plain": plain, "StepResult after the wait": result_after,
        "2 us busy after the wait": busy_after, "both before the wait": both_before}
    for f in loops.values():
        for _ in range(200):
            f(next(data))
    times: dict[str, list[float]] = {k: [] for k in loops}
    for _ in range(BLOCKS):
        for name, f in loops.items():
            batches = [next(data) for _ in range(BLOCK)]
            t0 = time.perf_counter()
            for b in batches:
                f(b)
            times[name].append(1e6 * (time.perf_counter() - t0) / BLOCK)
    print("host work around the wait for the loss (median us per step):")
    for name, ts in times.items():
        print(f"  {name:28s} {statistics.median(ts):7.1f}")


def first_calls() -> None:
    task = get_task("jax-mlp-digits", "sgd")
    data = task.build(seed=0, lr=0.03, steps=800).batches()

    def timed(name: str, f: Callable[..., Any], *args: Any) -> None:
        for call in ("first", "second"):
            c0, t0 = compile_seconds(), time.perf_counter()
            out = f(*args)
            if out is not None and not hasattr(out, "loss"):
                float(out)
            wall = time.perf_counter() - t0
            compiled = compile_seconds() - c0
            print(f"  {name:12s} {call:6s} call: {1e3 * wall:8.2f} ms, compile {1e3 * compiled:8.2f}"
                  f" ms, rest {1e3 * (wall - compiled):6.2f} ms")
            if name in ("sync_flat", "commit"):
                port._stale = True

    print("first and second calls (compile: what jax.monitoring reports):")
    run = task.build(seed=0, lr=0.03, steps=800)
    run.plain_step(next(data))  # JAX's own start-up, not a function's
    run = task.build(seed=1, lr=0.03, steps=800)
    timed("plain step", run.plain_step, next(data))
    hybrid = task.build(seed=0, lr=0.03, steps=800)
    port = hybrid.make_hybrid(HybridTrainerConfig(total_steps=800)).engine.port
    timed("full_step", port.full_step, next(data))
    timed("lean_step", port.lean_step, next(data))
    timed("sync_flat", port.sync_flat)
    timed("commit", port.commit_params)
    timed("forward", port.forward_loss, next(data))


if __name__ == "__main__":
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    host_gap()
    first_calls()
