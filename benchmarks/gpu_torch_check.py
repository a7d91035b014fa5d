"""A PyTorch MLP on digits trained on CUDA: plain loop, hybrid trainer without the floor
guard, and with the default one; both are told the run's length (``total_steps``).

Run on a machine with a GPU (``benchmarks/gpu_check.sh`` does). Prints the accuracies, wall
times, the core's view type (a CuPy array sharing the model's memory) and the statistics.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import structlog
import torch

from hpcore import HybridTrainerConfig
from hpcore.adapters.torch import HybridTrainer
from hpcore.bench.numpy_mlp import load_digits_split

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


STEPS = 1500


def run(config: HybridTrainerConfig | None, seed: int, steps: int = STEPS):
    dev = torch.device("cuda")
    xtr, ytr, xte, yte = load_digits_split(seed)
    x, y = torch.tensor(xtr, device=dev), torch.tensor(ytr, device=dev)
    xt, yt = torch.tensor(xte, device=dev), torch.tensor(yte, device=dev)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Tanh(),
                                torch.nn.Linear(64, 10)).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def loss_fn(m, batch):
        xb, yb = batch
        return torch.nn.functional.cross_entropy(m(xb), yb)

    trainer = None if config is None else HybridTrainer(model, opt, loss_fn, config)
    g = torch.Generator(device="cpu").manual_seed(seed)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(y), (32,), generator=g).to(dev)
        batch = (x[idx], y[idx])
        if trainer is None:
            opt.zero_grad()
            loss_fn(model, batch).backward()
            opt.step()
        else:
            trainer.step(batch)
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean().item()
    return acc, wall, trainer


def main() -> None:
    print("device:", torch.cuda.get_device_name(0))
    for seed in range(3):
        acc_b, wall_b, _ = run(None, seed)
        line = f"seed {seed}: plain acc {acc_b:.4f} ({wall_b:.2f} s)"
        for name, config in (("hybrid", HybridTrainerConfig(floor=None, total_steps=STEPS)),
                             ("floored", HybridTrainerConfig(total_steps=STEPS))):
            acc_h, wall_h, trainer = run(config, seed)
            s = trainer.statistics()
            line += (f" | {name} acc {acc_h:.4f} ({wall_h:.2f} s), predicted "
                     f"{s.predicted_steps}/{s.total_steps}, jumps {s.jumps_accepted}/{s.jumps} "
                     f"kept, rollbacks {s.rollbacks}")
        # the core's flat vector (private: a diagnostic of where the engine's arrays live)
        print(line + f", core view {type(trainer._core.theta).__module__}")
    assert np.isfinite(acc_h)


if __name__ == "__main__":
    main()
