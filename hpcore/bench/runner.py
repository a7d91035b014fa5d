"""Time-to-target runs: a tuned baseline, the hybrid trainer and the peers (DESIGN 9).

Target = the baseline's final validation loss. Validation is timed out of the wall clock, and
so is JAX's JIT warm-up, a one-off cost that a long run amortises: a step in which JAX
compiled (seen through ``jax.monitoring``, :mod:`hpcore.bench.jit_clock`) is left out whole,
since a compiled function's first call costs a few milliseconds beyond the compilation those
events report and the hybrid trainer compiles more functions than the plain loop's one.
Methods:

- ``baseline``: the plain loop (forward, backward, the optimizer's step, the schedule's step);
- ``hybrid``: the adapter's :class:`HybridTrainer` over the same model and optimizer, with a
  config told the step budget as ``total_steps``, and no probe (jumps are judged on the
  Correct phase's training losses);
- ``lookahead``: the plain loop wrapped in :class:`hpcore.bench.lookahead.Lookahead`;
- ``extrapolation``: the engine extrapolating raw updates (:func:`extrapolation_config`),
  DESIGN 5's floor;
- ``control``: the baseline itself, its batches one step out of line (the first is skipped):
  the same method on another draw of the data order, so its time-to-target shows how far the
  metric moves by chance alone.

Runs that are compared can be taken side by side (:func:`run_together`): one validation
interval of each in turn, so that the machine's speed drifting during a run (other tenants,
clock changes) slows all of them alike.

Engine time (:func:`engine_seconds`): the library reads no clock, so the benchmark measures
what a method costs beyond the framework's work itself. Each run counts its timed full steps
(backward passes; a predicted step is no full step); the method's engine time is its wall
clock less those full steps priced at the baseline's mean step time, the baseline taken side
by side with it. It holds everything the method adds: the wrapper's work on every full step
(reading the loss, the gradient norm, the moving average, snapshots), decisions, the
predicted steps themselves (laying the jump) and rollbacks. It is a difference of two
measured times, so it carries their noise and can come out below zero; the ``control`` row
(a plain loop measured the same way) shows how large that noise is.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np

from hpcore.bench.curves import (
    Curve,
    at_step,
    engine_seconds,
    first_reach,
    overhead_pct,
    smoothed,
    step_seconds,
    time_to_target,
    truncated,
)
from hpcore.bench.jit_clock import compile_seconds
from hpcore.bench.lookahead import Lookahead
from hpcore.bench.workloads import Task, get_task
from hpcore.config import HybridTrainerConfig, LinearConfig

__all__ = [
    "METHODS",
    "Curve",
    "CurveRun",
    "at_step",
    "digits_mlp",
    "engine_seconds",
    "extrapolation_config",
    "first_reach",
    "overhead_pct",
    "run_curve",
    "run_together",
    "smoothed",
    "step_seconds",
    "time_to_target",
    "truncated",
    "tune_lr",
    "warm_up_engine",
]

METHODS = ("baseline", "hybrid", "lookahead", "extrapolation", "control")


def digits_mlp(seed: int = 0, optimizer: str = "sgd") -> Task:
    """The NumPy MLP 64-64-10 on scikit-learn's digits, batch 32 (``seed`` is unused: each
    run's seed picks the split, the initial point and the batch order)."""
    del seed
    return get_task("numpy-mlp-digits", optimizer)


def extrapolation_config(**overrides: Any) -> HybridTrainerConfig:
    """The engine extrapolating the last raw update: snapshots of raw ``theta`` every step,
    a two-point line (DESIGN 5: the floor a forecast of the slow trajectory must beat), with
    no floor guard: as a peer it shows what the mechanism does, not what the guard allows."""
    fields: dict[str, Any] = {"snapshot_interval": 1, "snapshot_ema": None,
                              "predictor": LinearConfig(window=2), "history_size": 2,
                              "floor": None}
    fields.update(overrides)
    return HybridTrainerConfig(**fields)


class CurveRun:
    """One method's training run, advanced step by step so that several can run side by
    side (:func:`run_together`); :func:`run_curve` runs one alone.

    ``method`` is one of :data:`METHODS`; left out it is ``"hybrid"`` when ``config`` is given
    and ``"baseline"`` otherwise (``"extrapolation"`` without a config uses
    :func:`extrapolation_config`). ``steps`` is the step budget the schedule is laid over;
    ``run_steps`` (at least ``steps``) lets the run go on past it, and ``stop_at`` ends it at
    the first validation point past the budget whose loss, averaged over the last
    ``stop_window`` points, is at or below that value (a time-to-target run needs no more).
    ``run`` is the workload's run (model, optimizer); ``done`` is true once the run has taken
    its last step or met ``stop_at``; :meth:`curve` is its record so far.
    """

    def __init__(
        self,
        task: Task,
        *,
        lr: float,
        steps: int,
        seed: int,
        schedule: str = "constant",
        config: HybridTrainerConfig | None = None,
        method: str | None = None,
        eval_every: int | None = None,
        on_step: Callable[[int], None] | None = None,
        label: str | None = None,
        run_steps: int | None = None,
        stop_at: float | None = None,
        stop_window: int = 1,
    ) -> None:
        if method is None:
            method = "hybrid" if config is not None else "baseline"
        if method not in METHODS:
            msg = f"method must be one of {', '.join(METHODS)} (got {method!r})"
            raise ValueError(msg)
        if method == "extrapolation" and config is None:
            config = extrapolation_config()
        if method == "hybrid" and config is None:
            config = HybridTrainerConfig()
        if config is not None and config.total_steps is None:
            config = attrs.evolve(config, total_steps=steps)  # the budget, as a schedule knows it
        self.config = config if method in ("hybrid", "extrapolation") else None
        self.method, self.label = method, label or method
        self.steps, self.last = steps, max(run_steps or steps, steps)
        self.eval_every = eval_every or task.eval_every
        self.on_step, self.stop_at, self.stop_window = on_step, stop_at, stop_window
        self.run = task.build(seed=seed, lr=lr, steps=steps, schedule=schedule)
        self._data = self.run.batches()
        if method == "control":
            next(self._data)  # the same loop, one batch out of line with the baseline's
        self.trainer: Any = None
        self.lookahead: Lookahead | None = None
        if method in ("hybrid", "extrapolation"):
            self.trainer = self.run.make_hybrid(config)
            self._step = self.trainer.step
        elif method == "lookahead":
            self.lookahead = Lookahead(self.run.plain_step, self.run.get_flat, self.run.set_flat,
                                       k=5, alpha=0.5)
            self._step = self.lookahead.step
        else:
            self._step = self.run.plain_step
        self.spans: list[tuple[int, int]] = []
        self.wall = 0.0
        self._backward = 0
        self.timed_steps = 0  # steps whose time is in self.wall
        self.timed_backward = 0  # full steps among them
        self.i = 0
        self.done = False
        loss, acc = self.run.validate()
        # (step, wall, backward passes, loss, accuracy, timed steps, timed backward passes)
        self.points: list[tuple[float, ...]] = [(0, 0.0, 0, loss, acc, 0, 0)]

    def advance(self, until: int) -> None:
        """Take steps up to step ``until`` (or the run's end, or its stop)."""
        until = min(until, self.last)
        while not self.done and self.i < until:
            self.i += 1
            i = self.i
            batch = next(self._data)
            c0 = compile_seconds()
            t0 = time.perf_counter()
            r = self._step(batch)
            dt = time.perf_counter() - t0
            full = self.trainer is None or not r.was_predicted
            if compile_seconds() == c0:  # else JIT warm-up: compilation and first call
                self.wall += dt
                self.timed_steps += 1
                self.timed_backward += full
            if self.trainer is None:
                self._backward += 1
            elif r.was_predicted:
                if self.spans and self.spans[-1][1] == i - 1:
                    self.spans[-1] = (self.spans[-1][0], i)
                else:
                    self.spans.append((i, i))
            if i % self.eval_every == 0 or i in (self.steps, self.last):
                if self.trainer is not None:
                    self._backward = self.trainer.statistics().backward_passes
                loss, acc = self.run.validate()
                if not math.isfinite(loss):
                    loss = math.inf
                self.points.append((i, self.wall, self._backward, loss, acc,
                                    self.timed_steps, self.timed_backward))
                self._check_stop()
            if self.on_step is not None:
                self.on_step(i)
            if i >= self.last:
                self.done = True

    def set_target(self, stop_at: float) -> None:
        """Stop at the first validation point past the budget that reaches ``stop_at``
        (the last one taken counts too)."""
        self.stop_at = stop_at
        if self.points[-1][0] == self.i:
            self._check_stop()

    def _check_stop(self) -> None:
        tail = [p[3] for p in self.points[-self.stop_window:]]
        if self.stop_at is not None and self.i >= self.steps and \
                sum(tail) / len(tail) <= self.stop_at:
            self.done = True

    def curve(self) -> Curve:
        arr = np.array(self.points, dtype=np.float64)
        stats = self.trainer.statistics().to_dict() if self.trainer is not None else None
        return Curve(self.label, arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4],
                     list(self.spans), stats, self.config, int(arr[-1, 5]), int(arr[-1, 6]))


def run_together(runs: Sequence[CurveRun], until: int | None = None) -> None:
    """Advance ``runs`` side by side, one validation interval of each in turn, up to step
    ``until`` (default: until each is done): drifts of the machine's speed then fall on all
    of them alike instead of on whichever ran during them. The turn order is shuffled every
    round (seeded: the same every time), so that no run always follows the same one: a run
    can slow the next one down (the threads of Numba's or PyTorch's pool still spinning after
    it), and a fixed order lays that on one method."""
    rng = random.Random(0)
    while True:
        active = [r for r in runs if not r.done and (until is None or r.i < until)]
        if not active:
            return
        rng.shuffle(active)
        for r in active:
            r.advance(min(r.i + r.eval_every, until if until is not None else r.last))


def run_curve(task: Task, **kwargs: Any) -> Curve:
    """Train from the seed's initial point, alone, and record the validation curve; the
    keyword arguments are :class:`CurveRun`'s."""
    run = CurveRun(task, **kwargs)
    run.advance(run.last)
    return run.curve()


def tune_lr(task: Task, *, steps: int, seed: int, schedule: str = "constant",
            on_step: Callable[[int], None] | None = None) -> tuple[float, dict[float, float]]:
    """The grid's learning rate with the lowest final validation loss for the plain loop."""
    finals = {}
    for lr in task.lr_grid:
        c = run_curve(task, lr=lr, steps=steps, seed=seed, schedule=schedule,
                      eval_every=steps, on_step=on_step)
        final = float(c.val_loss[-1])
        finals[lr] = final if math.isfinite(final) else math.inf
    return min(finals, key=finals.__getitem__), finals


def warm_up_engine(size: int = 70_000) -> None:
    """Compile the engine's JIT kernels (Numba) for a model of ``size`` parameters once, so
    that no timed run pays for it: short phases, but the default window, so that every op
    takes the path (NumPy, serial or parallel Numba) that a default run of that size takes."""
    from hpcore.adapters.numpy import HybridTrainer
    from hpcore.optim import SGD

    default = HybridTrainerConfig()
    # floor=None: a floored engine would sit the whole warm-up out and compile nothing.
    cfg = attrs.evolve(default, warmup_steps=2, full_steps=50, max_predict_steps=10,
                       correct_steps=2, check_interval=5, snapshot_interval=2,
                       confidence_threshold=0.0, collect_metrics=False, floor=None)
    params = np.ones(size, np.float32)

    def loss_and_grad(p: np.ndarray, _batch: Any) -> tuple[float, np.ndarray]:
        return 0.5 * float(p @ p), p.copy()

    trainer = HybridTrainer(params, loss_and_grad, SGD(0.01, momentum=0.9), cfg)
    for _ in range(120):
        trainer.step(None)
