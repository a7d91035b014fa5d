"""Time-to-target runs: a tuned baseline and the hybrid trainer on the same workload (DESIGN 8).

Target = the baseline's final validation loss. Validation is timed out of the wall clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import numpy as np

from hpcore.adapters.numpy import HybridTrainer
from hpcore.bench.numpy_mlp import MLP, batches, load_digits_split
from hpcore.config import HybridTrainerConfig
from hpcore.optim import SGD, Adam, FlatOptimizer, cosine_schedule

__all__ = ["Curve", "NumpyWorkload", "digits_mlp", "run_curve", "time_to_target", "tune_lr"]


@attrs.frozen
class NumpyWorkload:
    """A NumPy model, its data and its optimizer family: everything a run needs."""

    name: str
    model: Any
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    optimizer: str  # "sgd" (momentum 0.9) or "adam"
    batch_size: int
    lr_grid: tuple[float, ...]

    def make_optimizer(self, lr: float, steps: int, schedule: str) -> FlatOptimizer:
        rate: Any = cosine_schedule(lr, steps) if schedule == "cosine" else lr
        if self.optimizer == "sgd":
            return SGD(rate, momentum=0.9)
        return Adam(rate)

    def batches(self, seed: int) -> Iterator[tuple]:
        x, y = self.data[0], self.data[1]
        return batches(x, y, self.batch_size, seed)

    def validate(self, params: np.ndarray) -> tuple[float, float]:
        x, y = self.data[2], self.data[3]
        return self.model.loss(params, (x, y)), self.model.accuracy(params, x, y)


def digits_mlp(seed: int, optimizer: str = "sgd") -> NumpyWorkload:
    """MLP 64-64-10 on scikit-learn's digits, batch 32."""
    grid = (0.01, 0.02, 0.05, 0.1, 0.2) if optimizer == "sgd" else (3e-4, 1e-3, 3e-3, 1e-2)
    return NumpyWorkload(f"numpy-mlp-digits-{optimizer}", MLP(64, 64, 10),
                         load_digits_split(seed), optimizer, 32, grid)


@attrs.frozen
class Curve:
    """Validation points of one run: steps, wall-clock (s), backward passes, loss, accuracy."""

    label: str
    steps: np.ndarray
    wall: np.ndarray
    backward: np.ndarray
    val_loss: np.ndarray
    val_acc: np.ndarray
    predict_spans: list[tuple[int, int]]
    statistics: dict[str, Any] | None


def run_curve(
    workload: NumpyWorkload,
    *,
    lr: float,
    steps: int,
    seed: int,
    schedule: str = "constant",
    config: HybridTrainerConfig | None = None,
    eval_every: int = 25,
    on_step: Callable[[int], None] | None = None,
) -> Curve:
    """Train from the seed's initial point; ``config`` set means the hybrid trainer."""
    params = workload.model.init(seed)
    opt = workload.make_optimizer(lr, steps, schedule)
    data = workload.batches(seed)
    trainer = None
    if config is not None:
        trainer = HybridTrainer(params, workload.model.loss_and_grad, opt, config,
                                loss_fn=workload.model.loss)
    pts: list[tuple[float, ...]] = []
    spans: list[tuple[int, int]] = []
    wall = 0.0
    backward = 0
    loss, acc = workload.validate(params)
    pts.append((0, 0.0, 0, loss, acc))
    for i in range(1, steps + 1):
        batch = next(data)
        t0 = time.perf_counter()
        if trainer is None:
            _, grad = workload.model.loss_and_grad(params, batch)
            opt.step(params, grad)
            backward += 1
        else:
            r = trainer.step(batch)
            if r.was_predicted:
                if spans and spans[-1][1] == i - 1:
                    spans[-1] = (spans[-1][0], i)
                else:
                    spans.append((i, i))
        wall += time.perf_counter() - t0
        if trainer is not None:
            backward = trainer.statistics().backward_passes
        if i % eval_every == 0 or i == steps:
            loss, acc = workload.validate(params)
            pts.append((i, wall, backward, loss, acc))
        if on_step is not None:
            on_step(i)
    arr = np.array(pts, dtype=np.float64)
    stats = trainer.statistics().to_dict() if trainer is not None else None
    label = "hybrid" if trainer is not None else "baseline"
    return Curve(label, arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4], spans, stats)


def tune_lr(workload: NumpyWorkload, *, steps: int, seed: int, schedule: str = "constant",
            on_step: Callable[[int], None] | None = None) -> tuple[float, dict[float, float]]:
    """The grid's learning rate with the lowest final validation loss for the plain loop."""
    finals = {}
    for lr in workload.lr_grid:
        c = run_curve(workload, lr=lr, steps=steps, seed=seed, schedule=schedule,
                      eval_every=steps, on_step=on_step)
        finals[lr] = float(c.val_loss[-1]) if math.isfinite(c.val_loss[-1]) else math.inf
    return min(finals, key=finals.__getitem__), finals


def first_reach(curve: Curve, target: float) -> tuple[float, float, float] | None:
    """``(step, wall, backward)`` of the first validation point at or below ``target``."""
    hit = np.nonzero(curve.val_loss <= target)[0]
    if hit.size == 0:
        return None
    i = int(hit[0])
    return float(curve.steps[i]), float(curve.wall[i]), float(curve.backward[i])


def time_to_target(baseline: Curve, hybrid: Curve) -> dict[str, Any]:
    """Speed-ups to the baseline's final validation loss (``None`` where not reached)."""
    target = float(baseline.val_loss[-1])
    b = first_reach(baseline, target)
    h = first_reach(hybrid, target)
    out: dict[str, Any] = {"target_val_loss": target, "hybrid_reached": h is not None}
    assert b is not None
    out["baseline_wall_s"], out["baseline_backward"] = b[1], b[2]
    if h is None:
        out.update(hybrid_wall_s=None, hybrid_backward=None, wall_speedup=None,
                   backward_speedup=None)
    else:
        out.update(hybrid_wall_s=h[1], hybrid_backward=h[2],
                   wall_speedup=b[1] / max(h[1], 1e-12), backward_speedup=b[2] / max(h[2], 1))
    return out
