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
    rollback_tolerance=100.0, floor=None,
)


def run(script: str, *args: str) -> None:
    out = subprocess.run([sys.executable, str(HERE / script), *args], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


@pytest.mark.parametrize("flags", [[], ["--bf16"]], ids=["float32", "bfloat16-params"])
def test_checkpoint_resume_in_fresh_process_is_bit_identical(tmp_path, flags):
    """Model, optimizer, scheduler and engine saved mid-run resume identically elsewhere."""
    ckpt = tmp_path / "mid.npz"
    run("torch_resume_script.py", "0", "230", str(tmp_path / "a0.npz"), "--save", str(ckpt), *flags)
    run("torch_resume_script.py", "230", "460", str(tmp_path / "a1.npz"), "--load", str(ckpt), *flags)
    run("torch_resume_script.py", "0", "460", str(tmp_path / "straight.npz"), *flags)
    resumed, straight = np.load(tmp_path / "a1.npz"), np.load(tmp_path / "straight.npz")
    for k in straight.files:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)
    assert int(straight["predicted_steps"]) > 0


@pytest.mark.parametrize("mode", ["wall", "floor"])
def test_ddp_ranks_stay_in_lockstep(tmp_path, mode):
    """Two gloo ranks with different data take the same decisions and end identical: with
    jumps charged each rank's own timings, and through the floor guard's decisions."""
    run("ddp_script.py", str(tmp_path), free_port(), mode)
    r0, r1 = np.load(tmp_path / "rank0.npz"), np.load(tmp_path / "rank1.npz")
    assert int(r0["predicted"]) > 0
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
        losses = [trainer.step(next(data)).loss for _ in range(200)]
        full = [x for x in losses if x is not None]
        assert np.mean(full[-20:]) < 0.5 * np.mean(full[:20])
        assert trainer.statistics().predicted_steps > 0
        assert trainer.flat_params.dtype == torch.float32

    def test_half_parameters_get_a_float32_master(self):
        """bf16 parameters: predicted steps move a float32 master; the model holds it rounded."""
        model = mlp(torch.bfloat16)
        trainer = HybridTrainer(model, torch.optim.SGD(model.parameters(), 0.05), mse, SMALL)
        theta = trainer.engine.theta
        assert theta.dtype == np.float32
        data = regression_batches(torch.bfloat16)
        moved = 0
        while moved < 5:
            before = theta.copy()
            r = trainer.step(next(data))
            if r.was_predicted:
                moved += 1
                assert not np.array_equal(before, theta)
                np.testing.assert_array_equal(
                    trainer.flat_params.float().numpy(),
                    torch.from_numpy(theta.copy()).to(torch.bfloat16).float().numpy())
        # The master keeps what bf16 cannot: it is not itself a bf16 grid point everywhere.
        rounded = torch.from_numpy(theta.copy()).to(torch.bfloat16).float().numpy()
        assert np.any(rounded != theta)

    def test_bad_autocast_dtype(self):
        """Only bfloat16 and float16 autocast."""
        model = mlp()
        with pytest.raises(ValueError, match="autocast must be torch.bfloat16, torch.float16"):
            HybridTrainer(model, torch.optim.SGD(model.parameters(), 0.1), mse,
                          autocast=torch.float64)
