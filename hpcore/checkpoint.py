"""Checkpoint files: one ``.npz`` per checkpoint, no pickle, written atomically.

A state is a tree of dicts, lists, tuples, numbers, strings, ``None`` and arrays. Arrays are
stored as ``.npz`` members; the rest of the tree, with references to the members, as a JSON
document inside the same file, together with a SHA-256 of every member. Loading reads with
``allow_pickle=False``, checks the digests and refuses anything truncated or altered.
Writes go to a temporary file in the target folder, then ``os.replace``: a crash mid-write
leaves the previous checkpoint as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CheckpointError",
    "checkpoint_files",
    "decode_tree",
    "encode_tree",
    "latest_checkpoint",
    "read_checkpoint",
    "register_codec",
    "rotate",
    "step_path",
    "write_checkpoint",
]

FORMAT = "hpcore-checkpoint/1"
_META = "__meta__"
_NAME = re.compile(r"^ckpt-(\d{9})\.npz$")

# Extra leaf types (framework tensors): name -> (is_instance, to_numpy, from_numpy).
# ``to_numpy(x)`` returns ``(array, tag)``; ``from_numpy(array, tag)`` rebuilds the leaf (the
# tag carries what NumPy cannot, e.g. bfloat16).
_CODECS: dict[str, tuple[Callable[[Any], bool], Callable[[Any], tuple[np.ndarray, str]],
                         Callable[[np.ndarray, str], Any]]] = {}


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, altered or of another format."""


def register_codec(name: str, is_instance: Callable[[Any], bool],
                   to_numpy: Callable[[Any], tuple[np.ndarray, str]],
                   from_numpy: Callable[[np.ndarray, str], Any]) -> None:
    """Teach the encoder a leaf type (adapters register their framework's tensors)."""
    _CODECS[name] = (is_instance, to_numpy, from_numpy)


def encode_tree(tree: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """Split ``tree`` into a JSON-ready skeleton and its arrays (keyed ``a0``, ``a1``, ...)."""
    arrays: dict[str, np.ndarray] = {}

    def enc(x: Any, where: str) -> Any:
        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
            return int(x)
        if isinstance(x, (float, np.floating)):
            v = float(x)
            return v if np.isfinite(v) else {"__float__": repr(v)}
        if isinstance(x, np.ndarray):
            key = f"a{len(arrays)}"
            arrays[key] = np.asarray(x, order="C")  # keeps 0-d arrays 0-d
            return {"__array__": key}
        if isinstance(x, dict):
            if not all(isinstance(k, str) for k in x):
                return {"__items__": [[enc(k, where), enc(v, f"{where}[{k!r}]")]
                                      for k, v in x.items()]}
            return {"__dict__": {k: enc(v, f"{where}.{k}") for k, v in x.items()}}
        if isinstance(x, (list, tuple)):
            tag = "__tuple__" if isinstance(x, tuple) else "__list__"
            return {tag: [enc(v, f"{where}[{i}]") for i, v in enumerate(x)]}
        for name, (is_inst, to_np, _) in _CODECS.items():
            if is_inst(x):
                key = f"a{len(arrays)}"
                array, tag = to_np(x)
                arrays[key] = np.asarray(array, order="C")
                return {"__codec__": name, "key": key, "tag": tag}
        msg = (f"cannot checkpoint {where} of type {type(x).__name__}: only arrays, numbers, "
               f"strings, None, lists, tuples and dicts (and registered tensor types)")
        raise TypeError(msg)

    return enc(tree, "state"), arrays


def decode_tree(skeleton: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of :func:`encode_tree`."""
    if not isinstance(skeleton, dict):
        return skeleton
    if "__array__" in skeleton:
        return arrays[skeleton["__array__"]]
    if "__float__" in skeleton:
        return float(skeleton["__float__"])
    if "__dict__" in skeleton:
        return {k: decode_tree(v, arrays) for k, v in skeleton["__dict__"].items()}
    if "__items__" in skeleton:
        return {decode_tree(k, arrays): decode_tree(v, arrays) for k, v in skeleton["__items__"]}
    if "__list__" in skeleton:
        return [decode_tree(v, arrays) for v in skeleton["__list__"]]
    if "__tuple__" in skeleton:
        return tuple(decode_tree(v, arrays) for v in skeleton["__tuple__"])
    if "__codec__" in skeleton:
        name = skeleton["__codec__"]
        if name not in _CODECS:
            msg = f"checkpoint holds {name!r} tensors; import the adapter that reads them first"
            raise CheckpointError(msg)
        return _CODECS[name][2](arrays[skeleton["key"]], skeleton["tag"])
    msg = f"unknown checkpoint node {sorted(skeleton)!r}"
    raise CheckpointError(msg)


def _digest(a: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def write_checkpoint(path: str | Path, state: Any) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    skeleton, arrays = encode_tree(state)
    meta = {"format": FORMAT, "tree": skeleton,
            "digests": {k: _digest(v) for k, v in arrays.items()}}
    blob = json.dumps(meta).encode()
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays, **{_META: np.frombuffer(blob, dtype=np.uint8)})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | Path) -> Any:
    """Read a checkpoint written by :func:`write_checkpoint`; never unpickles.

    Raises:
        CheckpointError: the file is missing, truncated, altered or not a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"no checkpoint at {path}"
        raise CheckpointError(msg)
    try:
        with np.load(path, allow_pickle=False) as z:
            if _META not in z.files:
                msg = f"{path} is not an hpcore checkpoint (no {_META} member)"
                raise CheckpointError(msg)
            meta = json.loads(z[_META].tobytes().decode())
            arrays = {k: z[k] for k in z.files if k != _META}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError,
            json.JSONDecodeError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        msg = f"checkpoint {path} is truncated or corrupted ({type(exc).__name__}: {exc})"
        raise CheckpointError(msg) from exc
    if meta.get("format") != FORMAT:
        msg = f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}"
        raise CheckpointError(msg)
    digests = meta.get("digests", {})
    if set(digests) != set(arrays):
        msg = f"checkpoint {path} is incomplete: its members do not match its index"
        raise CheckpointError(msg)
    for k, a in arrays.items():
        if _digest(a) != digests[k]:
            msg = f"checkpoint {path} is corrupted: member {k} fails its SHA-256 check"
            raise CheckpointError(msg)
    return decode_tree(meta["tree"], arrays)


def checkpoint_files(folder: str | Path) -> list[Path]:
    """``ckpt-<step>.npz`` files in ``folder``, oldest step first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def rotate(folder: str | Path, keep_last_n: int) -> list[Path]:
    """Delete all but the newest ``keep_last_n`` checkpoints; returns the deleted paths."""
    files = checkpoint_files(folder)
    doomed = files[: max(len(files) - keep_last_n, 0)]
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed


def latest_checkpoint(folder: str | Path) -> tuple[Path, Any]:
    """The newest checkpoint in ``folder`` that reads cleanly, and its state.

    A corrupted newest file is skipped (with its error kept in the message if none reads).
    """
    errors = []
    for p in reversed(checkpoint_files(folder)):
        try:
            return p, read_checkpoint(p)
        except CheckpointError as exc:
            errors.append(str(exc))
    msg = f"no readable checkpoint in {folder}" + (f": {'; '.join(errors)}" if errors else "")
    raise CheckpointError(msg)


def step_path(folder: str | Path, step: int) -> Path:
    """Where the checkpoint of ``step`` goes in ``folder``."""
    return Path(folder) / f"ckpt-{step:09d}.npz"
