"""Torch twin of tests/ckpt_resume_script.py: a step range, from / into a checkpoint.

usage: python torch_resume_script.py START STOP OUT.npz [--load CKPT] [--save CKPT] [--bf16]
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import structlog
import torch

from hpcore import HybridTrainerConfig, LinearConfig
from hpcore.adapters.torch import HybridTrainer
from hpcore.bench.numpy_mlp import load_digits_split

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
torch.set_num_threads(1)


def main(argv: list[str]) -> None:
    start, stop, out = int(argv[0]), int(argv[1]), argv[2]
    load = argv[argv.index("--load") + 1] if "--load" in argv else None
    save = argv[argv.index("--save") + 1] if "--save" in argv else None
    x, y, _, _ = load_digits_split(0)
    x, y = torch.tensor(x), torch.tensor(y)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))
    if "--bf16" in argv:
        model = model.to(torch.bfloat16)
        x = x.to(torch.bfloat16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=1000)

    def loss_fn(m, batch):
        return torch.nn.functional.cross_entropy(m(batch[0]).float(), batch[1])

    # Decisions are counted in steps and read no clock: the two processes agree bit for bit.
    # Jumps in both halves of the 460 test steps.
    cfg = HybridTrainerConfig(warmup_steps=50, full_steps=20, max_predict_steps=20,
                              correct_steps=10, history_size=4, snapshot_interval=10,
                              predictor=LinearConfig(window=4), floor=None,
                              anneal_share=None)  # its schedule anneals: jump anyway
    trainer = HybridTrainer(model, opt, loss_fn, cfg, scheduler=sched)
    if load:
        trainer.load_checkpoint(load)
    assert trainer.current_step == start
    for step in range(start, stop):
        idx = torch.from_numpy(np.random.default_rng(step).integers(0, len(y), size=32))
        trainer.step((x[idx], y[idx]))
    if save:
        trainer.save_checkpoint(save)
    s = trainer.statistics().to_dict()
    counters = {k: v for k, v in s.items() if isinstance(v, int)}
    flat = trainer.optimizer.flat_params.detach().float().numpy()
    jumps = [(j.step, j.taken, int(j.rolled_back)) for j in trainer.jumps]
    np.savez(out, params=flat, lr=np.array(opt.param_groups[0]["lr"]),
             jump_records=np.array(jumps, dtype=np.int64).reshape(-1, 3),
             **{k: np.array(v) for k, v in counters.items()})


if __name__ == "__main__":
    main(sys.argv[1:])
