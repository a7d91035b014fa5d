"""Divergence monitor: turns losses and update statistics into levels (DESIGN section 6).

Signals covered: non-finite loss or parameters (``nan_inf``, critical), the loss z-score
against the full-phase baseline (``loss_zscore``), and a probe loss that rose beyond the
rollback tolerance during a jump (``probe_rise``).
"""

from __future__ import annotations

import enum
import math

import attrs

from hpcore.config import DivergenceConfig

__all__ = ["DivergenceEvent", "DivergenceMonitor", "Level"]


class Level(enum.IntEnum):
    """Severity: warning ends a Predict phase; critical rolls back and forces full steps."""

    NORMAL = 0
    CAUTION = 1
    WARNING = 2
    CRITICAL = 3


@attrs.frozen
class DivergenceEvent:
    """One monitor event, as recorded in the statistics and the JSON metrics."""

    step: int
    signal: str
    level: Level
    value: float


class DivergenceMonitor:
    """Running mean and variance of the full-phase loss, and the checks built on them."""

    def __init__(self, config: DivergenceConfig, warning_zscore: float, rollback_tolerance: float):
        self.config = config
        self.warning_zscore = warning_zscore
        self.rollback_tolerance = rollback_tolerance
        self.mean = 0.0
        self.var = 0.0
        self.seen = 0  # full-phase losses in the baseline

    def zscore(self, loss: float) -> float:
        """How many baseline deviations ``loss`` lies above the baseline mean (0 if unknown).

        The deviation is floored at 1% of the mean's magnitude, so that a nearly constant
        loss does not turn every small move into a spike.
        """
        if self.seen < self.config.min_baseline_steps:
            return 0.0
        std = max(math.sqrt(self.var), 0.01 * abs(self.mean), 1e-12)
        return (loss - self.mean) / std

    def reset(self) -> None:
        """Forget the baseline (after a rollback the run is somewhere else)."""
        self.mean, self.var, self.seen = 0.0, 0.0, 0

    def full_step(self, step: int, loss: float, nonfinite: int, *, update_baseline: bool
                  ) -> DivergenceEvent | None:
        """Judge a full step; normal losses feed the baseline when ``update_baseline``."""
        if not math.isfinite(loss) or nonfinite:
            return DivergenceEvent(step, "nan_inf", Level.CRITICAL, float(nonfinite or loss))
        z = self.zscore(loss)
        if z > self.config.critical_zscore:
            return DivergenceEvent(step, "loss_zscore", Level.CRITICAL, z)
        event = None
        if z > self.warning_zscore:
            event = DivergenceEvent(step, "loss_zscore", Level.WARNING, z)
        elif update_baseline:
            self._absorb(loss)
        return event

    def probe(self, step: int, loss: float, reference: float) -> DivergenceEvent | None:
        """Judge a forward-only probe loss during a jump against its pre-jump value."""
        if not math.isfinite(loss):
            return DivergenceEvent(step, "nan_inf", Level.CRITICAL, loss)
        rise = (loss - reference) / max(abs(reference), 1e-12)
        if rise > self.rollback_tolerance:
            return DivergenceEvent(step, "probe_rise", Level.WARNING, rise)
        return None

    def _absorb(self, loss: float) -> None:
        self.seen += 1
        if self.seen == 1:
            self.mean, self.var = loss, 0.0
            return
        a = 1.0 - self.config.baseline_decay
        delta = loss - self.mean
        self.mean += a * delta
        self.var = (1.0 - a) * (self.var + a * delta * delta)
