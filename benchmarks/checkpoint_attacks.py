"""A careful tester's attack table against checkpoint files, re-run through the public API.

Each attack class interrupts, damages or forges checkpoints of a NumPy ``HybridOptimizer``
(the torch wrapper for the SGD-into-Adam case) and counts what the library did with each try:

- refused: ``CheckpointError`` from ``load_checkpoint`` (``ValueError`` from
  ``load_state_dict``); the victim's weights, optimizer state and ``statistics()`` must then be
  bit-identical to before ("state changed after a refusal" must be 0), and a few later steps
  must give what a twin that never saw the file gives;
- accepted: the load went through; "bit-identical" where the saved state is known;
- raw exceptions: anything else escaping the public call (must be 0).

For the save attacks (kill -9, full disk, device node) "refused" counts saves that failed and
were reported (a warning, a ``checkpoint_failed`` event, or a ``CheckpointError``), "accepted"
saves or loads that succeeded, and "state changed" steps not taken exactly once.

    python benchmarks/checkpoint_attacks.py            # the tester's sizes: 25 kills of a
                                                       # 5M-parameter model (320 MB files), 400 flips
    python benchmarks/checkpoint_attacks.py --quick    # small sizes and counts, well under a minute

Prints a Markdown table, writes JSON (``--out``, default
``hpcore-results/checkpoint_attacks.json``) and exits 1 when any attack class fails.
"""

from __future__ import annotations

import argparse
import copy
import errno
import hashlib
import io
import json
import os
import platform
import random
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import structlog
from numpy.lib import format as npy
from structlog.testing import capture_logs

import hpcore
from hpcore import CheckpointConfig, CheckpointError, HybridTrainerConfig, LinearConfig
from hpcore.adapters.numpy import HybridOptimizer
from hpcore.checkpoint import checkpoint_files, encode_tree, read_checkpoint, write_checkpoint
from hpcore.checkpoint_format import index_bytes
from hpcore.optim import SGD, Adam

# A cadence short enough that a few dozen steps hold a jump (Predict, Correct, judgement).
SMALL = HybridTrainerConfig(history_size=4, snapshot_interval=5, predictor=LinearConfig(window=4),
                            full_steps=10, correct_steps=10, max_predict_steps=20, check_interval=10,
                            floor=None)
N_SMALL = 64  # parameters of the small model most attacks use
TRAINED, KNOWN = 40, 23  # steps of the saved original (it has jumped) and of the victim
LATER = 12  # steps after a refusal, compared with a twin's


# ---------------------------------------------------------------------------- models
def numpy_opt(n: int = N_SMALL, *, steps: int = 0, target: float = 1.0, adam: bool = False,
              cfg: HybridTrainerConfig = SMALL, **checkpoint: Any) -> HybridOptimizer:
    """A NumPy HybridOptimizer over ``n`` zeros, trained ``steps`` steps towards ``target``."""
    inner = Adam(1e-2) if adam else SGD(0.05, momentum=0.9)
    opt = HybridOptimizer(np.zeros(n, np.float32), inner,
                          attrs.evolve(cfg, checkpoint=CheckpointConfig(**checkpoint)))
    train(opt, steps, target)
    return opt


def train(opt: Any, steps: int, target: float = 1.0) -> None:
    """``steps`` steps of the quadratic ``|p - target * linspace(-1, 1)|^2``."""
    c = None
    for _ in range(steps):
        if opt.need_grads:
            c = target * np.linspace(-1, 1, opt.params.size, dtype=np.float32) if c is None else c
            r = opt.params - c
            opt.step(2 * r, float(r @ r))
        else:
            opt.step()


def victim() -> HybridOptimizer:
    """The wrapper that loads in a known state (other target, other step count)."""
    return numpy_opt(steps=KNOWN, target=-0.5)


def freeze(x: Any) -> Any:
    """A hashable, bit-exact copy of a tree (arrays and tensors by dtype, shape and bytes)."""
    if type(x).__module__.startswith("torch") and hasattr(x, "detach"):
        import torch

        t = x.detach().cpu().contiguous()
        t = t.view(torch.int16) if t.dtype == torch.bfloat16 else t
        return ("tensor", str(x.dtype), tuple(t.shape), t.numpy().tobytes())
    if isinstance(x, np.ndarray):
        return ("array", x.dtype.str, x.shape, np.ascontiguousarray(x).tobytes())
    if isinstance(x, (float, np.floating)):
        return ("float", struct.pack("<d", float(x)))
    if isinstance(x, (bool, np.bool_)):
        return ("bool", bool(x))
    if isinstance(x, (int, np.integer)):
        return ("int", int(x))
    if isinstance(x, dict):
        return ("dict", tuple((freeze(k), freeze(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, tuple(freeze(v) for v in x))
    if isinstance(x, (str, type(None))):
        return (type(x).__name__, x)
    return ("other", type(x).__name__, repr(x))


def fingerprint(opt: Any) -> Any:
    """Weights, optimizer and hybrid state, and statistics, bit for bit."""
    return freeze({"state": opt.state_dict(), "stats": opt.statistics().to_dict()})


# ---------------------------------------------------------------------------- crafting
def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    npy.write_array(buf, a, allow_pickle=False)
    return buf.getvalue()


def parts(state: Any) -> tuple[dict[str, bytes], dict]:
    """The members (``.npy`` bytes) and the parsed index that write_checkpoint stores."""
    skeleton, arrays = encode_tree(state)
    return {k: npy_bytes(a) for k, a in arrays.items()}, json.loads(index_bytes(skeleton, arrays))


def member_entry(a: np.ndarray) -> dict:
    """The index entry (dtype, shape, SHA-256) of array ``a``, as the library computes it."""
    return json.loads(index_bytes(None, {"a": a}))["members"]["a"]


def craft(path: Path, members: dict[str, bytes], index: Any, *, root: bytes | None = None) -> Path:
    """A zip of ``<name>.npy`` members, the index (JSON unless bytes) and its SHA-256 (or ``root``)."""
    blob = index if isinstance(index, bytes) else json.dumps(index, separators=(",", ":")).encode()
    root = hashlib.sha256(blob).hexdigest().encode() if root is None else root
    everything = {**members, "__meta__": npy_bytes(np.frombuffer(blob, np.uint8)),
                  "__digest__": npy_bytes(np.frombuffer(root, np.uint8))}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in everything.items():
            zf.writestr(f"{name}.npy", data)
    return path


def header_only(shape: tuple[int, ...], descr: str = "<f8", pad: int = 0) -> bytes:
    """A ``.npy`` header declaring ``shape`` followed by ``pad`` random bytes."""
    buf = io.BytesIO()
    npy.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + os.urandom(pad)


def hot_spots(raw: bytes) -> list[int]:
    """Offsets of zip and ``.npy`` headers and of the JSON index, where a flip is most telling."""
    spots: list[int] = []
    for sig, size in ((b"PK\x03\x04", 30 + 24), (b"PK\x01\x02", 46 + 24), (b"PK\x06\x06", 56),
                      (b"PK\x06\x07", 20), (b"PK\x05\x06", 22), (b"\x93NUMPY", 128)):
        at = raw.find(sig)
        while at >= 0:
            spots += range(at, min(at + size, len(raw)))
            at = raw.find(sig, at + 1)
    start = raw.find(b'{"format"')
    if start >= 0:
        spots += range(start, raw.index(b"PK", start))
    return sorted(set(spots))


def temporaries(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith((".ckpt-tmp-", ".tmp-")))


def forge(src: Path, dst: Path, edit: Callable[[Any], None]) -> Path:
    """``src``'s state edited by ``edit`` and written with every digest recomputed (the library's
    own writer: the digests are unkeyed SHA-256, so anyone can redo them)."""
    state = read_checkpoint(src)
    return write_checkpoint(dst, edit(state) or state)


# ---------------------------------------------------------------------------- tallies
@attrs.define
class Tally:
    """One row of the table."""

    attack: str
    tries: int = 0
    refused: int = 0
    accepted: int = 0
    identical: int = 0
    compared: int = 0  # accepted tries whose expected state is known
    changed: int = 0
    raw: int = 0
    notes: list[str] = attrs.field(factory=list)
    failures: list[str] = attrs.field(factory=list)
    seconds: float = 0.0
    last_error: str = ""  # the message of the last refusal
    cases: dict[str, Any] = attrs.field(factory=dict)  # per-case measurements, for the JSON

    def fail(self, why: str) -> None:
        self.failures.append(why)

    @property
    def passed(self) -> bool:
        return not self.failures and self.changed == 0 and self.raw == 0

    def row(self) -> str:
        accepted = str(self.accepted)
        if self.compared:
            accepted += f" ({self.identical} of {self.compared} bit-identical)"
        verdict = "PASS" if self.passed else "FAIL"
        shown = self.failures[:3] + ([f"... {len(self.failures) - 3} more"] if len(self.failures) > 3 else [])
        notes = "; ".join([verdict, *self.notes, *(f"**{f}**" for f in shown)])
        return (f"| {self.attack} | {self.tries} | {self.refused} | {accepted} | {self.changed} | "
                f"{self.raw} | {notes.replace('|', '/')} |")

    def to_json(self) -> dict:
        return {**attrs.asdict(self), "passed": self.passed}


def attempt(t: Tally, label: str, opt: Any, load: Callable[[], Any], *, expected: Any = None,
            must: str = "refuse", error: type[Exception] = CheckpointError,
            twin: Callable[[], Any] | None = None, steps: Callable[[Any, int], None] = train) -> str:
    """One try: ``load()`` into ``opt``, counted in ``t``; returns refused, accepted or raw.

    ``must``: ``refuse``, ``accept`` (and equal ``expected`` when given) or ``either``. After a
    refusal ``opt`` must be bit-identical to before and, with ``twin`` (a factory of ``opt``'s
    double), ``LATER`` more steps must give what they give the twin.
    """
    t.tries += 1
    before = fingerprint(opt)
    try:
        load()
        outcome = "accepted"
    except error as exc:
        outcome, t.last_error = "refused", str(exc)
    except Exception as exc:
        outcome = "raw"
        t.fail(f"{label}: raw {type(exc).__name__}: {str(exc)[:160]}")
    if outcome == "accepted":
        t.accepted += 1
        if expected is not None:
            t.compared += 1
            t.identical += fingerprint(opt) == expected
            if fingerprint(opt) != expected:
                t.fail(f"{label}: loaded a state that is not the one saved")
        if must == "refuse":
            t.fail(f"{label}: accepted")
        return outcome
    t.refused += outcome == "refused"
    t.raw += outcome == "raw"
    if fingerprint(opt) != before:
        t.changed += 1
        t.fail(f"{label}: the state changed although the load failed")
    elif twin is not None:
        other = twin()
        if fingerprint(other) != before:
            msg = f"{label}: the twin is not a double of the victim (a bug of this script)"
            raise AssertionError(msg)
        steps(opt, LATER)
        steps(other, LATER)
        if fingerprint(opt) != fingerprint(other):
            t.changed += 1
            t.fail(f"{label}: later steps differ from a twin's after the refusal")
    if must == "accept" and outcome == "refused":
        t.fail(f"{label}: refused ({t.last_error[-160:]})")
    return outcome


def saved_original(work: Path) -> tuple[HybridOptimizer, Path]:
    """The original (trained through a jump) and its checkpoint."""
    original = numpy_opt(steps=TRAINED)
    if original.statistics().jumps == 0:
        msg = "the small config no longer jumps within 40 steps: adjust SMALL"
        raise RuntimeError(msg)
    return original, original.save_checkpoint(work / "original.npz")


# ---------------------------------------------------------------------------- 1. kill -9
def child_writer(folder: str, size: int) -> None:
    """Resume from the folder (or start), then step and save forever, announcing each save."""
    opt = numpy_opt(size, adam=True, cfg=HybridTrainerConfig(), directory=folder, keep_last_n=2)
    if checkpoint_files(folder):
        opt.load_checkpoint(folder)
    else:
        train(opt, 2)
    print("ready", flush=True)
    while True:
        train(opt, 1)
        print("saving", flush=True)
        start = time.perf_counter()
        opt.save_checkpoint()
        print(f"saved {time.perf_counter() - start:.6f}", flush=True)


def _line(proc: subprocess.Popen, want: str) -> str:
    line = proc.stdout.readline()
    if not line.startswith(want):
        msg = f"writer said {line!r}, expected {want!r} (exit {proc.poll()})"
        raise RuntimeError(msg)
    return line


def attack_kill(args: argparse.Namespace, work: Path, rng: random.Random) -> Tally:
    size = args.kill_params
    t = Tally(f"kill -9 during save_checkpoint ({size:,} params, Adam, default config)")
    folder = work / "kill"
    folder.mkdir()
    checker = numpy_opt(size, adam=True, cfg=HybridTrainerConfig(), directory=str(folder), keep_last_n=2)
    durations: list[float] = []
    landed = {"inside a temporary": 0, "after the save returned": 0, "elsewhere in the save": 0}
    for i in range(args.kills):
        proc = subprocess.Popen([sys.executable, __file__, "--child", "writer", str(folder), str(size)],
                                stdout=subprocess.PIPE, text=True)
        try:
            _line(proc, "ready")
            if not durations:  # first try: let one save finish to learn how long a save takes
                _line(proc, "saving")
                durations.append(float(_line(proc, "saved").split()[1]))
            _line(proc, "saving")
            time.sleep(rng.uniform(0.0, 1.1 * float(np.mean(durations))))
        finally:
            proc.kill()  # SIGKILL
            rest = proc.communicate()[0]
        done = [float(w.split()[1]) for w in rest.splitlines() if w.startswith("saved")]
        durations += done
        temps = temporaries(folder)
        key = ("after the save returned" if done else
               "inside a temporary" if temps else "elsewhere in the save")
        landed[key] += 1
        t.tries += 1
        files = checkpoint_files(folder)
        try:
            path = checker.load_checkpoint(folder)
        except Exception as exc:
            t.raw += not isinstance(exc, CheckpointError)
            t.refused += isinstance(exc, CheckpointError)
            t.fail(f"kill {i}: no loadable checkpoint ({type(exc).__name__}: {str(exc)[:120]})")
            continue
        t.accepted += 1
        t.compared += 1
        if path == files[-1] and checker.current_step == int(path.name[5:-4]):
            t.identical += 1
        else:
            t.fail(f"kill {i}: loaded {path.name} at step {checker.current_step}, newest is {files[-1].name}")
    sizes = sorted({p.stat().st_size for p in checkpoint_files(folder)})
    left_before = temporaries(folder)
    checker.save_checkpoint()  # one more save: the dead writers' temporaries must go
    left_after = temporaries(folder)
    if left_after:
        t.fail(f"temporaries left after one more save: {left_after}")
    if len(checkpoint_files(folder)) > 2:
        t.fail(f"keep_last_n=2 but {len(checkpoint_files(folder))} checkpoints")
    if not landed["inside a temporary"]:
        t.fail("no kill landed inside the write of a temporary")
    t.notes.append(f"files {sizes[-1] / 1e6:.0f} MB, save {np.median(durations):.2f} s (median); "
                   f"kills {', '.join(f'{v} {k}' for k, v in landed.items())}; after each kill the newest "
                   f"file loaded, at its own step (counted as bit-identical); "
                   f"temporaries before / after one more save: {len(left_before)} / {len(left_after)}")
    return t


# ---------------------------------------------------------------------------- 2. bit flips
def attack_flips(args: argparse.Namespace, work: Path, rng: random.Random) -> Tally:
    t = Tally("bit flips in a saved file (one bit each; half in zip/npy headers and the index)")
    original, path = saved_original(work)
    expected, raw = fingerprint(original), path.read_bytes()
    spots = hot_spots(raw)
    target = work / "flipped.npz"
    hot_refused = 0
    for i in range(args.flips):
        buf = bytearray(raw)
        at = rng.choice(spots) if i % 2 else rng.randrange(len(raw))
        buf[at] ^= 1 << rng.randrange(8)
        target.write_bytes(bytes(buf))
        opt = victim()
        how = attempt(t, f"flip at byte {at}", opt, lambda o=opt: o.load_checkpoint(target),
                      expected=expected, must="either", twin=victim if i % 10 == 0 else None)
        hot_refused += how == "refused" and bool(i % 2)
    t.notes.append(f"{len(raw):,}-byte file of a {N_SMALL}-parameter SGD model after {TRAINED} steps "
                   f"({original.statistics().jumps} jump); {hot_refused} of {args.flips // 2} header/index "
                   f"flips refused; every 10th try, if refused, followed by {LATER} steps compared with "
                   f"a twin")
    return t


# ---------------------------------------------------------------------------- 3. atomic refusals
def torch_parts() -> tuple[Callable[[str, int], Any], Callable[[Any, int], None]]:
    """A factory of torch wrappers (``Linear(4, 2)``, SGD or Adam) and their training loop."""
    import torch

    from hpcore.adapters.torch import HybridOptimizer as TorchOptimizer

    x, y = torch.linspace(-1, 1, 32).reshape(8, 4), torch.ones(8, 2)

    def make(kind: str, steps: int) -> Any:
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 2)
        inner = (torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if kind == "sgd"
                 else torch.optim.Adam(model.parameters(), lr=0.01))
        opt = TorchOptimizer(inner, SMALL)
        opt.model = model  # kept alive with its optimizer (a plain attribute)
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

    return make, torch_train


def _phase(value: str) -> Callable[[Any], None]:
    def edit(state: Any) -> None:
        state["hybrid"]["controller"]["phase"]["value"] = value
    return edit


def attack_atomic(args: argparse.Namespace, work: Path) -> Tally:
    t = Tally("refused loads are atomic (wrong optimizer, invalid phase)")
    _, path = saved_original(work)
    try:
        make, torch_train = torch_parts()
    except ImportError as exc:
        t.notes.append(f"torch cases skipped ({exc})")
    else:
        sgd = make("sgd", TRAINED)
        ck = sgd.save_checkpoint(work / "torch-sgd.npz")
        adam = make("adam", KNOWN)
        attempt(t, "torch SGD checkpoint into an Adam wrapper (load_checkpoint)", adam,
                lambda: adam.load_checkpoint(ck), twin=lambda: make("adam", KNOWN), steps=torch_train)
        bad = copy.deepcopy(adam.state_dict())
        _phase("bogus")(bad)
        attempt(t, "torch state with an invalid phase (load_state_dict)", adam,
                lambda: adam.load_state_dict(bad), error=ValueError,
                twin=lambda: make("adam", KNOWN + LATER), steps=torch_train)
        t.notes.append("torch: SGD into Adam and an invalid phase")
    bad = victim().state_dict()
    _phase("bogus")(bad)
    forged = forge(path, work / "phase.npz", _phase("bogus"))
    adam_ck = numpy_opt(steps=TRAINED, adam=True).save_checkpoint(work / "numpy-adam.npz")
    cases = {
        "NumPy state with an invalid phase (load_state_dict)": (lambda o: o.load_state_dict(bad), ValueError),
        "NumPy checkpoint with an invalid phase": (lambda o: o.load_checkpoint(forged), CheckpointError),
        "NumPy Adam checkpoint into an SGD wrapper": (lambda o: o.load_checkpoint(adam_ck), CheckpointError),
    }
    for label, (load, error) in cases.items():
        opt = victim()
        attempt(t, label, opt, lambda o=opt, load=load: load(o), error=error, twin=victim)
    t.notes.append(f"each refusal followed by {LATER} steps compared with a twin")
    return t


# ---------------------------------------------------------------------------- 4. size limits
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(f"{field}:"))


def child_load(path: str) -> None:
    """Load ``path`` into a small victim; print the outcome, seconds and memory growth.

    The load runs twice: timed, with the peak resident set above the resident set before it
    (Linux: the peak is reset through ``/proc/self/clear_refs``); then under tracemalloc
    (NumPy's buffers included), which slows Python down and is not timed.
    """
    opt = victim()
    before = fingerprint(opt)

    def load() -> tuple[str, str]:
        try:
            opt.load_checkpoint(path)
        except CheckpointError as exc:
            return "refused", str(exc)
        except Exception as exc:
            return "raw", f"{type(exc).__name__}: {exc}"
        return "accepted", ""

    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current resident set
        rss0 = _status_kib("VmRSS")
    except OSError:
        rss0 = None
    start = time.perf_counter()
    outcome, error = load()
    seconds = time.perf_counter() - start
    growth = None if rss0 is None else max((_status_kib("VmHWM") - rss0) / 1024, 0.0)
    tracemalloc.start()
    load()
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print(json.dumps({"outcome": outcome, "error": error[-300:], "seconds": seconds,
                      "rss_growth_mib": traced if growth is None else growth, "traced_mib": traced,
                      "changed": fingerprint(opt) != before}))


def _bomb(path: Path, members: dict[str, bytes], index: dict, declared: int) -> Path:
    """Member a0 as ``declared`` deflated zero bytes (a few MB on disk), the index agreeing."""
    head = header_only((declared,), "|u1")
    index["members"]["a0"] = {"dtype": "|u1", "shape": [declared], "sha256": "0" * 64}
    blob = json.dumps(index, separators=(",", ":")).encode()
    rest = {**{k: v for k, v in members.items() if k != "a0"},
            "__meta__": npy_bytes(np.frombuffer(blob, np.uint8)),
            "__digest__": npy_bytes(np.frombuffer(hashlib.sha256(blob).hexdigest().encode(), np.uint8))}
    chunk = bytes(64 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        info = zipfile.ZipInfo("a0.npy", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as f:
            f.write(head)
            left = declared
            while left:
                f.write(chunk[: min(left, len(chunk))])
                left -= min(left, len(chunk))
        for name, data in rest.items():
            zf.writestr(f"{name}.npy", data)
    return path


def _central_sizes(path: Path, member: str, size: int) -> Path:
    """Make ``member``'s central-directory entry claim ``size`` bytes (stored and compressed)."""
    raw = bytearray(path.read_bytes())
    at = raw.find(b"PK\x01\x02")
    while at >= 0:
        name_len = struct.unpack("<H", raw[at + 28 : at + 30])[0]
        if raw[at + 46 : at + 46 + name_len] == member.encode():
            raw[at + 20 : at + 28] = struct.pack("<II", size, size)
            path.write_bytes(bytes(raw))
            return path
        at = raw.find(b"PK\x01\x02", at + 4)
    raise AssertionError(member)


def attack_limits(args: argparse.Namespace, work: Path) -> Tally:
    pad = args.crafted_bytes
    t = Tally(f"size limits: crafted {pad / 1e6:.1f} MB files declaring huge arrays")
    original = numpy_opt(steps=TRAINED)
    members, index = parts(original.state_dict())
    cases: dict[str, Path] = {}

    def case(name: str, m: dict[str, bytes], ix: Any) -> None:
        cases[name] = craft(work / f"limits-{len(cases)}.npz", m, ix)

    huge = copy.deepcopy(index)
    huge["members"]["a0"]["shape"] = [10**12]
    case("npy header and index declare 10^12 float64", {**members, "a0": header_only((10**12,), pad=pad)},
         huge)
    huge2 = copy.deepcopy(index)
    huge2["members"]["a0"]["shape"] = [10**6, 10**6]
    case("npy header declares a (10^6, 10^6) shape", {**members, "a0": header_only((10**6, 10**6), pad=pad)},
         huge2)
    filler = np.frombuffer(os.urandom(pad - pad % 4), np.float32)
    lying = copy.deepcopy(index)
    lying["members"]["a0"] = {**member_entry(filler), "shape": [10**12]}
    case("index declares [10^12], the header the real size", {**members, "a0": npy_bytes(filler)}, lying)
    honest = copy.deepcopy(index)
    honest["members"]["a0"] = member_entry(filler)
    case("zip directory claims a 2 GiB member", {**members, "a0": npy_bytes(filler)}, honest)
    _central_sizes(cases["zip directory claims a 2 GiB member"], "a0.npy", 2**31)
    many, many_index = dict(members), copy.deepcopy(index)
    empty = npy_bytes(np.zeros(0, np.float32))
    extra = pad // 330
    for k in range(1000, 1000 + extra):
        many[f"a{k}"] = empty
        many_index["members"][f"a{k}"] = member_entry(np.zeros(0, np.float32))
    case(f"{extra:,} extra empty members", many, many_index)
    declared = pad * 1000
    cases[f"deflate bomb: {declared / 1e9:.1f} GB of zeros"] = _bomb(work / "limits-bomb.npz", dict(members),
                                                                       copy.deepcopy(index), declared)
    worst_s, worst_mib, worst_traced, file_sizes = 0.0, 0.0, 0.0, []
    for name, path in cases.items():
        file_sizes.append(path.stat().st_size)
        run = subprocess.run([sys.executable, __file__, "--child", "load", str(path)], capture_output=True,
                             text=True, timeout=300)
        t.tries += 1
        try:
            out = json.loads(run.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            t.raw += 1
            t.fail(f"{name}: the loading process died (exit {run.returncode}): {run.stderr[-200:]}")
            continue
        t.cases[name] = {k: out[k] for k in ("outcome", "seconds", "rss_growth_mib", "traced_mib", "error")}
        worst_s, worst_mib = max(worst_s, out["seconds"]), max(worst_mib, out["rss_growth_mib"])
        worst_traced = max(worst_traced, out["traced_mib"])
        t.refused += out["outcome"] == "refused"
        t.accepted += out["outcome"] == "accepted"
        t.raw += out["outcome"] == "raw"
        t.changed += out["changed"]
        if out["outcome"] != "refused":
            t.fail(f"{name}: {out['outcome']} {out['error'][:160]}")
        if out["seconds"] > 5 or max(out["rss_growth_mib"], out["traced_mib"]) > 64:
            t.fail(f"{name}: {out['seconds']:.2f} s, peak RSS +{out['rss_growth_mib']:.0f} MiB")
    slowest = max(t.cases, key=lambda k: t.cases[k]["seconds"], default="-")
    t.notes.append(f"files {min(file_sizes) / 1e6:.1f}-{max(file_sizes) / 1e6:.1f} MB, each loaded in a "
                   f"fresh process: slowest refusal {worst_s:.3f} s ({slowest}), largest peak-RSS growth "
                   f"{worst_mib:.1f} MiB, largest tracemalloc peak {worst_traced:.2f} MiB "
                   f"(limits: 5 s, 64 MiB)")
    return t


# ---------------------------------------------------------------------------- 5. raw exceptions
def attack_raw(args: argparse.Namespace, work: Path) -> Tally:
    t = Tally("malformed index or tree (digests correct): a CheckpointError, never a raw exception")
    original, path = saved_original(work)
    members, index = parts(original.state_dict())

    def tree(node: Any) -> dict:
        return {**copy.deepcopy(index), "tree": node}

    def with_members(ms: dict) -> dict:
        return {**copy.deepcopy(index), "members": ms}

    first_array = {"__array__": "a0"}
    used = {k: v for k, v in index["members"].items()}
    cases: dict[str, tuple[dict[str, bytes], Any]] = {
        "index entry naming a missing member": (members, with_members({**used, "a999": used["a0"]})),
        "JSON nested 200,000 deep": (members, b"[" * 200_000 + b"]" * 200_000),
        "index that is a JSON list": (members, []),
        "index that is a JSON string": (members, "hpcore-checkpoint/2"),
        "unhashable key": (members, tree({"__items__": [[{"__list__": [1]}, first_array]]})),
        "members listed as a JSON list": (members, with_members([])),
        "index that is not UTF-8": (members, b'{"format":"\xff\xfe"}'),
        "NaN constant in the index": (members, b'{"format":NaN,"members":{},"tree":null}'),
        "tree refers to an array twice": (members, tree({"__list__": [first_array, first_array]})),
        "unknown tree node": (members, tree({"__set__": [1, 2]})),
        "tensor codec nobody registered": (members, tree({"__codec__": "jaxlib", "key": "a0", "tag": "x"})),
        "index entry with wrong keys": (members, with_members({**used, "a0": {"dtype": "<f4"}})),
        "tree that is a bare number": ({}, {"format": index["format"], "members": {}, "tree": 5}),
        "params that are strings": ({}, {"format": index["format"], "members": {},
                                         "tree": {"__dict__": {"params": {"__list__": ["x"] * N_SMALL},
                                                               "optimizer": None, "hybrid": None}}}),
        "__float__ that is not a float": (members, tree({"__float__": "one"})),
    }
    files = {name: craft(work / f"raw-{i}.npz", ms, ix) for i, (name, (ms, ix)) in enumerate(cases.items())}
    # Files that pass every file check (written by the library itself) with a state of the
    # wrong shape: the wrapper's state checks must refuse them as CheckpointError too.
    def hybrid(**kw: Any) -> Callable[[Any], None]:
        return lambda s: s["hybrid"].update(kw)

    forged = {
        "state that is a list": lambda s: [s["params"]],
        "hybrid state that is a list": lambda s: s.update(hybrid=[1, 2]),
        "optimizer part that is None": lambda s: s.update(optimizer=None),
        "controller that is a string": hybrid(controller="full"),
        "controller of an unknown type": lambda s: s["hybrid"]["controller"].update(__type__="os.system"),
        "trajectory arrays missing": hybrid(trajectory={}),
        "events that are not lists": hybrid(events=[5]),
        "jumps with unknown fields": hybrid(jumps=[{"evil": 1}]),
    }
    for i, (name, edit) in enumerate(forged.items()):
        files[f"{name} (digests redone)"] = forge(path, work / f"raw-forged-{i}.npz", edit)
    for name, p in files.items():
        opt = victim()
        if attempt(t, name, opt, lambda o=opt, p=p: o.load_checkpoint(p)) == "refused" and not (
                t.last_error.startswith((f"checkpoint {p} ", f"{p}: refused, nothing was changed: "))):
            t.fail(f"{name}: the message does not name the file: {t.last_error[:120]}")
    # A member whose zip name is repeated, and one outside the archive's root.
    p = craft(work / "dup.npz", members, index)
    with zipfile.ZipFile(p, "a") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        zf.writestr("a0.npy", members["a0"])
        zf.writestr("../a1.npy", members["a1"])
    opt = victim()
    attempt(t, "zip member names repeated and '../a1.npy'", opt, lambda: opt.load_checkpoint(p))
    t.notes.append("every case names the file and what is wrong")
    return t


# ---------------------------------------------------------------------------- 6. index edits
def attack_edits(args: argparse.Namespace, work: Path) -> tuple[Tally, Tally]:
    t = Tally("edited index: counters, phase-left count, NaN params")
    original, path = saved_original(work)
    members, index = parts(original.state_dict())
    raw_blob = json.dumps(index, separators=(",", ":")).encode()
    root = hashlib.sha256(raw_blob).hexdigest().encode()

    def ctrl(s: Any) -> dict:
        return s["hybrid"]["controller"]

    def ctrl_json(ix: dict) -> dict:
        return ix["tree"]["__dict__"]["hybrid"]["__dict__"]["controller"]["__dict__"]

    # (a) the JSON edited, the index digest left alone: refused by the digest.
    unforged = copy.deepcopy(index)
    ctrl_json(unforged)["counters"]["__dict__"]["steps"] = 123456
    p = craft(work / "edit-nodigest.npz", members, unforged, root=root)
    opt = victim()
    attempt(t, "controller steps 123456, digest not redone", opt, lambda: opt.load_checkpoint(p), twin=victim)
    # (b) NaN params with the member digest redone in the index, the index digest not.
    nan = read_checkpoint(path)["params"].copy()
    nan[3] = np.nan
    half = copy.deepcopy(index)
    half["members"]["a0"] = member_entry(nan)
    p = craft(work / "edit-nan-half.npz", {**members, "a0": npy_bytes(nan)}, half, root=root)
    opt = victim()
    attempt(t, "NaN params, member digest redone, index digest not", opt, lambda: opt.load_checkpoint(p),
            twin=victim)

    # (c) forged: every digest recomputed (the writer's own); the state checks must refuse.
    def counters(**kw: Any) -> Callable[[Any], None]:
        return lambda s: ctrl(s)["counters"].update(kw)

    def nan_params(s: Any) -> None:
        s["params"][3] = np.nan

    forged = {
        "controller steps 123456 (digests redone)": counters(steps=123456),
        "controller full -7 (digests redone)": counters(full=-7),
        "counter 'kept' > 'jumps' (digests redone)": counters(kept=9),
        "phase-left count -5 (digests redone)": lambda s: ctrl(s).update(left=-5),
        "phase-left count 'abc' (digests redone)": lambda s: ctrl(s).update(left="abc"),
        "phase 'predict' without a jump (digests redone)": _phase("predict"),
        "NaN params (digests redone)": nan_params,
        "parameter count 7 (digests redone)": lambda s: s["hybrid"].update(size=7),
    }
    for name, edit in forged.items():
        p = forge(path, work / f"forged-{len(os.listdir(work))}.npz", edit)
        opt = victim()
        attempt(t, name, opt, lambda o=opt, p=p: o.load_checkpoint(p), twin=victim)

    def consistent(s: Any) -> None:
        n = ctrl(s)["counters"]
        n.update(steps=123456, full=123456 - n["predicted"])

    p = forge(path, work / "forged-consistent.npz", consistent)
    opt = victim()
    how = attempt(t, "counters forged consistently (digests redone)", opt, lambda: opt.load_checkpoint(p),
                  must="either")
    t.notes.append(f"a forger who redoes the unkeyed SHA-256 digests loads any state the state checks "
                   f"pass: consistent counters were {how} (step {opt.current_step}); what breaks a check "
                   f"(counters that disagree or are negative, a bad phase or left count, NaN params, "
                   f"another size) is refused")

    # Beyond the tester's list: forged optimizer and hybrid parts. An accepted one must at least
    # leave later steps working.
    x = Tally("forged optimizer / hybrid parts (digests redone; beyond the tester's list): an accepted "
              "state must leave later steps working")

    def opt_edit(**kw: Any) -> Callable[[Any], None]:
        return lambda s: s["optimizer"].update(kw)

    def ema_nan(s: Any) -> None:
        s["hybrid"]["trajectory"]["history.ema"][:] = np.nan

    extended = {
        "momentum buffer of 5 floats for 64 params": opt_edit(momentum_buffer=np.zeros(5, np.float32)),
        "momentum buffer that is a string": opt_edit(momentum_buffer="abc"),
        "momentum buffer of float64": opt_edit(momentum_buffer=np.zeros(N_SMALL)),
        "NaN in the momentum buffer": lambda s: s["optimizer"]["momentum_buffer"].__setitem__(0, np.nan),
        "schedule_step -5": opt_edit(schedule_step=-5),
        "NaN history EMA": ema_nan,
        "phase_steps {'full': -7}": lambda s: s["hybrid"]["phase_steps"].update(full=-7),
        "divergence event of level 99": lambda s: s["hybrid"].update(events=[[1, "x", 99, 0.0]]),
    }
    accepted_notes = []
    for name, edit in extended.items():
        p = forge(path, work / f"forged-x-{len(os.listdir(work))}.npz", edit)
        opt = victim()
        how = attempt(x, name, opt, lambda o=opt, p=p: o.load_checkpoint(p), must="either", twin=victim)
        if how == "accepted":
            try:
                train(opt, 40)
                accepted_notes.append(f"{name}: accepted, 40 later steps run")
            except Exception as exc:
                x.fail(f"{name}: accepted, then step() raises {type(exc).__name__}: {str(exc)[:90]}")
    try:
        make, torch_train = torch_parts()
    except ImportError:
        accepted_notes.append("torch case skipped (no torch)")
    else:
        import torch

        ck = make("sgd", TRAINED).save_checkpoint(work / "torch-sgd.npz")
        name = "torch: SGD momentum buffer of 3 floats for a (2, 4) weight"
        p = forge(ck, work / "torch-forged.npz",
                  lambda s: s["optimizer"]["state"][0].update(momentum_buffer=torch.zeros(3)))
        opt = make("sgd", KNOWN)
        if attempt(x, name, opt, lambda: opt.load_checkpoint(p), must="either") == "accepted":
            try:
                torch_train(opt, 40)
                accepted_notes.append(f"{name}: accepted, 40 later steps run")
            except Exception as exc:
                x.fail(f"{name}: accepted, then step() raises {type(exc).__name__}: {str(exc)[:90]}")
    x.notes += accepted_notes
    return t, x


# ---------------------------------------------------------------------------- 7. symlinks
def attack_symlink(args: argparse.Namespace, work: Path) -> Tally:
    t = Tally("ckpt-* symlink pointing outside the folder")
    folder, outside = work / "sym", work / "sym-outside"
    folder.mkdir()
    outside.mkdir()
    older = numpy_opt(steps=20, directory=str(folder))
    good = older.save_checkpoint()
    expected = fingerprint(older)
    elsewhere = numpy_opt(steps=TRAINED).save_checkpoint(outside / "ckpt-000000099.npz")
    link = folder / "ckpt-000000099.npz"
    link.symlink_to(elsewhere)
    opt = victim()
    with capture_logs() as logs:
        attempt(t, "load_checkpoint(folder) with a newer symlink", opt, lambda: opt.load_checkpoint(folder),
                expected=expected, must="accept")
    if opt.current_step != 20 or any(e["event"] == "checkpoint_skipped" for e in logs):
        t.fail(f"the folder load took step {opt.current_step} or opened the symlink")
    opt = victim()
    attempt(t, "load_checkpoint(symlink)", opt, lambda: opt.load_checkpoint(link), twin=victim)
    before = elsewhere.read_bytes()
    saver = numpy_opt(steps=KNOWN)
    t.tries += 1
    try:
        saver.save_checkpoint(link)
        t.accepted += 1
        t.fail("save_checkpoint(symlink) wrote through the link")
    except CheckpointError:
        t.refused += 1
    if elsewhere.read_bytes() != before or not link.is_symlink():
        t.fail("the symlink or its target changed")
    t.notes.append(f"the folder load took {good.name} and never opened the link; a load or a save "
                   f"through the link is refused, its target unchanged")
    return t


# ---------------------------------------------------------------------------- 8. folder fallback
def _damage(p: Path, how: str, work: Path, original: Path) -> None:
    raw = p.read_bytes()
    members, index = parts(read_checkpoint(p))
    if how == "truncated":
        p.write_bytes(raw[: len(raw) // 2])
    elif how == "zeroed":
        p.write_bytes(bytes(len(raw)))
    elif how == "random bytes":
        p.write_bytes(os.urandom(len(raw)))
    elif how == "empty":
        p.write_bytes(b"")
    elif how == "wrong format":
        craft(p, members, {**index, "format": "hpcore-checkpoint/9"})
    elif how == "hpcore 0.1 file":
        p.unlink()
        np.savez(p, a0=np.zeros(3), __meta__=np.frombuffer(b'{"format":"hpcore-checkpoint/1"}', np.uint8))
    elif how == "directory named ckpt-*":
        p.unlink()
        p.mkdir()
    elif how == "symlink outside":
        p.unlink()
        p.symlink_to(original)
    elif how == "FIFO":
        p.unlink()
        os.mkfifo(p)
    elif how == "bad index digest":
        craft(p, members, index, root=b"0" * 64)
    elif how == "bad member digest":
        members["a0"] = npy_bytes(np.ones(N_SMALL, np.float32))
        craft(p, members, index)
    elif how == "edited index (digest not redone)":
        root = hashlib.sha256(json.dumps(index, separators=(",", ":")).encode()).hexdigest().encode()
        index["tree"]["__dict__"]["hybrid"]["__dict__"]["size"] = 7
        craft(p, members, index, root=root)
    elif how == "missing member":
        craft(p, {k: v for k, v in members.items() if k != "a1"}, index)
    elif how == "huge declared shape":
        index["members"]["a0"]["shape"] = [10**12]
        craft(p, {**members, "a0": header_only((10**12,), pad=4096)}, index)
    elif how == "forged state (digests redone, left -5)":
        forge(p, p, lambda s: s["hybrid"]["controller"].update(left=-5))
    else:
        raise AssertionError(how)


FALLBACK = ["truncated", "zeroed", "random bytes", "empty", "wrong format", "hpcore 0.1 file",
            "directory named ckpt-*", "symlink outside", "FIFO", "bad index digest", "bad member digest",
            "edited index (digest not redone)", "missing member", "huge declared shape",
            "forged state (digests redone, left -5)"]
NOT_FILES = {"directory named ckpt-*", "symlink outside", "FIFO"}


def attack_fallback(args: argparse.Namespace, work: Path) -> Tally:
    t = Tally("folder fallback: damaged newest, good older checkpoint")
    _, original = saved_original(work)
    skipped_ok = 0
    for i, how in enumerate(FALLBACK):
        folder = work / f"fallback-{i}"
        writer = numpy_opt(directory=str(folder), keep_last_n=5)
        train(writer, 20)
        writer.save_checkpoint()
        expected = fingerprint(writer)
        train(writer, 10)
        newest = writer.save_checkpoint()
        _damage(newest, how, work, original)
        opt = victim()
        with capture_logs() as logs:
            attempt(t, how, opt, lambda o=opt, f=folder: o.load_checkpoint(f), expected=expected,
                    must="accept")
        skipped = [e["path"] for e in logs if e["event"] == "checkpoint_skipped"]
        if opt.current_step == 20 and skipped == ([] if how in NOT_FILES else [str(newest)]):
            skipped_ok += 1
        elif opt.current_step == 20:
            t.fail(f"{how}: checkpoint_skipped events {skipped}")
    t.notes.append(f"{len(FALLBACK)} variants; {skipped_ok} took the older file with the right "
                   f"checkpoint_skipped event (none for a directory, symlink or FIFO: never opened)")
    return t


# ---------------------------------------------------------------------------- 9. automatic saves
def _autosave_run(t: Tally, label: str, folder: Path, fail_at: set[int] | None, steps: int, *,
                  n: int = N_SMALL, keep: int = 3,
                  broken: Callable[[int], AbstractContextManager] = lambda step: nullcontext(),
                  heal: Callable[[int], None] = lambda step: None) -> dict:
    """Train with save_interval=10 into ``folder`` beside a twin that never saves.

    Each step must be taken exactly once (the twin's state, bit for bit); each automatic save
    either succeeds (its file holds the state of its step) or is reported (a RuntimeWarning and
    a ``checkpoint_failed`` event); ``fail_at``: the steps whose save must fail (None: any).
    """
    opt = numpy_opt(n, save_interval=10, directory=str(folder), keep_last_n=keep)
    twin = numpy_opt(n)
    failed: list[int] = []
    ok: list[int] = []
    for step in range(1, steps + 1):
        with warnings.catch_warnings(record=True) as caught, capture_logs() as logs:
            warnings.simplefilter("always")
            try:
                with broken(step):
                    train(opt, 1)
            except Exception as exc:
                t.raw += 1
                t.fail(f"{label}: step {step} raised {type(exc).__name__}: {exc}")
                return {"failed": failed, "ok": ok}
        train(twin, 1)
        if fingerprint(opt) != fingerprint(twin):
            t.changed += 1
            t.fail(f"{label}: step {step} was not taken exactly once (differs from a twin that never saves)")
        if step % 10:
            continue
        warned = [w for w in caught if issubclass(w.category, RuntimeWarning)
                  and f"automatic checkpoint at step {step} failed" in str(w.message)]
        events = [e for e in logs if e["event"] == "checkpoint_failed" and e.get("step") == step]
        target = folder / f"ckpt-{step:09d}.npz"
        t.tries += 1
        if warned and events:
            t.refused += 1
            failed.append(step)
        elif not (warned or events) and target.is_file() and not target.is_symlink():
            t.accepted += 1
            t.compared += 1
            ok.append(step)
            if freeze(read_checkpoint(target)) == freeze(opt.state_dict()):
                t.identical += 1
            else:
                t.fail(f"{label}: the checkpoint of step {step} is not the state at step {step}")
        else:
            t.fail(f"{label}: save at step {step}: {len(warned)} warnings, {len(events)} events")
        if fail_at is not None and (step in fail_at) != (step in failed):
            t.fail(f"{label}: the save at step {step} {'failed' if step in failed else 'succeeded'}")
        heal(step)
    if temporaries(folder):
        t.fail(f"{label}: temporaries left {temporaries(folder)}")
    return {"failed": failed, "ok": ok}


@contextmanager
def _no_space(name: str, step: int, at: int = 10) -> Iterator[None]:
    """``os.<name>`` raises ENOSPC while step ``at`` runs."""
    if step != at:
        yield
        return
    old = getattr(os, name)

    def full(*_: Any, **__: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    setattr(os, name, full)
    try:
        yield
    finally:
        setattr(os, name, old)


def child_fullfs(mode: str, folder: str) -> None:
    """Run inside a small tmpfs mounted on ``folder`` (``unshare -m``); print the tally as JSON."""
    t = Tally(mode)
    here = Path(folder)
    n = int(os.environ["ATTACK_PARAMS"])
    if mode == "full":  # a filler leaves room for half a file until step 10 has run
        filler = here / "filler"
        room = shutil.disk_usage(folder).free - int(os.environ["ATTACK_FILE_BYTES"]) // 2
        filler.write_bytes(bytes(max(room, 0)))

        def heal(step: int) -> None:
            if step == 10:
                filler.unlink()

        out = _autosave_run(t, "tmpfs nearly full", here, {10}, 30, n=n, heal=heal)
    else:  # keep_last_n=1 and room for one file
        out = _autosave_run(t, "tmpfs keep_last_n=1", here, None, 50, n=n, keep=1)
    print(json.dumps({**t.to_json(), **out, "files": [p.name for p in checkpoint_files(folder)]}))


def _tmpfs_cases(t: Tally, work: Path) -> list[str]:
    """The full-disk cases on a real tmpfs (``unshare -m``), each in its own process."""
    n = 20_000
    size = numpy_opt(n, steps=10).save_checkpoint(work / "size-probe.npz").stat().st_size
    notes = []
    for mode, room in (("full", 3.0), ("keep1", 1.5)):
        folder = work / f"tmpfs-{mode}"
        folder.mkdir()
        kib = int(size * room) // 1024
        cmd = (f"mount -t tmpfs -o size={kib}k tmpfs {folder} && exec {sys.executable} {__file__} "
               f"--child fullfs {mode} {folder}")
        env = {**os.environ, "ATTACK_PARAMS": str(n), "ATTACK_FILE_BYTES": str(size)}
        if shutil.which("unshare") is None:
            return ["no unshare: the tmpfs cases were skipped"]
        run = subprocess.run(["unshare", "-m", "sh", "-c", cmd], capture_output=True, text=True,
                             timeout=300, env=env)
        if run.returncode != 0 and "mount" in run.stderr:
            return [f"cannot mount a tmpfs ({run.stderr.strip()[:80]}): the tmpfs cases were skipped"]
        try:
            out = json.loads(run.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            t.raw += 1
            t.fail(f"tmpfs {mode}: the process died: {run.stderr[-300:]}")
            continue
        for k in ("tries", "refused", "accepted", "identical", "compared", "changed", "raw"):
            setattr(t, k, getattr(t, k) + out[k])
        t.failures += out["failures"]
        if mode == "keep1":
            notes.append(f"tmpfs of {kib} KiB (room for one {size / 1e3:.0f} kB file), keep_last_n=1: saves "
                         f"ok at steps {out['ok']}, failed at {out['failed']}")
            if not [s for s in out["ok"] if s > 10]:
                t.fail(f"keep_last_n=1 with room for one file: every save after step 10 failed "
                       f"({out['failed']}); the newest checkpoint stays {out['files']}")
        else:
            notes.append(f"tmpfs of {kib} KiB nearly full at step 10: failed at {out['failed']}, "
                         f"ok at {out['ok']}")
    return notes


def attack_autosave(args: argparse.Namespace, work: Path) -> Tally:
    t = Tally("automatic saves: full disk, keep_last_n=1 with room for one file, device node")
    for name in ("replace", "fsync"):
        _autosave_run(t, f"ENOSPC from os.{name}", work / f"auto-{name}", {10}, 30,
                      broken=lambda step, name=name: _no_space(name, step))
    t.notes.append("ENOSPC from os.replace, then from os.fsync, at step 10 (monkeypatched): reported, "
                   "the saves at 20 and 30 work")
    t.notes += _tmpfs_cases(t, work)
    folder = work / "auto-node"
    folder.mkdir()
    node = folder / "ckpt-000000010.npz"
    try:
        os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(1, 7))
    except OSError as exc:
        t.notes.append(f"mknod not permitted ({exc}): the device-node case was skipped")
        return t
    before = os.lstat(node)
    _autosave_run(t, "a /dev/full copy at ckpt-000000010.npz", folder, {10}, 20)
    opt = victim()
    attempt(t, "save_checkpoint(node)", opt, lambda: opt.save_checkpoint(node), twin=victim)
    opt = victim()
    attempt(t, "load_checkpoint(node)", opt, lambda: opt.load_checkpoint(node), twin=victim)
    after = os.lstat(node)
    if not stat.S_ISCHR(after.st_mode) or after.st_rdev != before.st_rdev:
        t.fail("the device node is no longer the /dev/full copy it was")
    t.notes.append("a /dev/full copy (mknod) at ckpt-000000010.npz: the automatic save there is reported, "
                   "explicit save and load refused, the node left as it was")
    return t


# ---------------------------------------------------------------------------- main
ATTACKS = ["kill", "flips", "atomic", "limits", "raw", "edits", "symlink", "fallback", "autosave"]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and counts (well under a minute)")
    ap.add_argument("--out", type=Path, default=Path("hpcore-results/checkpoint_attacks.json"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="+", choices=ATTACKS, help="run only these attack classes")
    ap.add_argument("--kills", type=int, help="kill -9 tries (default 25, --quick 4)")
    ap.add_argument("--kill-params", type=int, help="parameters of the killed writer's model "
                                                   "(default 5,000,000, --quick 200,000)")
    ap.add_argument("--flips", type=int, help="bit-flip tries (default 400, --quick 60)")
    ap.add_argument("--crafted-bytes", type=int,
                    help="size of the crafted files (default 2.2 MB, --quick 0.2 MB)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    defaults = {"kills": (25, 4), "kill_params": (5_000_000, 200_000), "flips": (400, 60),
                "crafted_bytes": (2_200_000, 200_000)}
    for k, (full, quick) in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, quick if args.quick else full)
    return args


def quiet() -> None:
    """This script is the application: it drops the library's events (``capture_logs`` still
    sees them), so that the victims' divergence warnings do not flood the table."""

    def drop(*_: Any) -> None:
        raise structlog.DropEvent

    structlog.configure(processors=[drop])


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        kind, *rest = args.child
        quiet()
        {"writer": lambda: child_writer(rest[0], int(rest[1])), "load": lambda: child_load(rest[0]),
         "fullfs": lambda: child_fullfs(rest[0], rest[1])}[kind]()
        return 0
    quiet()
    start = time.perf_counter()
    rng = random.Random(args.seed)
    np.random.seed(args.seed)
    rows: list[Tally] = []
    with tempfile.TemporaryDirectory(prefix="hpcore-attacks-") as tmp:
        work = Path(tmp)
        for name in args.only or ATTACKS:
            sub = work / name
            sub.mkdir()
            t0 = time.perf_counter()
            fn = globals()[f"attack_{name}"]
            got = fn(args, sub, rng) if name in ("kill", "flips") else fn(args, sub)
            for t in got if isinstance(got, tuple) else (got,):
                t.seconds = time.perf_counter() - t0
                rows.append(t)
            print(f"{name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    wall = time.perf_counter() - start
    header = ("| attack | tries | refused (CheckpointError/ValueError) | accepted (loaded; bit-identical?) | "
              "state changed after a refusal (must be 0) | raw exceptions (must be 0) | notes |")
    print(header)
    print("|" + "---|" * 7)
    for t in rows:
        print(t.row())
    passed = all(t.passed for t in rows)
    verdict = "all attack classes pass" if passed else "FAILED: " + ", ".join(
        t.attack for t in rows if not t.passed)
    print(f"\n{verdict}; wall time {wall:.1f} s ({'--quick' if args.quick else 'default sizes'})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    import importlib.metadata as md

    def version(pkg: str) -> str | None:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    args.out.write_text(json.dumps({
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "quick": args.quick, "seed": args.seed,
        "sizes": {k: getattr(args, k) for k in ("kills", "kill_params", "flips", "crafted_bytes")},
        "wall_s": wall, "passed": passed, "rows": [t.to_json() for t in rows],
        "environment": {"python": platform.python_version(), "platform": platform.platform(),
                        "cpus": os.cpu_count(), "numpy": np.__version__, "torch": version("torch"),
                        "hpcore": hpcore.__version__},
    }, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
