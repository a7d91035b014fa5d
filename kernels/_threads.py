"""Numba's threads follow the framework's, so the kernels never slow the user's own steps.

Why (measured on the 2-core reference VM: torch 2.13 CPU, numba 0.68.1, a 400k-parameter MLP
with AdamW): Numba's threading layer there is ``omp``, and its OpenMP runtime is the one
PyTorch loaded (one ``libgomp.so.1`` per process, bound by soname: ``LD_DEBUG=bindings`` shows
numba's ``omppool`` resolving ``omp_set_num_threads`` and ``GOMP_parallel`` in torch's copy),
so the Numba twins and torch's intra-op ops share one pool. Numba launches that layer once, on
loading or compiling its first parallel function (or at the first ``numba.get_num_threads``),
and the launch calls ``omp_set_num_threads(NUMBA_NUM_THREADS)``, the machine's core count. That
silently undoes the user's ``torch.set_num_threads(k)`` or ``OMP_NUM_THREADS=k`` for good:
``torch.get_num_threads()`` went from 1 to 2 at the first jump. With one torch thread per
process and a second process on the other core (data-parallel ranks, or a neighbouring job),
three spin-waiting OpenMP threads then shared two cores: every later step cost 1.7x-15x the
plain one (``benchmarks/thread_contention.py``, by the machine's load). ``NUMBA_NUM_THREADS=1``
hid it only because the launch then set OpenMP to one thread, which also made torch
single-threaded where it had two (1.5x slower steps in a process of its own).

What is done here: before the first Numba twin runs, :func:`follow_framework_threads` launches
Numba's threads itself, sets torch's count back to the value read before the launch
(``torch.set_num_threads``) and masks Numba's threads to the framework's count
(``numba.set_num_threads``). Nothing in Numba touches OpenMP's count after its launch. This
removed the slowdown: in the benchmark the steps after a jump cost 1.00x the plain ones with
the policy, 10.7x with ``HPCORE_NUMBA_THREADS=free``. The ``workqueue`` layer was measured as
the alternative and not chosen: it leaves OpenMP alone too, but its threads compete with
torch's spin-waiting OpenMP workers, so a jump's kernels took 7.7 ms instead of 3.9 ms (torch
on 2 threads) and 9.5 ms instead of 7.5 ms (torch on 1); the shared pool has no rival.

``HPCORE_NUMBA_THREADS`` (read when the first Numba twin is dispatched) sets the policy:
unset or ``follow`` follows the framework; an integer ``k`` uses ``k`` threads (torch's count
still kept); ``free`` leaves Numba to its own defaults (the behaviour above, for benchmarks).
Numba's thread mask is per calling thread: twins dispatched from another thread use Numba's
default there. A torch build that brings its own, renamed OpenMP runtime (or Intel's
``libiomp5``) would run two pools side by side; that case was not available to measure.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import sys
from collections.abc import Iterator

import numba

from hpcore._log import get_logger  # structlog when configured, else quiet stdlib logging

log = get_logger(__name__)

ENV_VAR = "HPCORE_NUMBA_THREADS"
_POLICIES = ("follow", "free")
_applied = [False]  # the dispatch applied the policy in this process (once, at first use)


def _check_count(n: object, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        msg = f"{name!r} must be an int >= 1 or None (got {n!r}); None follows the framework"
        raise TypeError(msg)
    if n < 1:
        msg = f"{name!r} must be >= 1 (got {n}); pass None to follow the framework's thread count"
        raise ValueError(msg)
    return int(n)


def _torch_threads() -> int | None:
    """``torch.get_num_threads()`` when torch is already imported (never imports it)."""
    torch = sys.modules.get("torch")
    get = getattr(torch, "get_num_threads", None)
    return int(get()) if get is not None else None


def _omp_threads() -> int | None:
    """The first count of ``OMP_NUM_THREADS`` (``"4"`` or ``"4,2"``), or None if unset or bad."""
    first = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(first) if first.isdigit() and int(first) >= 1 else None


def framework_threads() -> int:
    """The thread count the framework in use says: torch's if imported, else OpenMP's, else
    the machine's core count."""
    for count in (_torch_threads(), _omp_threads()):
        if count is not None:
            return count
    return os.cpu_count() or 1


@contextlib.contextmanager
def _framework_threads_kept() -> Iterator[None]:
    """Puts torch's thread count back if Numba's thread launch changed it (shared OpenMP)."""
    before = _torch_threads()
    try:
        yield
    finally:
        if before is not None and _torch_threads() != before:
            sys.modules["torch"].set_num_threads(before)
            log.debug("torch_threads_restored", threads=before)


def numba_threads() -> int:
    """Threads the Numba twins may use on this thread now (launching Numba's threads, if not
    yet launched, without changing torch's count)."""
    with _framework_threads_kept():
        return int(numba.get_num_threads())


def follow_framework_threads(n: int | None = None) -> int:
    """Let the Numba twins use ``n`` threads, or as many as the framework in use when None.

    The framework's count is ``torch.get_num_threads()`` if torch is already imported (it is
    never imported here), else ``OMP_NUM_THREADS``, else ``os.cpu_count()``; an integer
    ``HPCORE_NUMBA_THREADS`` replaces it, and ``HPCORE_NUMBA_THREADS=free`` makes a call with
    None change nothing. The count is clipped to ``numba.config.NUMBA_NUM_THREADS`` (the
    threads Numba launched). Torch's own count is left as it was. The kernels call this once,
    when the first Numba twin is dispatched; call it again when the framework's count changed
    (after ``torch.set_num_threads``, or after constructing the engine).

    Args:
        n: the thread count, >= 1; None follows the framework.

    Returns:
        The count set (Numba's current count under ``free``).

    Raises:
        ValueError: ``n`` < 1, or ``HPCORE_NUMBA_THREADS`` is neither an integer >= 1,
            ``follow`` nor ``free``.
        TypeError: ``n`` is not an integer.

    Example:
        >>> follow_framework_threads(1)
        1
        >>> numba_threads()
        1
    """
    if n is not None:
        requested, source = _check_count(n, "n"), "argument"
    else:
        policy = _env_policy()
        if policy == "free":
            return numba_threads()
        requested, source = (policy, ENV_VAR) if isinstance(policy, int) else (
            framework_threads(), "framework")
    count = min(requested, int(numba.config.NUMBA_NUM_THREADS))
    with _framework_threads_kept():
        numba.set_num_threads(count)  # launches Numba's threads on first use
    log.info("numba_threads_followed", threads=count, requested=requested, source=source,
             layer=numba.threading_layer(), torch_threads=_torch_threads())
    return count


def _env_policy() -> str | int:
    raw = os.environ.get(ENV_VAR, "follow").strip().lower() or "follow"
    if raw in _POLICIES:
        return raw
    if raw.isdigit() and int(raw) >= 1:
        return int(raw)
    msg = f"{ENV_VAR} must be 'follow', 'free' or an integer >= 1 (got {raw!r})"
    raise ValueError(msg)


def on_numba_dispatch() -> None:
    """Applies the thread policy before the first Numba twin of this process runs (cheap after)."""
    if _applied[0]:
        return
    if _env_policy() != "free":  # a bad HPCORE_NUMBA_THREADS fails here, at every dispatch
        follow_framework_threads()
    _applied[0] = True
