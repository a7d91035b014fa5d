"""Atomic checkpoint writes: temporary files, fsync and rename, and dead writers' leftovers.

Internal to :mod:`hpcore.checkpoint`, whose docstring states the guarantees.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from hpcore._log import get_logger

__all__ = ["OPEN_FLAGS", "remove_stale_temporaries", "write_atomically"]

log = get_logger("hpcore.checkpoint")  # its events, under the name they always had

_TEMP = re.compile(r"^\.ckpt-tmp-(\d+)-[0-9a-f]+\.npz$")
_OLD_TEMP = re.compile(r"^\.tmp-[a-z0-9_]{8}\.npz$")  # what hpcore 0.1's mkstemp left behind
_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip timestamps: the same state gives the same bytes
OPEN_FLAGS = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
# Names of the temporaries this process is writing now, so that cleanup never removes a live
# one. Process-wide by nature (threads share the pid), hence a module global.
_IN_FLIGHT: set[str] = set()
_IN_FLIGHT_LOCK = threading.Lock()


def write_atomically(path: Path, members: dict[str, np.ndarray]) -> None:
    """Write ``members`` to a temporary in ``path``'s folder, fsync it, rename it over ``path``."""
    tmp = path.parent / f".ckpt-tmp-{os.getpid()}-{secrets.token_hex(6)}.npz"
    with _IN_FLIGHT_LOCK:
        _IN_FLIGHT.add(tmp.name)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | OPEN_FLAGS, 0o666)
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                for name, a in members.items():
                    info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
                    info.external_attr = 0o644 << 16
                    with zf.open(info, "w", force_zip64=True) as member:
                        npy.write_array(member, a, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        with _IN_FLIGHT_LOCK:
            _IN_FLIGHT.discard(tmp.name)


def _fsync_folder(folder: Path) -> None:
    if not hasattr(os, "O_DIRECTORY"):  # Windows cannot open a folder; NTFS journals the rename
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporaries of writers that died (kill -9) in ``folder``; returns them."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    removed = []
    for entry in entries:
        own = _TEMP.match(entry.name)
        if not (own or _OLD_TEMP.match(entry.name)) or not entry.is_file(follow_symlinks=False):
            continue
        pid = int(own.group(1)) if own else None
        if pid == os.getpid():
            with _IN_FLIGHT_LOCK:
                if entry.name in _IN_FLIGHT:
                    continue
        elif pid is not None and _pid_alive(pid):
            continue
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("checkpoint_temp_not_removed", path=entry.path, reason=str(exc))
            continue
        log.info("checkpoint_temp_removed", path=entry.path, pid=pid)
        removed.append(Path(entry.path))
    return removed


def _pid_alive(pid: int) -> bool:
    if sys.platform == "win32":  # os.kill(pid, 0) would end the process there: keep its files
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # alive, another user's
        return True
    return pid > 0  # 0 names our own process group
