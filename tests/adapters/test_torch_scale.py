"""PyTorch at scale and for the long run: checkpoints, DDP lockstep, mixed precision."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch adapter needs torch")

from hpcore import HybridTrainerConfig, LinearConfig  # noqa: E402
from hpcore.adapters.torch import HybridTrainer  # noqa: E402

HERE = Path(__file__).parent
SMALL = HybridTrainerConfig(
    warmup_steps=20, full_steps=20, max_predict_steps=20, correct_steps=10, history_size=4,
    snapshot_interval=5, check_interval=5, predictor=LinearConfig(window=4),
    rollback_tolerance=100.0, floor=None, anneal_share=None,
)


def run(script: str, *args: str) -> None:
    out = subprocess.run([sys.executable, str(HERE / script), *args], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.parametrize("flags", [[], ["--bf16"]], ids=["float32", "bfloat16-params"])
def test_checkpoint_resume_in_fresh_process_is_bit_identical(tmp_path, flags):
    """Model, optimizer, scheduler and hybrid state saved mid-run resume identically in
    another process: parameters, learning rate, counters and every jump."""
    ckpt = tmp_path / "mid.npz"
    run("torch_resume_script.py", "0", "230", str(tmp_path / "a0.npz"), "--save", str(ckpt), *flags)
    run("torch_resume_script.py", "230", "460", str(tmp_path / "a1.npz"), "--load", str(ckpt), *flags)
    run("torch_resume_script.py", "0", "460", str(tmp_path / "straight.npz"), *flags)
    resumed, straight = np.load(tmp_path / "a1.npz"), np.load(tmp_path / "straight.npz")
    assert resumed.files == straight.files
    for k in straight.files:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)
    first_half = np.load(tmp_path / "a0.npz")
    assert int(first_half["predicted_steps"]) > 0  # jumps before the checkpoint
    assert int(straight["jumps"]) > int(first_half["jumps"])  # and after it


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["plain", "floor", "probe"])
def test_ddp_ranks_stay_in_lockstep(tmp_path, mode):
    """Two gloo ranks with different data take the same decisions and end identical: on the
    all-reduced training losses, through the floor guard's ledger, and on probe losses of
    each rank's own probe set."""
    run("ddp_script.py", str(tmp_path), free_port(), mode)
    r0, r1 = np.load(tmp_path / "rank0.npz"), np.load(tmp_path / "rank1.npz")
    assert int(r0["predicted"]) > 0
    assert (int(r0["probes"]) > 0) == (mode == "probe")
    np.testing.assert_array_equal(r0["jumps"], r1["jumps"])
    np.testing.assert_array_equal(r0["params"], r1["params"])


def mlp(dtype=torch.float32):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(),
                               torch.nn.Linear(16, 1)).to(dtype)


def regression_batches(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 1, generator=g)
    while True:
        x = torch.randn(32, 8, generator=g)
        yield x.to(dtype), (x @ w).to(dtype)


def mse(m, batch):
    return torch.nn.functional.mse_loss(m(batch[0]).float(), batch[1].float())


class TestMixedPrecision:
    def test_bf16_autocast_full_steps_train(self):
        """Under bf16 autocast the loss falls and jumps still happen, in float32."""
        model = mlp()
        trainer = HybridTrainer(model, torch.optim.Adam(model.parameters(), 1e-2), mse, SMALL,
                                autocast=torch.bfloat16)
        data = regression_batches()
        results = [trainer.step(next(data)) for _ in range(200)]
        full = [r.loss for r in results if not r.was_predicted]
        assert np.mean(full[-20:]) < 0.5 * np.mean(full[:20])
        assert trainer.statistics().predicted_steps > 0
        assert trainer.optimizer.flat_params.dtype == torch.float32

    def test_half_parameters_get_a_float32_master(self):
        """bf16 parameters: predicted steps move a float32 master (the parameters of the
        state dict); the model holds it rounded."""
        model = mlp(torch.bfloat16)
        trainer = HybridTrainer(model, torch.optim.SGD(model.parameters(), 0.05), mse, SMALL)
        opt = trainer.optimizer
        assert opt.flat_params.dtype == torch.bfloat16
        data = regression_batches(torch.bfloat16)
        moved = 0
        for _ in range(500):
            before = opt.state_dict()["params"]
            r = trainer.step(next(data))
            if not r.was_predicted:
                continue
            moved += 1
            master = opt.state_dict()["params"]
            assert master.dtype == torch.float32 and not torch.equal(before, master)
            assert torch.equal(opt.flat_params, master.to(torch.bfloat16))
            assert torch.equal(torch.cat([p.detach().reshape(-1) for p in model.parameters()]),
                               master.to(torch.bfloat16))
            if moved == 5:
                break
        assert moved == 5
        # The master keeps what bf16 cannot: it is not itself a bf16 grid point everywhere.
        assert torch.any(master.to(torch.bfloat16).float() != master)

    def test_bad_autocast_dtype(self):
        """Only bfloat16 and float16 autocast."""
        model = mlp()
        with pytest.raises(ValueError, match=r"autocast must be torch.bfloat16, torch.float16 "
                                             r"or None \(got torch.float64\)"):
            HybridTrainer(model, torch.optim.SGD(model.parameters(), 0.1), mse,
                          autocast=torch.float64)
