"""The snapshot history of the slow, averaged trajectory (DESIGN section 5).

Every ``stride`` observed full steps one fused kernel pass advances the moving average (by
``decay ** stride``: an average of every stride-th iterate, which smooths the 40-step
snapshots as well as one of every iterate, at a fraction of the memory traffic) and checks
the parameters for non-finite values; every ``snapshot_interval`` observed steps the average
enters a ring of ``history_size`` snapshots. A kept jump shifts every stored snapshot by its
displacement, so the ring stays the real-step trajectory with the jumps taken out. Memory:
``(history_size + 1) * N`` floats.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hpcore import kernels

__all__ = ["SnapshotHistory", "ema_stride", "successive_moves"]

_CHUNK = 1 << 16  # coordinates per chunk of the float64 statistics (bounded temporaries)


class SnapshotHistory:
    """Moving average of ``theta`` and a ring of its snapshots, with their step times.

    Args:
        theta: the live parameter vector (only read).
        history_size: ring capacity C.
        snapshot_interval: observed steps between snapshots.
        ema_decay: per-step decay of the average; ``None`` snapshots raw ``theta``.
    """

    def __init__(
        self, theta: Any, history_size: int, snapshot_interval: int, ema_decay: float | None
    ) -> None:
        xp = kernels.get_array_module(theta)
        self.interval = snapshot_interval
        self.stride = ema_stride(snapshot_interval) if ema_decay is not None else 1
        self.beta = 0.0 if ema_decay is None else float(ema_decay) ** self.stride
        self.ema = xp.array(theta, copy=True)  # (N,) float32 moving average
        self.ring = xp.zeros((history_size, theta.shape[0]), dtype=theta.dtype)  # (C, N)
        self.times = np.zeros(history_size, dtype=np.float64)  # (C,) clock of each snapshot
        self.count = 0  # valid snapshots since the last restart
        self.head = 0  # next slot to write
        self.clock = 0  # observed steps since the last restart

    @property
    def lag(self) -> float:
        """Steps by which the moving average trails ``theta``: ``stride * b / (1 - b)`` for the
        per-update decay ``b`` (``beta / (1 - beta)`` with a stride of 1)."""
        return self.stride * self.beta / (1.0 - self.beta)

    def moves_next(self, snapshot: bool) -> bool:
        """The next :meth:`observe` advances the average (and checks for non-finite values)."""
        return snapshot or (self.clock + 1) % self.stride == 0

    def observe(self, theta: Any, snapshot: bool) -> tuple[int, bool]:
        """After a full step: advance the average on every ``stride``-th call and at a
        snapshot (and push the snapshot when ``snapshot``).

        Returns the number of non-finite parameters (counted where the average moved) and
        whether a snapshot entered the ring (never one of a non-finite average).
        """
        self.clock += 1
        if not snapshot and self.clock % self.stride:
            return 0, False
        sq = kernels.ema_update(theta, self.ema, self.beta)
        nonfinite = 0 if math.isfinite(sq) else max(kernels.vector_stats(theta)[2], 1)
        if not snapshot or nonfinite:
            return nonfinite, False
        kernels.copy(self.ring[self.head], self.ema)
        self.times[self.head] = self.clock
        self.head = (self.head + 1) % self.ring.shape[0]
        self.count = min(self.count + 1, self.ring.shape[0])
        return 0, True

    def window(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Slots and times of the ``size`` most recent snapshots, oldest first."""
        size = min(size, self.count)
        c = self.ring.shape[0]
        slots = np.array([(self.head - size + i) % c for i in range(size)], dtype=np.int64)
        return slots, self.times[slots]

    def shift(self, direction: Any, scale: float) -> None:
        """Move the average and every stored snapshot by ``scale * direction`` (a kept jump)."""
        kernels.shift(self.ema, direction, scale)
        for slot in self.window(self.count)[0]:
            kernels.shift(self.ring[slot], direction, scale)

    def drop(self, newest: int, clock: int) -> None:
        """Forget the ``newest`` snapshots and go back to ``clock`` (a rolled-back jump)."""
        newest = min(newest, self.count)
        self.head = (self.head - newest) % self.ring.shape[0]
        self.count -= newest
        self.clock = clock

    def restart(self, theta: Any) -> None:
        """Start a new trajectory at ``theta``: the average at ``theta``, an empty ring."""
        kernels.copy(self.ema, theta)
        self.count = 0
        self.head = 0
        self.clock = 0

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.ema, "ring": self.ring, "times": self.times, "count": self.count,
                "head": self.head, "clock": self.clock}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        kernels.copy(self.ema, state["ema"])
        kernels.copy(self.ring, state["ring"])
        self.times[...] = state["times"]
        self.count, self.head, self.clock = int(state["count"]), int(state["head"]), int(state["clock"])


def ema_stride(snapshot_interval: int) -> int:
    """Observed steps between two moves of the average: the largest divisor of the snapshot
    interval that is at most a tenth of it (4 for 40; 1 below 20), so every snapshot falls on
    a move.

    Example:
        >>> ema_stride(40), ema_stride(25), ema_stride(5)
        (4, 1, 1)
    """
    cap = max(1, snapshot_interval // 10)
    return max(d for d in range(1, cap + 1) if snapshot_interval % d == 0)


def successive_moves(history: SnapshotHistory) -> tuple[float, float]:
    """Norm of the move between the two newest snapshots and its cosine with the move before
    (``nan`` until there are enough snapshots): differences and dot products over bounded
    chunks in the ring's precision, summed in float64 across chunks."""
    slots, _ = history.window(3)
    if len(slots) < 2:
        return math.nan, math.nan
    ring = history.ring
    nn = pp = dot = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for lo in range(0, ring.shape[1], _CHUNK):
            b = ring[slots[-2], lo:lo + _CHUNK]
            u = ring[slots[-1], lo:lo + _CHUNK] - b
            nn += float(u @ u)
            if len(slots) == 3:
                v = b - ring[slots[0], lo:lo + _CHUNK]
                pp += float(v @ v)
                dot += float(u @ v)
    cos = dot / math.sqrt(nn * pp) if nn > 0 and pp > 0 else math.nan
    return math.sqrt(nn), cos
