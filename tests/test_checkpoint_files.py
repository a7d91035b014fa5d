"""Checkpoint files: atomic writes, stale temporaries, limits, digests, symlinks, fallback, fuzzing."""

from __future__ import annotations

import doctest
import errno
import hashlib
import io
import json
import os
import random
import re
import shutil
import stat
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

import hpcore.checkpoint
from hpcore.checkpoint import (
    CheckpointError,
    checkpoint_files,
    decode_tree,
    encode_tree,
    latest_checkpoint,
    read_checkpoint,
    register_codec,
    rotate,
    step_path,
    write_checkpoint,
)
from hpcore.checkpoint_format import index_bytes

TEMP = re.compile(r"^\.ckpt-tmp-(\d+)-[0-9a-f]{12}\.npz$")


def tree() -> dict:
    """A small state with every kind of node."""
    return {"w": np.arange(6, dtype=np.float32), "mask": np.array([True, False]), "step": 41,
            "lr": 0.1, "bad": float("nan"), "name": "sgd", "none": None, "t": (1, 2.5),
            "by_int": {3: "x", (1, 2): [np.array([7], dtype=">i8")]}, "z": np.array(2.5)}


def same(a, b) -> bool:
    """Equal trees: same types, same dict order, bit-identical arrays and floats."""
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype.str == b.dtype.str and a.shape == b.shape
                and a.tobytes() == b.tobytes())
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    return a == b


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=False)
    return buf.getvalue()


def craft(path: Path, members: dict[str, bytes], index, *, root: bytes | None = None,
          method: int = zipfile.ZIP_STORED) -> Path:
    """A zip of ``<name>.npy`` members, an index (JSON of ``index`` unless bytes) and its digest."""
    blob = index if isinstance(index, bytes) else json.dumps(index).encode()
    root = hashlib.sha256(blob).hexdigest().encode() if root is None else root
    members = {**members, "__meta__": npy_bytes(np.frombuffer(blob, np.uint8)),
               "__digest__": npy_bytes(np.frombuffer(root, np.uint8))}
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(f"{name}.npy", data)
    return path


def crafted_parts(state) -> tuple[dict[str, bytes], dict]:
    """The members and the parsed index that write_checkpoint would store for ``state``."""
    skeleton, arrays = encode_tree(state)
    return ({k: npy_bytes(a) for k, a in arrays.items()},
            json.loads(index_bytes(skeleton, arrays)))


def temporaries(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith((".ckpt-tmp-", ".tmp-")))


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


class TestWriteCheckpoint:
    def test_round_trip_is_bit_identical(self, tmp_path):
        """Every kind of node comes back equal, arrays bit for bit, dict order kept."""
        back = read_checkpoint(write_checkpoint(tmp_path / "t.npz", tree()))
        assert same(back, tree())

    def test_same_state_same_bytes(self, tmp_path):
        """Two writes of one state give identical files (fixed zip timestamps)."""
        a = write_checkpoint(tmp_path / "a.npz", tree()).read_bytes()
        assert a == write_checkpoint(tmp_path / "b.npz", tree()).read_bytes()

    def test_fsync_file_then_replace_then_fsync_folder(self, tmp_path, monkeypatch):
        """The temporary is named .ckpt-tmp-<pid>-<hex>, fsynced, renamed, then the folder fsynced."""
        calls = []
        fsync, replace = os.fsync, os.replace

        def record_fsync(fd):
            calls.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
            fsync(fd)

        def record_replace(src, dst):
            calls.append(f"replace {Path(src).name}")
            replace(src, dst)

        monkeypatch.setattr(os, "fsync", record_fsync)
        monkeypatch.setattr(os, "replace", record_replace)
        write_checkpoint(tmp_path / "t.npz", {"a": np.ones(3)})
        assert calls[0] == "fsync file" and calls[2] == "fsync folder" and len(calls) == 3
        m = TEMP.match(calls[1].removeprefix("replace "))
        assert m and int(m.group(1)) == os.getpid()
        assert temporaries(tmp_path) == []

    def test_removes_temporaries_of_dead_writers(self, tmp_path):
        """Leftovers of dead pids, of this pid and of hpcore 0.1 go; a live pid's and links stay."""
        outside = tmp_path / "outside.npz"
        outside.write_bytes(b"keep")
        folder = tmp_path / "ckpts"
        folder.mkdir()
        dead, live = dead_pid(), os.getppid()
        names = {"dead": f".ckpt-tmp-{dead}-00aa.npz", "own": f".ckpt-tmp-{os.getpid()}-00bb.npz",
                 "old": ".tmp-abc_1234.npz", "live": f".ckpt-tmp-{live}-00cc.npz"}
        for name in names.values():
            (folder / name).write_bytes(b"half a checkpoint")
        (folder / f".ckpt-tmp-{dead}-00dd.npz").symlink_to(outside)
        with capture_logs() as logs:
            write_checkpoint(step_path(folder, 1), {"a": np.ones(3)})
        assert temporaries(folder) == sorted([names["live"], f".ckpt-tmp-{dead}-00dd.npz"])
        assert outside.read_bytes() == b"keep"
        removed = {Path(e["path"]).name for e in logs if e["event"] == "checkpoint_temp_removed"}
        assert removed == {names["dead"], names["own"], names["old"]}

    @pytest.mark.parametrize("kind", ["directory", "FIFO", "character device", "symlink"])
    def test_refuses_a_target_that_is_not_a_regular_file(self, tmp_path, kind):
        """A folder, a FIFO, a copy of /dev/full or a symlink at the target is refused, untouched."""
        target = tmp_path / "t.npz"
        if kind == "directory":
            target.mkdir()
        elif kind == "FIFO":
            os.mkfifo(target)
        elif kind == "symlink":
            target.symlink_to(tmp_path / "elsewhere.npz")
        else:
            try:
                os.mknod(target, stat.S_IFCHR | 0o666, os.makedev(1, 7))  # what /dev/full is
            except PermissionError:
                pytest.skip("creating a device node needs CAP_MKNOD")
        before = os.lstat(target).st_mode
        msg = f"cannot write a checkpoint to {target}: it is a {kind}, not a regular file; choose a file path"
        with pytest.raises(CheckpointError, match=f"^{re.escape(msg)}$"):
            write_checkpoint(target, {"a": np.ones(3)})
        assert os.lstat(target).st_mode == before
        assert temporaries(tmp_path) == []

    @staticmethod
    def full_once(monkeypatch, times=1):
        """The next ``times`` fsyncs of a file fail as on a full device."""
        fsync, left = os.fsync, [times]

        def fail(fd):
            if left[0] and not stat.S_ISDIR(os.fstat(fd).st_mode):
                left[0] -= 1
                raise OSError(errno.ENOSPC, "No space left on device")
            fsync(fd)

        monkeypatch.setattr(os, "fsync", fail)

    def test_no_space_removes_the_temporary(self, tmp_path, monkeypatch):
        """A full device: CheckpointError, no temporary left, the old file intact; the next save works."""
        p = write_checkpoint(tmp_path / "t.npz", {"v": np.zeros(100)})
        before = p.read_bytes()
        self.full_once(monkeypatch)
        with pytest.raises(CheckpointError, match=r"^no space left on the device to write .*t\.npz \(about "
                                                  r"\d+ bytes\); the temporary file is removed"):
            write_checkpoint(p, {"v": np.ones(100)})
        assert temporaries(tmp_path) == [] and p.read_bytes() == before
        write_checkpoint(p, {"v": np.ones(100)})
        np.testing.assert_array_equal(read_checkpoint(p)["v"], np.ones(100))

    def test_make_room_is_called_once_then_the_write_retried(self, tmp_path, monkeypatch):
        """make_room runs once after the first full-device failure and the retry succeeds."""
        calls = []
        self.full_once(monkeypatch)
        p = write_checkpoint(tmp_path / "t.npz", {"v": np.ones(4)}, make_room=lambda: calls.append(1))
        assert calls == [1] and temporaries(tmp_path) == []
        np.testing.assert_array_equal(read_checkpoint(p)["v"], np.ones(4))
        self.full_once(monkeypatch, times=2)
        with pytest.raises(CheckpointError, match="^no space left on the device"):
            write_checkpoint(p, {"v": np.zeros(4)}, make_room=lambda: calls.append(2))
        assert calls == [1, 2] and temporaries(tmp_path) == []

    def test_real_full_device_with_room_for_one_file(self, tmp_path):
        """On a 1 MiB tmpfs holding one 600 kB checkpoint: refused cleanly, then make_room lets it save."""
        if shutil.which("unshare") is None:
            pytest.skip("needs util-linux unshare to mount a small tmpfs")
        small = tmp_path / "small"
        small.mkdir()
        script = tmp_path / "full.py"
        script.write_text(textwrap.dedent(f"""
            import json, os, sys
            import numpy as np
            from hpcore.checkpoint import (CheckpointError, checkpoint_files, read_checkpoint, rotate,
                                           step_path, write_checkpoint)
            folder, out = {str(small)!r}, {{}}
            state = lambda s: {{"step": s, "w": np.full(75_000, s, dtype=np.float64)}}
            first = write_checkpoint(step_path(folder, 1), state(1))
            try:
                write_checkpoint(step_path(folder, 2), state(2))
            except CheckpointError as exc:
                out["error"] = str(exc)
            out["after_error"] = sorted(os.listdir(folder))
            out["rotated"] = [p.name for p in rotate(folder, 1)]
            out["first_step"] = read_checkpoint(first)["step"]
            write_checkpoint(step_path(folder, 2), state(2), make_room=first.unlink)
            out["after_make_room"] = sorted(os.listdir(folder))
            out["second_step"] = read_checkpoint(step_path(folder, 2))["step"]
            print(json.dumps(out))
        """))
        run = subprocess.run(["unshare", "-m", "sh", "-c",
                              f"mount -t tmpfs -o size=1m tmpfs {small} && exec {sys.executable} {script}"],
                             capture_output=True, text=True, timeout=60)
        if run.returncode != 0 and "mount" in run.stderr:
            pytest.skip(f"cannot mount a tmpfs here: {run.stderr.strip()}")
        assert run.returncode == 0, run.stderr
        out = json.loads(run.stdout)
        assert out["error"].startswith(f"no space left on the device to write {small}/ckpt-000000002.npz")
        assert out["after_error"] == ["ckpt-000000001.npz"] and out["rotated"] == []
        assert out["first_step"] == 1
        assert out["after_make_room"] == ["ckpt-000000002.npz"] and out["second_step"] == 2

    def test_refuses_a_state_nested_deeper_than_the_reader_reads(self, tmp_path):
        """A state nested past max_depth is refused at write time, not at load time."""
        deep = [1]
        for _ in range(60):
            deep = [deep]
        with pytest.raises(CheckpointError, match=r"nests 123 levels deep, more than max_depth=100"):
            write_checkpoint(tmp_path / "t.npz", deep)
        assert os.listdir(tmp_path) == []

    def test_unsupported_leaves_are_named(self, tmp_path):
        """An object, or an array of objects, is refused with its place."""
        with pytest.raises(TypeError, match=r"^cannot checkpoint state\.probe of type object"):
            write_checkpoint(tmp_path / "t.npz", {"probe": object()})
        with pytest.raises(TypeError, match=r"^cannot checkpoint state\.o: an array of Python objects"):
            write_checkpoint(tmp_path / "t.npz", {"o": np.array([None])})


def _patch_central_sizes(path: Path) -> None:
    """Make the first central-directory entry claim 2 GiB (stored, compressed and not)."""
    raw = bytearray(path.read_bytes())
    at = raw.index(b"PK\x01\x02")
    raw[at + 20 : at + 28] = struct.pack("<II", 2**31, 2**31)
    path.write_bytes(bytes(raw))


def _header_only(shape, descr="<f8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + bytes(8)


def _crafted(tmp_path: Path, case: str) -> Path:
    """A crafted file of each kind a careful tester made; the digests agree unless said."""
    members, index = crafted_parts({"a": np.arange(4.0), "step": 41})
    p = tmp_path / f"{case}.npz"
    if case == "huge declared shape":
        members["a0"] = _header_only((10**12,))
        index["members"]["a0"]["shape"] = [10**12]
    elif case == "objects in a header":
        members["a0"] = _header_only((1,), "|O")
    elif case == "deep JSON":
        return craft(p, members, b"[" * 200_000 + b"]" * 200_000)
    elif case == "list index":
        return craft(p, members, [])
    elif case == "missing member":
        index["members"]["a1"] = index["members"]["a0"]
    elif case == "missing array in the tree":
        index["tree"]["__dict__"]["a"] = {"__array__": "a7"}
    elif case == "unused member":
        members["a1"] = npy_bytes(np.zeros(1))
        index["members"]["a1"] = json.loads(index_bytes(None, {"a1": np.zeros(1)}))["members"]["a1"]
    elif case == "unhashable key":
        index["tree"] = {"__items__": [[{"__list__": [1]}, {"__array__": "a0"}]]}
    elif case == "unknown node":
        index["tree"] = {"__dict__": {"a": {"__array__": "a0"}, "b": {"__set__": [1]}}}
    elif case == "edited index":
        craft(p, members, index)
        blob = json.dumps(index).encode()
        index["tree"]["__dict__"]["step"] = 42  # the counter edited, the digest left alone
        return craft(p, members, index, root=hashlib.sha256(blob).hexdigest().encode())
    elif case == "bad member digest":
        members["a0"] = npy_bytes(np.arange(4.0) + 1)
    elif case == "other format":
        index["format"] = "hpcore-checkpoint/9"
    elif case == "compressed member":
        members["a0"] = npy_bytes(np.zeros(1_000_000))  # 8 MB of zeros, 8 kB deflated
        index["members"]["a0"]["shape"] = [1_000_000]
        return craft(p, members, index, method=zipfile.ZIP_DEFLATED)
    elif case == "directory claims 2 GiB":
        _patch_central_sizes(craft(p, members, index))
        return p
    elif case == "old format":
        np.savez(p, a0=np.arange(4.0), __meta__=np.frombuffer(b'{"format":"hpcore-checkpoint/1"}', np.uint8))
        return p
    elif case == "unexpected member":
        members["evil"] = b""
    return craft(p, members, index)


CRAFTED = {
    "huge declared shape": "is corrupted: the member 'a0.npy' declares the shape (1000000000000,) of "
                           "float64 (8000000000128 bytes with its header) but holds 136 bytes",
    "objects in a header": "is refused: the member 'a0.npy' holds Python objects (object), which would "
                           "need pickle",
    "deep JSON": "is refused: its index nests deeper than max_depth=100; pass a larger one",
    "list index": "is corrupted: its index is a JSON array, expected an object",
    "missing member": "is corrupted: its index names the member 'a1', which the file does not hold",
    "missing array in the tree": "is corrupted: the tree node at state.a refers to the array 'a7', "
                                 "which is not there",
    "unused member": "is corrupted: its index lists the array 'a1', which no tree node uses",
    "unhashable key": "is corrupted: the dict at state has an unhashable key (list)",
    "unknown node": "is corrupted: the tree node at state.b (keys ['__set__']) is not one that "
                    "encode_tree writes",
    "edited index": "is corrupted: its index fails its SHA-256 check (the index was altered)",
    "bad member digest": "is corrupted: the member 'a0' fails its SHA-256 check",
    "other format": "has the format 'hpcore-checkpoint/9', expected 'hpcore-checkpoint/2'",
    "compressed member": "is corrupted: the member 'a0.npy' is compressed (method 8); checkpoint "
                         "members are stored uncompressed",
    "directory claims 2 GiB": "is corrupted: the member 'a0.npy' declares 2147483648 bytes at offset 0, "
                              "past the end of the",
    "old format": "is not an hpcore checkpoint of this version (no __digest__ member",
    "unexpected member": "is corrupted: unexpected member 'evil.npy'",
}


class TestReadCheckpoint:
    @pytest.mark.parametrize("case", list(CRAFTED))
    def test_crafted_file_is_refused_quickly_and_cheaply(self, tmp_path, case):
        """Each crafted file: CheckpointError naming the file and the fault, < 1 s and < 16 MB."""
        p = _crafted(tmp_path, case)
        tracemalloc.start()
        t0 = time.perf_counter()
        try:
            with pytest.raises(CheckpointError) as caught:
                read_checkpoint(p)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert str(caught.value).startswith(f"checkpoint {p} {CRAFTED[case]}")
        assert time.perf_counter() - t0 < 1.0 and peak < 16 * 2**20

    def test_limits_on_size_and_members(self, tmp_path):
        """max_bytes and max_members refuse a valid file from its zip directory alone."""
        p = write_checkpoint(tmp_path / "t.npz", {f"x{i}": np.zeros(100) for i in range(50)})
        with pytest.raises(CheckpointError, match=re.escape(
                f"checkpoint {p} is refused: it holds 52 members, more than max_members=10; pass a "
                f"larger max_members to read it")):
            read_checkpoint(p, max_members=10)
        with pytest.raises(CheckpointError, match=r"is refused: its members hold \d+ bytes, more than "
                                                  r"max_bytes=1000; pass a larger max_bytes to read it$"):
            read_checkpoint(p, max_bytes=1000)
        with pytest.raises(CheckpointError, match=r"is refused: its index takes \d+ bytes, more than "
                                                  r"max_index_bytes=100; pass a larger max_index_bytes"):
            read_checkpoint(p, max_index_bytes=100)
        assert len(read_checkpoint(p, max_members=52)) == 50

    def test_limits_are_validated(self, tmp_path):
        """A limit below 1 fails with the field, the rule and the value."""
        with pytest.raises(ValueError, match=r"^'max_depth' must be >= 1 \(got 0\)$"):
            read_checkpoint(tmp_path / "t.npz", max_depth=0)

    def test_symlink_outside_its_folder_is_refused(self, tmp_path):
        """A link out of the folder is refused; a link to a file beside it reads."""
        (tmp_path / "in").mkdir()
        real = write_checkpoint(tmp_path / "real.npz", {"a": np.ones(2)})
        link = tmp_path / "in" / "ckpt-000000001.npz"
        link.symlink_to(real)
        msg = f"checkpoint {link} is refused: it is a symlink to {real}, outside its folder {tmp_path / 'in'}"
        with pytest.raises(CheckpointError, match=f"^{re.escape(msg)}$"):
            read_checkpoint(link)
        beside = tmp_path / "latest.npz"
        beside.symlink_to(real.name)
        np.testing.assert_array_equal(read_checkpoint(beside)["a"], np.ones(2))

    def test_not_regular_missing_and_foreign_files(self, tmp_path):
        """A FIFO (without blocking), a folder, a missing path and a plain npz are refused."""
        os.mkfifo(tmp_path / "fifo.npz")
        with pytest.raises(CheckpointError, match=r"fifo\.npz is refused: it is a FIFO, not a regular file$"):
            read_checkpoint(tmp_path / "fifo.npz")
        with pytest.raises(CheckpointError, match=r"is refused: it is a directory, not a regular file$"):
            read_checkpoint(tmp_path)
        missing = re.escape(str(tmp_path / "no.npz"))
        with pytest.raises(CheckpointError, match=f"^no checkpoint at {missing}$"):
            read_checkpoint(tmp_path / "no.npz")
        np.savez(tmp_path / "plain.npz", a=np.ones(2))
        with pytest.raises(CheckpointError, match=r"plain\.npz is not an hpcore checkpoint \(no __meta__"):
            read_checkpoint(tmp_path / "plain.npz")
        (tmp_path / "empty.npz").write_bytes(b"")
        with pytest.raises(CheckpointError, match=r"empty\.npz is truncated or corrupted \(BadZipFile: "):
            read_checkpoint(tmp_path / "empty.npz")


def _damage(folder: Path, how: str) -> Path:
    """Damage (or replace) ckpt-000000002.npz in ``folder`` in one of the tester's ways."""
    p = step_path(folder, 2)
    write_checkpoint(p, {"step": 2, "w": np.arange(1000.0)})
    raw = p.read_bytes()
    if how == "truncated":
        p.write_bytes(raw[: len(raw) // 2])
    elif how == "empty":
        p.write_bytes(b"")
    elif how == "garbage":
        p.write_bytes(os.urandom(len(raw)))
    elif how == "flipped array byte":
        i = raw.index(np.arange(1000.0)[500:501].tobytes())
        p.write_bytes(raw[:i] + b"\xff" + raw[i + 1 :])
    elif how in CRAFTED:
        p.unlink()
        _crafted(folder, how).rename(p)
    elif how == "symlink outside":
        p.unlink()
        outside = write_checkpoint(folder.parent / "outside.npz", {"step": 99, "w": np.zeros(1)})
        p.symlink_to(outside)
    elif how == "directory":
        p.unlink()
        p.mkdir()
    elif how == "FIFO":
        p.unlink()
        os.mkfifo(p)
    return p


DAMAGE = ["truncated", "empty", "garbage", "flipped array byte", *CRAFTED, "symlink outside",
          "directory", "FIFO"]


class TestLatestCheckpoint:
    @pytest.mark.parametrize("how", DAMAGE)
    def test_damaged_newest_falls_back_to_the_older(self, tmp_path, how):
        """The older good checkpoint loads; a damaged file is logged as skipped, a non-file ignored."""
        folder = tmp_path / "ckpts"
        good = write_checkpoint(step_path(folder, 1), {"step": 1, "w": np.arange(3.0)})
        bad = _damage(folder, how)
        with capture_logs() as logs:
            path, state = latest_checkpoint(folder)
        assert path == good and same(state, {"step": 1, "w": np.arange(3.0)})
        skipped = [e for e in logs if e["event"] == "checkpoint_skipped"]
        if how in ("symlink outside", "directory", "FIFO"):
            assert skipped == []  # not a checkpoint file at all: never opened
        else:
            assert [e["path"] for e in skipped] == [str(bad)]
            assert skipped[0]["reason"].startswith(f"checkpoint {bad} ")

    def test_none_passes_names_each_file_and_why(self, tmp_path):
        """With no valid file, the error lists every skipped file with its reason."""
        for step in (1, 2):
            step_path(tmp_path, step).write_bytes(b"x" * step)
        with pytest.raises(CheckpointError) as caught:
            latest_checkpoint(tmp_path)
        msg = str(caught.value)
        assert msg.startswith(f"no readable checkpoint in {tmp_path}: checkpoint {step_path(tmp_path, 2)} is "
                              f"truncated or corrupted")
        assert f"; checkpoint {step_path(tmp_path, 1)} is truncated or corrupted" in msg

    def test_empty_or_missing_folder(self, tmp_path):
        """An empty folder and a missing one are refused, each named."""
        with pytest.raises(CheckpointError, match=f"^no checkpoint in {re.escape(str(tmp_path))} "):
            latest_checkpoint(tmp_path)
        with pytest.raises(CheckpointError, match=f"^no checkpoint folder at {re.escape(str(tmp_path))}/x$"):
            latest_checkpoint(tmp_path / "x")

    def test_limits_are_passed_on(self, tmp_path):
        """The limits of read_checkpoint apply to each file tried."""
        write_checkpoint(step_path(tmp_path, 1), {"a": np.ones(2)})
        with pytest.raises(CheckpointError, match="more than max_members=2"):
            latest_checkpoint(tmp_path, max_members=2)
        with pytest.raises(TypeError, match="max_member"):
            latest_checkpoint(tmp_path, max_member=2)


class TestCheckpointFiles:
    def test_only_regular_checkpoint_files_in_step_order(self, tmp_path):
        """Symlinks, folders, FIFOs, temporaries and other names are ignored; 10-digit steps sort last."""
        for step in (3, 1, 10**9):
            write_checkpoint(step_path(tmp_path, step), {"s": step})
        (tmp_path / "ckpt-000000004.npz").symlink_to(step_path(tmp_path, 1))
        (tmp_path / "ckpt-000000005.npz").mkdir()
        os.mkfifo(tmp_path / "ckpt-000000006.npz")
        (tmp_path / f".ckpt-tmp-{os.getpid()}-ab.npz").write_bytes(b"")
        (tmp_path / "ckpt-7.npz").write_bytes(b"")
        assert [p.name for p in checkpoint_files(tmp_path)] == [
            "ckpt-000000001.npz", "ckpt-000000003.npz", "ckpt-1000000000.npz"]
        assert checkpoint_files(tmp_path / "missing") == []


class TestRotate:
    def test_keeps_the_newest_and_removes_leftovers(self, tmp_path):
        """All but the newest keep_last_n go, and so do the temporaries of dead writers."""
        for step in range(1, 5):
            write_checkpoint(step_path(tmp_path, step), {"s": step})
        (tmp_path / f".ckpt-tmp-{dead_pid()}-ab.npz").write_bytes(b"")
        assert [p.name for p in rotate(tmp_path, 2)] == ["ckpt-000000001.npz", "ckpt-000000002.npz"]
        assert sorted(os.listdir(tmp_path)) == ["ckpt-000000003.npz", "ckpt-000000004.npz"]

    def test_never_deletes_the_newest_valid_checkpoint(self, tmp_path):
        """Damaged newer files do not push the newest valid one out."""
        good = write_checkpoint(step_path(tmp_path, 1), {"s": 1})
        for step in (2, 3):
            step_path(tmp_path, step).write_bytes(b"damaged")
        with capture_logs() as logs:
            assert rotate(tmp_path, 1) == [step_path(tmp_path, 2)]
        assert [p.name for p in checkpoint_files(tmp_path)] == [good.name, "ckpt-000000003.npz"]
        assert latest_checkpoint(tmp_path)[0] == good
        skipped = [e["path"] for e in logs if e["event"] == "checkpoint_skipped"]
        assert skipped == [str(step_path(tmp_path, 3)), str(step_path(tmp_path, 2))]

    def test_deletes_nothing_when_nothing_is_valid(self, tmp_path):
        """Without any valid checkpoint nothing is deleted, and that is logged."""
        for step in (1, 2):
            step_path(tmp_path, step).write_bytes(b"damaged")
        with capture_logs() as logs:
            assert rotate(tmp_path, 0) == []
        assert len(checkpoint_files(tmp_path)) == 2
        assert [e["event"] for e in logs][-1] == "checkpoint_rotation_skipped"

    def test_never_deletes_through_symlinks(self, tmp_path):
        """A ckpt-* symlink (and what it points to) survives rotation."""
        outside = write_checkpoint(tmp_path / "outside.npz", {"s": 0})
        folder = tmp_path / "ckpts"
        write_checkpoint(step_path(folder, 2), {"s": 2})
        step_path(folder, 1).symlink_to(outside)
        assert rotate(folder, 0) == []
        assert step_path(folder, 1).is_symlink() and outside.is_file()

    def test_keep_last_n_is_validated(self, tmp_path):
        """A negative keep_last_n is refused with its value."""
        with pytest.raises(ValueError, match=r"^'keep_last_n' must be an int >= 0 \(got -1\)$"):
            rotate(tmp_path, -1)


WRITER = """
import sys
import numpy as np
from hpcore.checkpoint import checkpoint_files, rotate, step_path, write_checkpoint
folder = sys.argv[1]
files = checkpoint_files(folder)
step = int(files[-1].name[5:-4]) + 1 if files else 1
base = np.arange(5_000_000, dtype=np.float32)  # 20 MB
print("ready", flush=True)
while True:
    write_checkpoint(step_path(folder, step), {"step": step, "w": base + step})
    rotate(folder, 2)
    step += 1
"""


class TestKillDuringWrite:
    def test_kill_9_leaves_a_loadable_checkpoint_and_no_temporaries_for_long(self, tmp_path):
        """kill -9 at random moments of a save loop: a valid newest loads; one more save cleans up."""
        script = tmp_path / "writer.py"
        script.write_text(WRITER)
        folder = tmp_path / "ckpts"
        folder.mkdir()
        rng, leftovers, delays = random.Random(), [], []
        for round_ in range(5):
            proc = subprocess.Popen([sys.executable, str(script), str(folder)], stdout=subprocess.PIPE)
            try:
                assert proc.stdout.readline() == b"ready\n"
                if round_ == 0:  # once for sure in the middle of writing a temporary
                    deadline = time.monotonic() + 20
                    while not any(n.startswith(".ckpt-tmp-") and os.path.getsize(folder / n) > 2**20
                                  for n in temporaries(folder)):
                        assert time.monotonic() < deadline and proc.poll() is None
                        time.sleep(0.001)
                else:
                    delays.append(rng.uniform(0.05, 0.6))
                    time.sleep(delays[-1])
            finally:
                proc.kill()  # SIGKILL
                proc.wait()
                proc.stdout.close()
            leftovers += temporaries(folder)
        assert leftovers, "no kill landed inside a write"
        path, state = latest_checkpoint(folder)
        assert path == checkpoint_files(folder)[-1], delays  # renames are atomic: no half files
        np.testing.assert_array_equal(state["w"], np.arange(5_000_000, dtype=np.float32) + state["step"])
        write_checkpoint(step_path(folder, state["step"] + 100), {"step": 0, "w": np.zeros(1)})
        rotate(folder, 2)
        assert temporaries(folder) == [], delays
        assert len(checkpoint_files(folder)) == 2


class TestMutatedFile:
    ORIGINAL = tree()

    @staticmethod
    def hot_spots(raw: bytes) -> list[int]:
        """Offsets of zip headers and .npy headers, where a mutation is most interesting."""
        spots = []
        for sig, size in ((b"PK\x03\x04", 30), (b"PK\x01\x02", 46), (b"PK\x05\x06", 22), (b"\x93NUMPY", 80)):
            at = raw.find(sig)
            while at >= 0:
                spots += range(at, min(at + size, len(raw)))
                at = raw.find(sig, at + 1)
        return spots

    @pytest.fixture(scope="class")
    def valid(self, tmp_path_factory):
        folder = tmp_path_factory.mktemp("fuzz")
        raw = write_checkpoint(folder / "orig.npz", self.ORIGINAL).read_bytes()
        return folder / "mutated.npz", raw, self.hot_spots(raw)

    @settings(max_examples=400, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def test_mutated_bytes_are_refused_or_load_identical(self, valid, data):
        """Changed, cut or appended bytes: a CheckpointError, or the very same tree."""
        path, raw, spots = valid
        buf = bytearray(raw)
        anywhere, hot = st.integers(0, len(raw) - 1), st.sampled_from(spots)
        for at in data.draw(st.lists(anywhere | hot, min_size=1, max_size=4), label="offsets"):
            buf[at] = data.draw(st.integers(0, 255), label="byte")
        cut = data.draw(st.sampled_from([None, "cut", "append"]), label="end")
        if cut == "cut":
            del buf[data.draw(st.integers(0, len(buf) - 1), label="cut at"):]
        elif cut == "append":
            buf += data.draw(st.binary(min_size=1, max_size=64), label="appended")
        path.write_bytes(bytes(buf))
        try:
            back = read_checkpoint(path)
        except CheckpointError as exc:
            assert str(exc).startswith(f"checkpoint {path} ")
        else:
            assert same(back, self.ORIGINAL)


class TestMutatedIndex:
    MEMBERS, INDEX = crafted_parts(tree())
    BLOB = json.dumps(INDEX, separators=(",", ":")).encode()

    @pytest.fixture(scope="class")
    def folder(self, tmp_path_factory):
        return tmp_path_factory.mktemp("fuzz-index")

    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def test_crafted_index_or_header_is_refused_or_loads(self, folder, data):
        """An index or .npy header edited with every digest and CRC redone: refused, or read."""
        members, blob = dict(self.MEMBERS), bytearray(self.BLOB)
        key = data.draw(st.sampled_from([None, *members]), label="member header")
        target = blob if key is None else bytearray(members[key])
        symbols = st.sampled_from(b'[]{}",:0123456789-.eE tfnul\\_a') | st.integers(0, 255)
        for _ in range(data.draw(st.integers(1, 4), label="edits")):
            at = data.draw(st.integers(0, min(len(target), 128 if key else len(target)) - 1), label="at")
            how = data.draw(st.sampled_from(["set", "insert", "delete"]), label="how")
            if how == "delete":
                del target[at]
            else:
                target[at : at + (how == "set")] = bytes([data.draw(symbols, label="symbol")])
        if key is not None:
            members[key] = bytes(target)
        p = craft(folder / "m.npz", members, bytes(blob))
        try:
            read_checkpoint(p)
        except CheckpointError as exc:
            assert str(exc).startswith(f"checkpoint {p} ")


class TestDecodeTree:
    def test_malformed_nodes_are_checkpoint_errors(self):
        """A node encode_tree does not write, a missing array or a reused one: CheckpointError."""
        skeleton, arrays = encode_tree({"a": np.ones(2)})
        assert same(decode_tree(skeleton, arrays), {"a": np.ones(2)})
        cases = {"the tree node at state (a list) is not one": [1],
                 "the tree node at state.x refers to the array 'a0' a second time":
                     {"__dict__": {"a": {"__array__": "a0"}, "x": {"__array__": "a0"}}},
                 "the tree node at state (keys ['__float__']) is not one": {"__float__": "one"}}
        for message, bad in cases.items():
            with pytest.raises(CheckpointError, match=f"^checkpoint is corrupted: {re.escape(message)}"):
                decode_tree(bad, arrays)

    def test_unknown_tensor_type_names_the_adapter(self):
        """Tensors of an adapter not imported say what to import."""
        bad = {"__codec__": "mlx", "key": "a0", "tag": ""}
        with pytest.raises(CheckpointError, match=r"^checkpoint holds 'mlx' tensors; import the adapter"):
            decode_tree(bad, {"a0": np.ones(1)})


class Box:
    """A leaf type NumPy does not know."""

    def __init__(self, v):
        self.v = v


register_codec("box", lambda x: isinstance(x, Box), lambda b: (np.asarray(b.v), "box"),
               lambda a, tag: Box(a) if tag == "box" else 1 / 0)


class TestRegisterCodec:
    def test_codec_round_trip_and_failure(self, tmp_path):
        """A registered leaf comes back; a codec that fails on a file is a CheckpointError."""
        p = write_checkpoint(tmp_path / "t.npz", {"b": Box([1.0, 2.0])})
        np.testing.assert_array_equal(read_checkpoint(p)["b"].v, [1.0, 2.0])
        members, index = crafted_parts({"b": Box([1.0])})
        index["tree"]["__dict__"]["b"]["tag"] = "other"
        bad = craft(tmp_path / "bad.npz", members, index)
        msg = ("is corrupted: the 'box' codec cannot rebuild state.b from float64 (1,) with the tag "
               "'other' (ZeroDivisionError")
        with pytest.raises(CheckpointError, match=re.escape(msg)):
            read_checkpoint(bad)


class TestEncodeTree:
    def test_arrays_are_split_out_in_order(self):
        """Arrays become a0, a1, ... in tree order; the skeleton is JSON."""
        skeleton, arrays = encode_tree({"x": np.zeros(1), "y": [np.ones(2)]})
        assert list(arrays) == ["a0", "a1"] and json.loads(json.dumps(skeleton)) == skeleton


class TestStepPath:
    def test_name(self, tmp_path):
        """Nine digits at least, zero padded."""
        assert step_path(tmp_path, 42).name == "ckpt-000000042.npz"
        assert step_path(tmp_path, 10**9).name == "ckpt-1000000000.npz"


class TestModuleExample:
    def test_docstring_example_runs(self):
        """The module docstring's example passes as a doctest."""
        result = doctest.testmod(hpcore.checkpoint)
        assert result.attempted > 0 and result.failed == 0

