"""Attacks on a wrapper's checkpoints: mutated bytes, another optimizer, forged indexes, device nodes.

The file-level attacks are in test_checkpoint_files.py; here every attack goes through the
wrapper's public calls, and a refusal must leave weights, optimizer and statistics bit-identical
(``benchmarks/checkpoint_attacks.py`` runs the tester's whole table at full size).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from hpcore import CheckpointConfig, CheckpointError, HybridTrainerConfig, LinearConfig
from hpcore.adapters.numpy import HybridOptimizer
from hpcore.checkpoint import read_checkpoint, step_path, write_checkpoint
from hpcore.optim import SGD

# One bit-exact fingerprint of a state tree, shared with the attack script.
_SPEC = importlib.util.spec_from_file_location(
    "checkpoint_attacks", Path(__file__).resolve().parents[1] / "benchmarks" / "checkpoint_attacks.py")
_ATTACKS = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(_ATTACKS)
freeze = _ATTACKS.freeze

FAST = HybridTrainerConfig(
    warmup_steps=0, history_size=4, snapshot_interval=5, predictor=LinearConfig(window=4),
    full_steps=10, correct_steps=10, max_predict_steps=10, check_interval=10, floor=None,
)
LATER = 12  # steps after a refusal, compared with a twin's


def numpy_opt(steps: int = 0, target: float = 1.0, **checkpoint: Any) -> HybridOptimizer:
    """A 16-parameter NumPy wrapper (SGD with momentum) trained ``steps`` steps towards ``target``."""
    opt = HybridOptimizer(np.zeros(16, np.float32), SGD(0.05, momentum=0.9),
                          attrs.evolve(FAST, checkpoint=CheckpointConfig(**checkpoint)))
    train(opt, steps, target)
    return opt


def train(opt: Any, steps: int, target: float = 1.0) -> None:
    c = target * np.linspace(-1, 1, opt.params.size, dtype=np.float32)
    for _ in range(steps):
        if opt.need_grads:
            r = opt.params - c
            opt.step(2 * r, float(r @ r))
        else:
            opt.step()


def known() -> HybridOptimizer:
    """The victim of every load: another target, another step count."""
    return numpy_opt(23, target=-0.5)


def fingerprint(opt: Any) -> Any:
    """Weights, optimizer and hybrid state (``state_dict()``) and ``statistics()``, bit for bit."""
    return freeze({"state": opt.state_dict(), "stats": opt.statistics().to_dict()})


def assert_later_steps_match(opt: Any, twin: Any, steps: Any = train) -> None:
    """After a refusal the victim trains on exactly as its twin that never saw the file."""
    assert fingerprint(opt) == fingerprint(twin)
    steps(opt, LATER)
    steps(twin, LATER)
    assert fingerprint(opt) == fingerprint(twin)


def hot_spots(raw: bytes) -> list[int]:
    """Offsets of zip and .npy headers and of the JSON index."""
    spots: list[int] = []
    for sig, size in ((b"PK\x03\x04", 54), (b"PK\x01\x02", 70), (b"PK\x05\x06", 22), (b"\x93NUMPY", 128)):
        at = raw.find(sig)
        while at >= 0:
            spots += range(at, min(at + size, len(raw)))
            at = raw.find(sig, at + 1)
    start = raw.find(b'{"format"')
    return sorted(set(spots) | set(range(start, raw.index(b"PK", start))))


def forge(src: Path, dst: Path, edit: Any) -> Path:
    """``src``'s state edited and written back by the library's own writer (every digest redone)."""
    state = read_checkpoint(src)
    edit(state)
    return write_checkpoint(dst, state)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A checkpoint of a wrapper trained 40 steps (through a jump), its bytes and its state."""
    original = numpy_opt(40)
    assert original.statistics().jumps >= 1
    path = original.save_checkpoint(tmp_path_factory.mktemp("attacks") / "original.npz")
    return path, path.read_bytes(), fingerprint(original), hot_spots(path.read_bytes())


# State edits, each with the start of the refusal it must meet.
FORGED = {
    "invalid phase": (lambda s: s["hybrid"]["controller"]["phase"].update(value="bogus"),
                      "'bogus' is not a valid Phase"),
    "predict without a jump": (lambda s: s["hybrid"]["controller"]["phase"].update(value="predict"),
                               "controller state: phase predict with jump None"),
    "left -5": (lambda s: s["hybrid"]["controller"].update(left=-5),
                "controller state: 'left' must be an int >= 0 (got -5)"),
    "left 'abc'": (lambda s: s["hybrid"]["controller"].update(left="abc"),
                   "controller state: 'left' must be an int >= 0 (got 'abc')"),
    "steps 123456": (lambda s: s["hybrid"]["controller"]["counters"].update(steps=123456),
                     "controller state: counters disagree (steps 123456, full "),
    "NaN params": (lambda s: s["params"].__setitem__(3, np.nan), "state holds non-finite parameters"),
}


class TestLoadCheckpoint:
    @settings(max_examples=250, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def test_mutated_file_is_refused_unchanged_or_loads_identical(self, saved, tmp_path, data):
        """Flipped bits, a cut or appended bytes: CheckpointError and nothing changed, or the original."""
        _, raw, original, spots = saved
        buf = bytearray(raw)
        where = st.integers(0, len(raw) - 1) | st.sampled_from(spots)
        end = data.draw(st.sampled_from(["keep", "cut", "append"]), label="end")
        for at in data.draw(st.lists(where, min_size=end == "keep", max_size=4), label="flipped bytes"):
            buf[at] ^= 1 << data.draw(st.integers(0, 7), label="bit")
        if end == "cut":
            del buf[data.draw(st.integers(0, len(buf) - 1), label="cut at") :]
        elif end == "append":
            buf += data.draw(st.binary(min_size=1, max_size=64), label="appended")
        mutated = tmp_path / "mutated.npz"
        mutated.write_bytes(bytes(buf))
        opt = known()
        before = fingerprint(opt)
        try:
            opt.load_checkpoint(mutated)
        except CheckpointError as exc:
            event("refused")
            assert str(exc).startswith((f"checkpoint {mutated} ", f"{mutated}: refused, nothing was changed"))
            assert fingerprint(opt) == before
        else:
            event("loaded")
            assert fingerprint(opt) == original

    def test_torch_sgd_checkpoint_into_an_adam_wrapper_changes_nothing(self, tmp_path):
        """An SGD-trained torch checkpoint into an Adam wrapper: refused, nothing changed, steps go on."""
        torch = pytest.importorskip("torch")
        from hpcore.adapters.torch import HybridOptimizer as TorchOptimizer

        x, y = torch.linspace(-1, 1, 32).reshape(8, 4), torch.ones(8, 2)

        def make(kind: str, steps: int) -> Any:
            torch.manual_seed(0)
            model = torch.nn.Linear(4, 2)
            inner = (torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if kind == "sgd"
                     else torch.optim.Adam(model.parameters(), lr=0.01))
            opt = TorchOptimizer(inner, FAST)
            opt.model = model
            torch_train(opt, steps)
            return opt

        def torch_train(opt: Any, steps: int) -> None:
            for _ in range(steps):
                if opt.need_grads:
                    loss = torch.nn.functional.mse_loss(opt.model(x), y)
                    loss.backward()
                    opt.step(loss)
                else:
                    opt.step()
                opt.zero_grad()

        sgd = make("sgd", 40)
        assert sgd.statistics().jumps >= 1
        ck = sgd.save_checkpoint(tmp_path / "sgd.npz")
        adam = make("adam", 23)
        before = fingerprint(adam)
        with pytest.raises(CheckpointError, match=r"sgd\.npz: refused, nothing was changed: the state is of "
                                                  r"another optimizer or layout \(param groups"):
            adam.load_checkpoint(ck)
        assert fingerprint(adam) == before
        assert_later_steps_match(adam, make("adam", 23), torch_train)

    @pytest.mark.parametrize("edit", FORGED)
    def test_forged_index_with_redone_digests_is_refused_by_the_state_checks(self, saved, tmp_path, edit):
        """Edited and re-digested with the library's own writer: the file passes, the state checks refuse."""
        change, message = FORGED[edit]
        forged = forge(saved[0], tmp_path / "forged.npz", change)
        read_checkpoint(forged)  # every digest agrees: only the state checks stand in the way
        opt = known()
        before = fingerprint(opt)
        with pytest.raises(CheckpointError) as info:
            opt.load_checkpoint(forged)
        assert str(info.value).startswith(f"{forged}: refused, nothing was changed: {message}")
        assert fingerprint(opt) == before
        assert_later_steps_match(opt, known())

    def test_edited_counter_without_new_digests_is_refused_by_the_digest(self, saved, tmp_path):
        """Counters edited in the JSON index (zip CRCs redone, the digest not): refused by the digest."""
        with zipfile.ZipFile(saved[0]) as zf:
            members = {info.filename: zf.read(info) for info in zf.infolist()}
        meta = members["__meta__.npy"]
        at = meta.index(b'"steps":40,')
        members["__meta__.npy"] = meta[:at] + b'"steps":41,' + meta[at + 11 :]  # same length, same header
        edited = tmp_path / "edited.npz"
        with zipfile.ZipFile(edited, "w", zipfile.ZIP_STORED) as zf:
            for name, data in members.items():
                zf.writestr(name, data)
        opt = known()
        before = fingerprint(opt)
        with pytest.raises(CheckpointError, match="its index fails its SHA-256 check"):
            opt.load_checkpoint(edited)
        assert fingerprint(opt) == before

    @pytest.mark.parametrize("buffer", [np.zeros(5, np.float32), "abc"],
                             ids=["5 floats for 16 params", "string"])
    def test_forged_optimizer_state_that_breaks_later_steps_is_refused(self, saved, tmp_path, buffer):
        """A momentum buffer of the wrong shape or type (digests redone) is refused: it would break steps."""
        forged = forge(saved[0], tmp_path / "forged.npz",
                       lambda s: s["optimizer"].update(momentum_buffer=buffer))
        opt = known()
        before = fingerprint(opt)
        with pytest.raises(CheckpointError, match="refused, nothing was changed"):
            opt.load_checkpoint(forged)
        assert fingerprint(opt) == before

    def test_folder_load_falls_back_past_a_newest_file_the_state_checks_refuse(self, tmp_path):
        """A newest file whose state is refused (digests redone, left -5) is skipped like a damaged one."""
        folder = tmp_path / "ckpts"
        writer = numpy_opt(20, directory=str(folder))
        good = writer.save_checkpoint()
        expected = fingerprint(writer)
        train(writer, 10)
        newest = writer.save_checkpoint()
        forge(newest, newest, lambda s: s["hybrid"]["controller"].update(left=-5))
        opt = known()
        with capture_logs() as logs:
            used = opt.load_checkpoint(folder)
        assert used == good and fingerprint(opt) == expected
        assert [e["path"] for e in logs if e["event"] == "checkpoint_skipped"] == [str(newest)]


class TestLoadStateDict:
    def test_invalid_phase_changes_nothing(self):
        """A NumPy state with an invalid phase: ValueError, weights, optimizer and counters unchanged."""
        opt = known()
        state = opt.state_dict()
        state["hybrid"]["controller"]["phase"]["value"] = "bogus"
        before = fingerprint(opt)
        with pytest.raises(ValueError, match="^'bogus' is not a valid Phase$"):
            opt.load_state_dict(state)
        assert fingerprint(opt) == before
        assert_later_steps_match(opt, known())


def mknod_full(path: Path) -> os.stat_result:
    """A copy of /dev/full at ``path`` (skips the test where mknod is not permitted)."""
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 7))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"mknod of a character device is not permitted here ({exc})")
    return os.lstat(path)


class TestSaveCheckpoint:
    def test_device_node_is_refused_and_left_as_it_was(self, tmp_path):
        """A /dev/full copy: an explicit save, an automatic save onto it and a load are refused; the
        node is unchanged and the step was taken once."""
        folder = tmp_path / "ckpts"
        folder.mkdir()
        node = step_path(folder, 10)
        before = mknod_full(node)
        opt, twin = numpy_opt(9, directory=str(folder), save_interval=10), numpy_opt(9)
        failed = "automatic checkpoint at step 10 failed: cannot write a checkpoint to .*: it is a character"
        with pytest.warns(RuntimeWarning, match=failed), capture_logs() as logs:
            train(opt, 1)
        train(twin, 1)
        assert [e["step"] for e in logs if e["event"] == "checkpoint_failed"] == [10]
        assert fingerprint(opt) == fingerprint(twin)  # the step was taken exactly once
        state = fingerprint(opt)
        with pytest.raises(CheckpointError, match=f"^cannot write a checkpoint to {node}: it is a character "
                                                  f"device, not a regular file; choose a file path$"):
            opt.save_checkpoint(node)
        with pytest.raises(CheckpointError, match=f"^checkpoint {node} is refused: it is a character device"):
            opt.load_checkpoint(node)
        assert fingerprint(opt) == state
        after = os.lstat(node)
        assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            train(opt, 10)  # the save at step 20 works
        assert read_checkpoint(step_path(folder, 20))["hybrid"]["controller"]["counters"]["steps"] == 20

    def test_keep_last_n_1_with_room_for_one_file_saves_again(self, tmp_path):
        """keep_last_n=1 on a tmpfs with room for one checkpoint: the automatic saves after the first work."""
        if shutil.which("unshare") is None:
            pytest.skip("needs util-linux unshare to mount a small tmpfs")
        small = tmp_path / "small"
        small.mkdir()
        script = tmp_path / "keep1.py"
        script.write_text(textwrap.dedent(f"""
            import json, sys, warnings
            import numpy as np
            from hpcore import CheckpointConfig, HybridTrainerConfig, LinearConfig
            from hpcore.adapters.numpy import HybridOptimizer
            from hpcore.checkpoint import checkpoint_files
            from hpcore.optim import SGD
            def make(**ck):
                cfg = HybridTrainerConfig(history_size=4, snapshot_interval=5,
                                          predictor=LinearConfig(window=4), full_steps=10,
                                          correct_steps=10, max_predict_steps=20, check_interval=10,
                                          floor=None, checkpoint=CheckpointConfig(**ck))
                return HybridOptimizer(np.zeros(20_000, np.float32), SGD(0.05, momentum=0.9), cfg)
            if sys.argv[1] == "size":
                print(make().save_checkpoint({str(tmp_path / "probe.npz")!r}).stat().st_size)
                sys.exit()
            opt = make(save_interval=10, keep_last_n=1, directory={str(small)!r})
            c = np.linspace(-1, 1, 20_000, dtype=np.float32)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for _ in range(40):
                    if opt.need_grads:
                        r = opt.params - c
                        opt.step(2 * r, float(r @ r))
                    else:
                        opt.step()
            print(json.dumps({{"files": [p.name for p in checkpoint_files({str(small)!r})],
                               "warnings": [str(w.message)[:70] for w in caught]}}))
        """))
        size = int(subprocess.run([sys.executable, str(script), "size"], capture_output=True, text=True,
                                  check=True, timeout=60).stdout)
        run = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size={size * 3 // 2048}k "
                              f"tmpfs {small} && exec {sys.executable} {script} run"],
                             capture_output=True, text=True, timeout=120)
        if run.returncode != 0 and "mount" in run.stderr:
            pytest.skip(f"cannot mount a tmpfs here: {run.stderr.strip()}")
        assert run.returncode == 0, run.stderr
        out = json.loads(run.stdout)
        assert out["files"] == ["ckpt-000000040.npz"], out["warnings"]
