"""What a dormant engine's short path costs a step on the smallest models, piece by piece.

Usage: ``python benchmarks/short_path_costs.py [workload ...]`` (default: the NumPy
breast-cancer softmax regression and the JAX digits MLP, the two suite rows where the floor
does not hold).

Each workload's plain loop and four hybrid variants run side by side in alternating blocks of
50 steps (a drift of the machine's speed falls on all alike), 60 blocks after a warm-up,
each on its own model, the engine forced into one long run of short-path steps:

- ``port lean``: the port's lean step alone (``float(port.lean_step(batch))``);
- ``call chain``: ``trainer.step`` down to the lean step, nothing else;
- ``+ result``: the same and a ``StepResult`` built before the loss is read;
- ``+ tuple after``: the same with a NamedTuple result built after the loss is read (a
  tuple cannot be completed later);
- ``short path``: the engine's real short path.

Printed: median microseconds per step and the difference to the plain loop. Then the cost of
building one step's result object in a tight loop (the attrs frozen class the engine returns,
a NamedTuple, a plain slotted class): on the NumPy model a result object costs more in place
than in a tight loop, and on JAX any work after the wait for the loss costs several times
its length (why the engine builds its result before that wait, and keeps it an attrs class
it can complete after: a tuple cannot be).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any, NamedTuple

import attrs

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                      "intra_op_parallelism_threads=1")

from hpcore import HybridTrainerConfig, Phase, StepResult
from hpcore.bench.workloads import WORKLOADS, get_task
from hpcore.engine import HybridEngine

BLOCK, BLOCKS, WARM = 50, 60, 300
DEFAULT = ("numpy-softmax-breastcancer", "jax-mlp-digits")
_set = object.__setattr__


def _call_chain(self: HybridEngine, batch: Any) -> Any:
    self._lean_run -= 1
    return float(self._lean(batch))


def _with_result(self: HybridEngine, batch: Any) -> Any:
    self._lean_run -= 1
    pending = self._lean(batch)
    result = StepResult(0, Phase.FULL, None, False, 0.0, False)
    _set(result, "loss", float(pending))
    return result


def _with_tuple(self: HybridEngine, batch: Any) -> Any:
    self._lean_run -= 1
    return _Tuple(0, Phase.FULL, float(self._lean(batch)), False, 0.0, False)


def measure(name: str) -> dict[str, float]:
    """Median microseconds per step of the plain loop and each variant."""
    task = get_task(name, WORKLOADS[name].optimizers[0])
    lr = task.lr_grid[len(task.lr_grid) // 2]
    variants: dict[str, Callable[[HybridEngine, Any], Any] | None] = {
        "port lean": None, "call chain": _call_chain, "+ result": _with_result,
        "+ tuple after": _with_tuple, "short path": HybridEngine._short_step}
    runs = {k: task.build(seed=0, lr=lr, steps=50_000) for k in ("plain", *variants)}
    trainers = {k: runs[k].make_hybrid(HybridTrainerConfig(total_steps=10**7)) for k in variants}
    data = {k: run.batches() for k, run in runs.items()}
    for k, trainer in trainers.items():
        for _ in range(WARM):
            trainer.step(next(data[k]))
        engine = trainer.engine
        engine.statistics()  # brings the counters up to date before the run is forced
        engine._dormant = 10**9
        engine._lean_run = engine._lean_planned = 10**8
        engine._lean_end = engine.step_count + 10**8
    for _ in range(WARM):
        runs["plain"].plain_step(next(data["plain"]))
    port = trainers["port lean"].engine.port
    steps: dict[str, Callable[[Any], Any]] = {
        "plain": runs["plain"].plain_step,
        "port lean": lambda b: float(port.lean_step(b)),
        **{k: trainers[k].step for k in ("call chain", "+ result", "+ tuple after", "short path")},
    }
    real = HybridEngine._short_step
    times: dict[str, list[float]] = {k: [] for k in steps}
    try:
        for _ in range(BLOCKS):
            for k, step in steps.items():
                variant = variants.get(k)
                if variant is not None:
                    HybridEngine._short_step = variant  # type: ignore[method-assign]
                batches = [next(data[k]) for _ in range(BLOCK)]
                t0 = time.perf_counter()
                for b in batches:
                    step(b)
                times[k].append(1e6 * (time.perf_counter() - t0) / BLOCK)
    finally:
        HybridEngine._short_step = real  # type: ignore[method-assign]
    return {k: statistics.median(ts[4:]) for k, ts in times.items()}


# StepResult's fields as a NamedTuple and as a plain slotted class, for the comparison.
_FIELDS = [(f.name, f.type) for f in attrs.fields(StepResult)]
_Tuple = NamedTuple("_Tuple", _FIELDS)  # type: ignore[misc]


class _Slots:
    __slots__ = tuple(name for name, _ in _FIELDS)

    def __init__(self, step: int, phase: Phase, loss: float | None, was_predicted: bool,
                 confidence: float, rolled_back: bool) -> None:
        self.step, self.phase, self.loss = step, phase, loss
        self.was_predicted, self.confidence, self.rolled_back = was_predicted, confidence, rolled_back


def result_objects() -> dict[str, float]:
    """Microseconds to build one step's result, in a tight loop."""
    n = 300_000
    return {name: 1e6 * timeit.timeit(lambda cls=cls: cls(1, Phase.FULL, 0.5, False, 0.0, False),
                                      number=n) / n
            for name, cls in (("StepResult (attrs frozen)", StepResult), ("NamedTuple", _Tuple),
                              ("slotted class", _Slots))}


if __name__ == "__main__":
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    for name in sys.argv[1:] or DEFAULT:
        medians = measure(name)
        plain = medians["plain"]
        print(f"{name} (median us per step over blocks; + over the plain loop):")
        for k, v in medians.items():
            print(f"  {k:14s} {v:7.1f}" + ("" if k == "plain" else f"  {v - plain:+5.1f}"))
    print("one step's result object, tight loop (us):")
    for k, v in result_objects().items():
        print(f"  {k:26s} {v:5.2f}")
