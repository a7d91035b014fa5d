"""Checkpoint files: one ``.npz`` per checkpoint, no pickle, written atomically, read warily.

A state is a tree of dicts, lists, tuples, numbers, strings, ``None`` and arrays. Each array is
an uncompressed ``a<N>.npy`` member; the rest of the tree, with each member's dtype, shape and
SHA-256, is a JSON index (member ``__meta__``), and the SHA-256 of the index's bytes is the
member ``__digest__``, so an edit of the index or of any member is refused. Reading checks the
zip directory, every ``.npy`` header and the index against :class:`Limits` before it reads an
array; every refusal is a :class:`CheckpointError` that names the file and what is wrong.

A write goes to ``.ckpt-tmp-<pid>-<random>.npz`` in the target's folder, is fsynced, renamed
over the target (``os.replace``), and the folder is fsynced: a crash leaves the previous file as
it was, and the next write or rotation in that folder removes the temporaries of dead writers.

Example:
    >>> import tempfile
    >>> import numpy as np
    >>> folder = tempfile.mkdtemp()
    >>> write_checkpoint(step_path(folder, 7), {"w": np.arange(3.0), "step": 7}).name
    'ckpt-000000007.npz'
    >>> path, state = latest_checkpoint(folder)
    >>> state["step"], state["w"].tolist()
    (7, [0.0, 1.0, 2.0])
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from hpcore._log import get_logger
from hpcore.checkpoint_atomic import OPEN_FLAGS, remove_stale_temporaries, write_atomically
from hpcore.checkpoint_format import (
    INDEX,
    ROOT,
    Refused,
    TreeDecoder,
    encode_tree,
    index_bytes,
    load,
    register_codec,
)
from hpcore.checkpoint_limits import MAX_BYTES, MAX_DEPTH, MAX_INDEX_BYTES, MAX_MEMBERS, Limits, json_depth

__all__ = [
    "CheckpointError",
    "Limits",
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

log = get_logger(__name__)

_NAME = re.compile(r"^ckpt-(\d{9,})\.npz$")
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a FIFO for reading must not wait for a writer
_CORRUPT = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, KeyError,
            NotImplementedError)


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, altered, over a limit or of another format."""


def decode_tree(skeleton: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of :func:`encode_tree`.

    Raises:
        CheckpointError: a node that :func:`encode_tree` does not write, a missing or reused
            array, an unhashable key, or tensors whose adapter is not imported.
    """
    try:
        return TreeDecoder(arrays).node(skeleton, "state")
    except Refused as exc:
        msg = f"checkpoint {exc}"
        raise CheckpointError(msg) from exc.__cause__


def write_checkpoint(path: str | Path, state: Any, *,
                     make_room: Callable[[], None] | None = None) -> Path:
    """Write ``state`` to ``path`` atomically; returns ``path``.

    Stale temporaries of dead writers in the folder are removed first. A write needs room for
    the new file next to the old one; when the device is full the temporary is removed, and
    ``make_room`` (if given) is called once and the write tried again. Whatever ``make_room``
    deletes is the caller's choice (deleting the only older checkpoint leaves none while the
    new one is written).

    Raises:
        TypeError: a leaf that cannot be stored without pickle.
        CheckpointError: ``path`` is a directory, a symlink or another non-regular file; the
            state nests deeper or holds more than :func:`read_checkpoint` reads by default;
            no space left on the device (the checkpoints already there are unchanged).
    """
    path = Path(path)
    _check_target(path)
    skeleton, arrays = encode_tree(state)
    blob = index_bytes(skeleton, arrays)
    _check_readable(path, blob, arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    arrays[INDEX] = np.frombuffer(blob, dtype=np.uint8)
    arrays[ROOT] = np.frombuffer(hashlib.sha256(blob).hexdigest().encode(), dtype=np.uint8)
    try:
        write_atomically(path, arrays)
    except OSError as exc:
        if not _no_space(exc):
            raise
        if make_room is None:
            raise _no_space_error(path, arrays) from exc
        log.warning("checkpoint_no_space", path=str(path), retry="after make_room")
        make_room()
        try:
            write_atomically(path, arrays)
        except OSError as again:
            if not _no_space(again):
                raise
            raise _no_space_error(path, arrays) from again
    return path


def _check_target(path: Path) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        msg = (f"cannot write a checkpoint to {path}: it is a {_kind(mode)}, not a regular file; "
               f"choose a file path")
        raise CheckpointError(msg)


def _check_readable(path: Path, blob: bytes, arrays: dict[str, np.ndarray]) -> None:
    """Refuse a state the default reader would refuse; a large one is only reported."""
    depth, members = json_depth(blob, stop_above=len(blob)), len(arrays) + 2
    problems = [
        (depth > MAX_DEPTH, f"its index nests {depth} levels deep, more than max_depth={MAX_DEPTH}"),
        (len(blob) > MAX_INDEX_BYTES,
         f"its index takes {len(blob)} bytes, more than max_index_bytes={MAX_INDEX_BYTES}"),
        (members > MAX_MEMBERS, f"it holds {members} members, more than max_members={MAX_MEMBERS}"),
    ]
    for too_much, problem in problems:
        if too_much:
            msg = f"cannot write the checkpoint {path}: {problem}; flatten or split the state"
            raise CheckpointError(msg)
    size = sum(a.nbytes for a in arrays.values()) + len(blob)
    if size > MAX_BYTES:
        log.warning("checkpoint_over_read_limit", path=str(path), bytes=size, max_bytes=MAX_BYTES)


def _no_space(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an error it was raised while handling, is a full device."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
            return True
        exc = exc.__context__
    return False


def _no_space_error(path: Path, arrays: dict[str, np.ndarray]) -> CheckpointError:
    size = sum(a.nbytes for a in arrays.values())
    msg = (f"no space left on the device to write {path} (about {size} bytes); the temporary file "
           f"is removed and the checkpoints already there are unchanged; free some space or "
           f"keep fewer checkpoints, then save again")
    return CheckpointError(msg)


def read_checkpoint(path: str | Path, *, max_bytes: int = MAX_BYTES, max_members: int = MAX_MEMBERS,
                    max_index_bytes: int = MAX_INDEX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Read a checkpoint written by :func:`write_checkpoint`; never unpickles.

    Args:
        path: the file; a symlink must resolve inside its own folder.
        max_bytes: the most bytes all members may hold (checked before anything is read).
        max_members: the most zip members (arrays, plus the index and its digest).
        max_index_bytes: the most bytes of the JSON index.
        max_depth: the deepest nesting of the JSON index.

    Raises:
        CheckpointError: the file is missing, not a regular file, a symlink out of its folder,
            truncated, altered, over a limit, or not a checkpoint of this format.
    """
    return _read(Path(path), Limits(max_bytes, max_members, max_index_bytes, max_depth))


def _read(path: Path, limits: Limits) -> Any:
    f, size = _open_regular(path)
    try:
        with f, zipfile.ZipFile(f) as zf:
            return load(zf, size, limits)
    except Refused as exc:
        msg = f"checkpoint {path} {exc}"
        raise CheckpointError(msg) from exc.__cause__
    except _CORRUPT as exc:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        msg = f"checkpoint {path} is truncated or corrupted ({detail})"
        raise CheckpointError(msg) from exc


def _open_regular(path: Path) -> tuple[IO[bytes], int]:
    """``path`` opened for reading, with its size; refuses what is not a regular file."""
    real = os.path.realpath(path)
    if path.is_symlink():
        folder = Path(os.path.realpath(path.parent))
        if not Path(real).is_relative_to(folder):
            msg = f"checkpoint {path} is refused: it is a symlink to {real}, outside its folder {folder}"
            raise CheckpointError(msg)
    try:
        fd = os.open(real, os.O_RDONLY | OPEN_FLAGS | _NONBLOCK)
    except FileNotFoundError:
        msg = f"no checkpoint at {path}"
        raise CheckpointError(msg) from None
    except OSError as exc:
        msg = f"cannot open the checkpoint {path}: {exc.strerror or exc}"
        raise CheckpointError(msg) from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        msg = f"checkpoint {path} is refused: it is a {_kind(st.st_mode)}, not a regular file"
        raise CheckpointError(msg)
    return os.fdopen(fd, "rb"), st.st_size


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "directory"), (stat.S_ISLNK, "symlink"), (stat.S_ISCHR, "character device"),
             (stat.S_ISBLK, "block device"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"))
    return next((name for test, name in kinds if test(mode)), "special file")


def checkpoint_files(folder: str | Path) -> list[Path]:
    """The regular ``ckpt-<step>.npz`` files in ``folder``, oldest step first.

    Symlinks, folders and other non-regular entries are ignored, whatever their name.
    """
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    found = [(int(m.group(1)), Path(folder) / e.name) for e in entries
             if (m := _NAME.match(e.name)) and e.is_file(follow_symlinks=False)]
    return [p for _, p in sorted(found)]


def rotate(folder: str | Path, keep_last_n: int, **limits: int) -> list[Path]:
    """Delete all but the newest ``keep_last_n`` checkpoints; returns the deleted paths.

    The newest checkpoint that passes every check (``limits``: those of
    :func:`read_checkpoint`) is never deleted, however many newer damaged files there are; if
    none passes, nothing is deleted. Stale temporaries of dead writers go too; symlinks and
    non-regular files are never touched.

    Raises:
        ValueError: ``keep_last_n`` is not an int >= 0.
    """
    if isinstance(keep_last_n, bool) or not isinstance(keep_last_n, int) or keep_last_n < 0:
        msg = f"'keep_last_n' must be an int >= 0 (got {keep_last_n!r})"
        raise ValueError(msg)
    checked = Limits(**limits)
    remove_stale_temporaries(Path(folder))
    files = checkpoint_files(folder)
    doomed = files[: max(len(files) - keep_last_n, 0)]
    if not doomed:
        return []
    newest = _newest_valid(files, checked, [])
    if newest is None:
        log.warning("checkpoint_rotation_skipped", folder=str(folder), reason="no valid checkpoint")
        return []
    deleted = []
    for p in doomed:
        if p != newest[0] and p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            deleted.append(p)
    return deleted


def _newest_valid(files: list[Path], limits: Limits, skipped: list[str]) -> tuple[Path, Any] | None:
    for p in reversed(files):
        try:
            return p, _read(p, limits)
        except CheckpointError as exc:
            log.warning("checkpoint_skipped", path=str(p), reason=str(exc))
            skipped.append(str(exc))
    return None


def latest_checkpoint(folder: str | Path, **limits: int) -> tuple[Path, Any]:
    """The newest checkpoint in ``folder`` that passes every check, and its state.

    Each newer file that fails is skipped with a ``checkpoint_skipped`` event (path, reason).
    ``limits`` are those of :func:`read_checkpoint`.

    Raises:
        CheckpointError: no folder, no checkpoint in it, or none passes (each named, with why).
    """
    checked = Limits(**limits)
    if not Path(folder).is_dir():
        msg = f"no checkpoint folder at {folder}"
        raise CheckpointError(msg)
    skipped: list[str] = []
    found = _newest_valid(checkpoint_files(folder), checked, skipped)
    if found is not None:
        return found
    if not skipped:
        msg = f"no checkpoint in {folder} (no ckpt-<step>.npz files)"
        raise CheckpointError(msg)
    msg = f"no readable checkpoint in {folder}: {'; '.join(skipped)}"
    raise CheckpointError(msg)


def step_path(folder: str | Path, step: int) -> Path:
    """Where the checkpoint of ``step`` goes in ``folder``."""
    return Path(folder) / f"ckpt-{step:09d}.npz"
