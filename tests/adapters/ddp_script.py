"""Two CPU processes under torch.distributed (gloo), each with its own data shard (test helper).

usage: python ddp_script.py OUTDIR PORT [MODE]. Each rank writes OUTDIR/rank<r>.npz with its
final flat parameters and the steps at which its jumps started and how they were judged.
MODE ``wall`` (default): jumps charged each rank's own timings, no floor guard; ``floor``:
the floor guard's all-reduced decision at every decision point (the loosest floor, charged in
steps, so that a small model on a busy machine still jumps).
"""

from __future__ import annotations

import logging
import os
import sys

import numpy as np
import structlog
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hpcore import HybridTrainerConfig
from hpcore.adapters.torch import HybridTrainer
from hpcore.bench.numpy_mlp import load_digits_split

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))


MODES = {
    "wall": {"floor": None},
    "floor": {"floor": 0.0, "cost_model": "steps"},
}


def run(rank: int, world: int, outdir: str, port: str, mode: str) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", port
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    x, y, _, _ = load_digits_split(0)
    x, y = torch.tensor(x[rank::world]), torch.tensor(y[rank::world])  # different shards
    torch.manual_seed(rank)  # different initial weights: DDP broadcasts rank 0's
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))
    model = torch.nn.parallel.DistributedDataParallel(net)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def loss_fn(m, batch):
        return torch.nn.functional.cross_entropy(m(batch[0]), batch[1])

    cfg = HybridTrainerConfig(warmup_steps=60, full_steps=40, max_predict_steps=40,
                              correct_steps=20, **MODES[mode])
    trainer = HybridTrainer(model, opt, loss_fn, cfg)
    rng = np.random.default_rng(100 + rank)
    for _ in range(400):
        idx = torch.from_numpy(rng.integers(0, len(y), size=16))
        trainer.step((x[idx], y[idx]))
    jumps = [(j.step, j.taken, int(j.rolled_back)) for j in trainer.engine.jump_records]
    np.savez(os.path.join(outdir, f"rank{rank}.npz"),
             params=trainer.flat_params.detach().numpy(),
             jumps=np.array(jumps, dtype=np.int64).reshape(-1, 3),
             predicted=np.array(trainer.statistics().predicted_steps))
    dist.destroy_process_group()


if __name__ == "__main__":
    outdir, port = sys.argv[1], sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else "wall"
    mp.spawn(run, args=(2, outdir, port, mode), nprocs=2, join=True)
