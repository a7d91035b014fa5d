"""The snapshot history of the slow, averaged trajectory (DESIGN section 5).

Per full step one fused kernel pass advances the moving average and returns the update
statistics; every ``snapshot_interval`` steps the average enters a ring of ``history_size``
snapshots. Memory: ``(history_size + 3) * N`` floats.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np

from hpcore import kernels

__all__ = ["SnapshotHistory", "UpdateStats"]


@attrs.frozen
class UpdateStats:
    """What a full step's bookkeeping saw: at a snapshot, the norm of the move since the last
    snapshot and its cosine with the move before (``nan`` between snapshots), and always the
    number of non-finite parameters."""

    norm: float
    cosine: float
    nonfinite: int
    snapshot: bool = False  # a snapshot entered the ring with this step


class SnapshotHistory:
    """Moving average of ``theta`` and a ring of its snapshots, with their step times.

    Args:
        theta: the live parameter vector (only read).
        history_size: ring capacity C.
        snapshot_interval: steps between snapshots.
        ema_decay: per-step decay of the average; ``None`` snapshots raw ``theta``.
    """

    def __init__(
        self, theta: Any, history_size: int, snapshot_interval: int, ema_decay: float | None
    ) -> None:
        xp = kernels.get_array_module(theta)
        n = theta.shape[0]
        self.interval = snapshot_interval
        self.beta = 0.0 if ema_decay is None else float(ema_decay)
        self.ema = xp.array(theta, copy=True)  # (N,) float32 moving average
        self.prev = xp.array(theta, copy=True)  # (N,) theta at the previous snapshot
        self.prev_update = xp.zeros_like(theta)  # (N,) move between the two snapshots before
        self.ring = xp.zeros((history_size, n), dtype=theta.dtype)  # (C, N) snapshots
        self.times = np.zeros(history_size, dtype=np.float64)  # (C,) step of each snapshot
        self.count = 0  # valid snapshots since the last restart
        self.head = 0  # next slot to write
        self.clock = 0  # full steps observed since the last restart

    @property
    def lag(self) -> float:
        """Steps by which the moving average trails ``theta`` (``beta / (1 - beta)``)."""
        return self.beta / (1.0 - self.beta)

    def observe(self, theta: Any) -> UpdateStats:
        """After a full step: advance the average; every ``interval`` steps also take the
        update statistics (of the move since the last snapshot) and push a snapshot.

        Between snapshots only the average moves and ``theta`` is checked for non-finite
        values (two element-wise passes and a dot product instead of nine passes); the
        statistics of those steps are ``nan``.
        """
        self.clock += 1
        if self.clock % self.interval:
            sq = kernels.ema_update(theta, self.ema, self.beta)
            nonfinite = 0 if math.isfinite(sq) else max(kernels.vector_stats(theta)[2], 1)
            return UpdateStats(math.nan, math.nan, nonfinite, False)
        norm, cos, nonfinite = kernels.ema_update_stats(
            theta, self.prev, self.prev_update, self.ema, self.beta
        )
        snapshot = nonfinite == 0
        if snapshot:
            kernels.copy(self.ring[self.head], self.ema)
            self.times[self.head] = self.clock
            self.head = (self.head + 1) % self.ring.shape[0]
            self.count = min(self.count + 1, self.ring.shape[0])
        return UpdateStats(norm, cos, nonfinite, snapshot)

    def window(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Slots and times of the ``size`` most recent snapshots, oldest first."""
        size = min(size, self.count)
        c = self.ring.shape[0]
        slots = np.array([(self.head - size + i) % c for i in range(size)], dtype=np.int64)
        return slots, self.times[slots]

    def restart(self, theta: Any) -> None:
        """Start a new trajectory at ``theta`` (after a jump or a rollback): empty ring."""
        kernels.copy(self.ema, theta)
        kernels.copy(self.prev, theta)
        self.prev_update[...] = 0
        self.count = 0
        self.head = 0
        self.clock = 0
