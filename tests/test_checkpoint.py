"""Checkpoints: bit-identical resume in a fresh process, atomic writes, corruption, rotation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hpcore import CheckpointConfig, HybridTrainerConfig
from hpcore.adapters.numpy import HybridTrainer
from hpcore.checkpoint import (
    CheckpointError,
    checkpoint_files,
    read_checkpoint,
    write_checkpoint,
)
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


def trainer(tmp_path=None, **ck):
    cfg = HybridTrainerConfig(warmup_steps=5, full_steps=10, checkpoint=CheckpointConfig(**ck),
                              cost_model="steps")  # reproducible decisions across resumes
    return HybridTrainer(np.zeros(6, np.float32), lg, SGD(0.05, momentum=0.9), cfg)


class TestCheckpointFiles:
    def test_round_trip_of_a_tree(self, tmp_path):
        """Arrays, numbers, non-finite floats, strings, None, tuples and dicts come back."""
        tree = {"a": np.arange(3.0), "b": (1, 2.5, float("nan"), "x", None), "c": {3: [True]}}
        back = read_checkpoint(write_checkpoint(tmp_path / "t.npz", tree))
        np.testing.assert_array_equal(back["a"], tree["a"])
        assert back["b"][:2] == (1, 2.5) and np.isnan(back["b"][2]) and back["b"][3:] == ("x", None)
        assert back["c"] == {3: [True]}

    def test_unsupported_leaf_is_named(self, tmp_path):
        """An object that cannot be stored without pickle is refused with its place."""
        with pytest.raises(TypeError, match=r"cannot checkpoint state\.probe of type object"):
            write_checkpoint(tmp_path / "t.npz", {"probe": object()})

    def test_truncated_file_is_a_clear_error(self, tmp_path):
        """A truncated checkpoint says so."""
        p = write_checkpoint(tmp_path / "t.npz", {"a": np.ones(1000)})
        p.write_bytes(p.read_bytes()[:500])
        with pytest.raises(CheckpointError, match="is truncated or corrupted"):
            read_checkpoint(p)

    def test_flipped_byte_is_caught(self, tmp_path):
        """A silently altered array fails its SHA-256 check."""
        p = write_checkpoint(tmp_path / "t.npz", {"a": np.zeros(1000)})
        raw = bytearray(p.read_bytes())
        i = raw.index(bytes(64)) + 10  # inside the stored zeros
        raw[i] = 1
        p.write_bytes(bytes(raw))
        with pytest.raises(CheckpointError, match="corrupted"):
            read_checkpoint(p)

    def test_not_a_checkpoint(self, tmp_path):
        """A plain npz is refused; so is a missing file."""
        np.savez(tmp_path / "plain.npz", a=np.ones(2))
        with pytest.raises(CheckpointError, match="is not an hpcore checkpoint"):
            read_checkpoint(tmp_path / "plain.npz")
        with pytest.raises(CheckpointError, match="no checkpoint at"):
            read_checkpoint(tmp_path / "missing.npz")


class TestTrainerCheckpoints:
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
        """A checkpoint of another model is refused before the trainer changes."""
        other = HybridTrainer(np.zeros(3, np.float32), lg, SGD(0.1))
        p = other.save_checkpoint(tmp_path / "other.npz")
        t = trainer()
        t.step(np.ones(6, np.float32))
        before = (t.params.copy(), t.current_step)
        with pytest.raises(ValueError, match="checkpoint holds params"):
            t.load_checkpoint(p)
        np.testing.assert_array_equal(t.params, before[0])
        assert t.current_step == before[1]

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


def test_zero_dim_arrays_keep_their_shape(tmp_path):
    """A 0-d array (an optimizer's step count) comes back 0-d."""
    back = read_checkpoint(write_checkpoint(tmp_path / "t.npz", {"step": np.array(3.0)}))
    assert back["step"].shape == ()
