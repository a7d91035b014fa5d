"""Checkpoints: bit-identical resume in a fresh process, atomic writes, corruption, rotation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import attrs
import numpy as np
import pytest

from hpcore import CheckpointConfig, HybridTrainerConfig, LinearConfig
from hpcore.adapters.numpy import HybridTrainer
from hpcore.checkpoint import CheckpointError, checkpoint_files, read_checkpoint
from hpcore.optim import SGD

SCRIPT = Path(__file__).with_name("ckpt_resume_script.py")


def run_script(*args: str) -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr


def test_resume_in_fresh_process_is_bit_identical(tmp_path):
    """Train N, save, train M; a fresh process loads and trains the same M: identical."""
    ckpt = tmp_path / "mid.npz"
    run_script("0", "230", str(tmp_path / "a0.npz"), "--save", str(ckpt))
    run_script("230", "460", str(tmp_path / "a1.npz"), "--load", str(ckpt))
    run_script("0", "460", str(tmp_path / "straight.npz"))
    resumed, straight = np.load(tmp_path / "a1.npz"), np.load(tmp_path / "straight.npz")
    assert resumed.files == straight.files
    for k in straight.files:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)
    assert int(straight["predicted_steps"]) > 0  # the window covered jumps, not only warmup


def lg(p, c):
    r = p - c
    return float(r @ r), 2 * r


FAST = HybridTrainerConfig(history_size=4, snapshot_interval=5, predictor=LinearConfig(window=4),
                           full_steps=10, correct_steps=10, max_predict_steps=20,
                           check_interval=10, floor=None)


def trainer(**ck):
    cfg = attrs.evolve(FAST, checkpoint=CheckpointConfig(**ck))
    return HybridTrainer(np.zeros(6, np.float32), lg, SGD(0.05, momentum=0.9), cfg)


class TestWrapperCheckpoints:
    def test_interval_and_rotation(self, tmp_path):
        """Every save_interval steps a checkpoint; only the newest keep_last_n stay."""
        t = trainer(save_interval=10, keep_last_n=2, directory=str(tmp_path))
        for _ in range(45):
            t.step(np.ones(6, np.float32))
        assert [p.name for p in checkpoint_files(tmp_path)] == [
            "ckpt-000000030.npz", "ckpt-000000040.npz"]

    def test_corrupted_newest_leaves_previous_usable(self, tmp_path):
        """Loading a folder skips a corrupted newest file and resumes from the one before."""
        t = trainer(save_interval=10, keep_last_n=3, directory=str(tmp_path))
        for _ in range(30):
            t.step(np.ones(6, np.float32))
        newest = checkpoint_files(tmp_path)[-1]
        newest.write_bytes(newest.read_bytes()[:100])
        fresh = trainer()
        used = fresh.load_checkpoint(tmp_path)
        assert used.name == "ckpt-000000020.npz" and fresh.current_step == 20

    def test_failed_load_changes_nothing(self, tmp_path):
        """A checkpoint of another model is refused with CheckpointError; nothing changes."""
        other = HybridTrainer(np.zeros(3, np.float32), lg, SGD(0.1))
        p = other.save_checkpoint(tmp_path / "other.npz")
        t = trainer()
        for _ in range(37):
            t.step(np.ones(6, np.float32))
        before = (t.params.copy(), t.current_step, t.statistics())
        with pytest.raises(CheckpointError, match="refused, nothing was changed: state holds params"):
            t.load_checkpoint(p)
        np.testing.assert_array_equal(t.params, before[0])
        assert (t.current_step, t.statistics()) == before[1:]

    def test_a_failed_automatic_save_keeps_the_step_and_the_next_save_works(self, tmp_path):
        """A save that fails warns; the step was taken once and a later save succeeds."""
        blocker = tmp_path / "ckpts"
        blocker.write_text("a file where the folder should be")
        t = trainer(save_interval=5, directory=str(blocker))
        for _ in range(4):
            t.step(np.ones(6, np.float32))
        with pytest.warns(RuntimeWarning, match="automatic checkpoint at step 5 failed"):
            t.step(np.ones(6, np.float32))
        assert t.current_step == 5
        blocker.unlink()
        blocker.mkdir()
        for _ in range(5):
            t.step(np.ones(6, np.float32))
        assert [p.name for p in checkpoint_files(blocker)] == ["ckpt-000000010.npz"]

    def test_without_the_predictor_a_resume_relearns_it(self, tmp_path):
        """include_predictor=False stores no predictor state; loading keeps the current one."""
        t = trainer(include_predictor=False)
        for _ in range(30):
            t.step(np.ones(6, np.float32))
        p = t.save_checkpoint(tmp_path / "c.npz")
        assert read_checkpoint(p)["hybrid"]["predictor"] is None
        fresh = trainer()
        fresh.load_checkpoint(p)
        assert fresh.current_step == 30

    def test_interval_needs_directory(self):
        """Automatic checkpoints need a folder."""
        with pytest.raises(ValueError, match="'save_interval' > 0 needs a 'directory'"):
            CheckpointConfig(save_interval=5)

    def test_no_pickle_in_files(self, tmp_path):
        """Every member of a trainer's checkpoint loads with allow_pickle=False."""
        t = trainer()
        for _ in range(40):
            t.step(np.ones(6, np.float32))
        p = t.save_checkpoint(tmp_path / "c.npz")
        with np.load(p, allow_pickle=False) as z:
            for k in z.files:
                assert z[k].dtype != object
