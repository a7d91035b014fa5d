"""Trains the digits MLP for a step range, optionally from / into a checkpoint (test helper).

usage: python ckpt_resume_script.py START STOP OUT.npz [--load CKPT] [--save CKPT]
Writes the final params and statistics to OUT.npz. Batches depend on the step index only.
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import structlog

from hpcore import HybridTrainerConfig, LinearConfig
from hpcore.adapters.numpy import HybridTrainer
from hpcore.bench.numpy_mlp import MLP, load_digits_split
from hpcore.optim import Adam

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))


def main(argv: list[str]) -> None:
    start, stop, out = int(argv[0]), int(argv[1]), argv[2]
    load = argv[argv.index("--load") + 1] if "--load" in argv else None
    save = argv[argv.index("--save") + 1] if "--save" in argv else None
    x, y, _, _ = load_digits_split(0)
    model = MLP(64, 32, 10)
    # Decisions are counted in steps and read no clock: the two processes agree bit for bit.
    # Jumps in both halves of the 460 test steps; step 230 falls inside one (Correct).
    cfg = HybridTrainerConfig(warmup_steps=50, full_steps=20, max_predict_steps=20,
                              correct_steps=10, history_size=4, snapshot_interval=10,
                              predictor=LinearConfig(window=4), floor=None)
    sizes = [int(np.prod(s)) for s in model.shapes]
    trainer = HybridTrainer(model.init(0), model.loss_and_grad, Adam(1e-3), cfg,
                            group_sizes=sizes)
    if load:
        trainer.load_checkpoint(load)
    assert trainer.current_step == start
    for step in range(start, stop):
        idx = np.random.default_rng(step).integers(0, len(y), size=32)
        trainer.step((x[idx], y[idx]))
    if save:
        trainer.save_checkpoint(save)
    s = trainer.statistics().to_dict()
    counters = {k: v for k, v in s.items() if isinstance(v, int)}
    np.savez(out, params=trainer.params, **{k: np.array(v) for k, v in counters.items()})


if __name__ == "__main__":
    main(sys.argv[1:])
