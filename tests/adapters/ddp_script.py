"""Two CPU processes under torch.distributed (gloo), each with its own data shard (test helper).

usage: python ddp_script.py OUTDIR PORT [MODE]. Each rank writes OUTDIR/rank<r>.npz with its
final flat parameters and the steps at which its jumps started and how they were judged.
MODE ``plain`` (default): no floor guard, jumps judged on the all-reduced training losses;
``floor``: through the floor guard's ledger (a loose floor and the run's length, so that the
ledger affords some jumps and refuses others); ``probe``: each rank probes its own shard,
the probe losses all-reduced, and jumps are checked and judged on them.
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

from hpcore import HybridTrainerConfig, LinearConfig
from hpcore.adapters.torch import HybridTrainer
from hpcore.bench.numpy_mlp import load_digits_split

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))


MODES = {
    "plain": {"floor": None},
    "floor": {"floor": 0.9, "total_steps": 400},
    "probe": {"floor": None},
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

    cfg = HybridTrainerConfig(warmup_steps=60, full_steps=20, max_predict_steps=40,
                              correct_steps=20, history_size=4, snapshot_interval=10,
                              check_interval=10, predictor=LinearConfig(window=4),
                              **MODES[mode])
    probe_set = (x[:64], y[:64])  # this rank's own probe examples

    def probe():
        return loss_fn(model, probe_set)

    trainer = HybridTrainer(model, opt, loss_fn, cfg, probe=probe if mode == "probe" else None)
    rng = np.random.default_rng(100 + rank)
    for _ in range(400):
        idx = torch.from_numpy(rng.integers(0, len(y), size=16))
        trainer.step((x[idx], y[idx]))
    jumps = [(j.step, j.taken, int(j.rolled_back)) for j in trainer.jumps]
    stats = trainer.statistics()
    np.savez(os.path.join(outdir, f"rank{rank}.npz"),
             params=trainer.optimizer.flat_params.detach().numpy(),
             jumps=np.array(jumps, dtype=np.int64).reshape(-1, 3),
             predicted=np.array(stats.predicted_steps), probes=np.array(stats.forward_only_passes))
    dist.destroy_process_group()


if __name__ == "__main__":
    outdir, port = sys.argv[1], sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else "plain"
    mp.spawn(run, args=(2, outdir, port, mode), nprocs=2, join=True)
