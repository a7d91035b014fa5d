"""Divergence monitor: turns losses and gradient norms into events with levels (DESIGN 6).

Signals: ``nan_inf`` (non-finite loss or parameters: critical), ``loss_zscore`` (the loss
against the full-phase baseline: warning, critical), ``grad_explosion`` (warning,
critical) and ``grad_vanishing`` (caution) against the running gradient-norm level,
``loss_oscillation`` (caution), and during a jump ``probe_rise`` (the probe loss rose past
the rollback tolerance: warning) and ``prediction_gap`` (the probe loss is above what the
baseline trend predicts for the skipped steps: caution). Warning ends a Predict phase;
critical rolls back and forces full steps (the engine acts; this module only judges).
"""

from __future__ import annotations

import enum
import itertools
import math
from collections import deque

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
    """Running baselines of the full-phase loss and gradient norm, and the checks on them.

    State: ``mean``/``var`` of the loss, ``seen`` losses absorbed, ``grad_log`` the running
    log gradient norm (``grad_seen`` norms absorbed), ``signs`` the last loss-change signs.
    """

    def __init__(self, config: DivergenceConfig, warning_zscore: float, rollback_tolerance: float):
        self.config = config
        self.warning_zscore = warning_zscore
        self.rollback_tolerance = rollback_tolerance
        self.mean = 0.0
        self.var = 0.0
        self.seen = 0
        self.grad_log = 0.0
        self.grad_seen = 0
        self.last_loss = math.nan
        self.signs: deque[int] = deque(maxlen=config.oscillation_window)
        self.flips = 0  # sign changes between neighbours in ``signs``
        self.oscillating = False

    def zscore(self, loss: float) -> float:
        """How many baseline deviations ``loss`` lies above the baseline mean (0 if unknown).

        The deviation is floored at 1% of the mean's magnitude, so that a nearly constant
        loss does not turn every small move into a spike.
        """
        if self.seen < self.config.min_baseline_steps:
            return 0.0
        return (loss - self.mean) / self.spread()

    def spread(self) -> float:
        """The baseline's deviation, floored as in :meth:`zscore`."""
        return max(math.sqrt(self.var), 0.01 * abs(self.mean), 1e-12)

    def reset(self) -> None:
        """Forget the baselines (after a rollback the run is somewhere else)."""
        self.mean, self.var, self.seen = 0.0, 0.0, 0
        self.grad_log, self.grad_seen = 0.0, 0
        self.last_loss = math.nan
        self.signs.clear()
        self.flips = 0
        self.oscillating = False

    def full_step(self, step: int, loss: float, grad_norm: float, nonfinite: int, *,
                  update_baseline: bool) -> list[DivergenceEvent]:
        """Judge a full step; normal ones feed the baselines when ``update_baseline``."""
        if not math.isfinite(loss) or nonfinite:
            return [DivergenceEvent(step, "nan_inf", Level.CRITICAL, float(nonfinite or loss))]
        events = []
        z = self.zscore(loss)
        if z > self.config.critical_zscore:
            events.append(DivergenceEvent(step, "loss_zscore", Level.CRITICAL, z))
        elif z > self.warning_zscore:
            events.append(DivergenceEvent(step, "loss_zscore", Level.WARNING, z))
        events += self._gradient(step, grad_norm)
        events += self._oscillation(step, loss)
        if update_baseline and not any(e.level >= Level.WARNING for e in events):
            self._absorb(loss, grad_norm)
        return events

    def probe(self, step: int, loss: float, reference: float, skipped: int,
              slope: float) -> list[DivergenceEvent]:
        """Judge a forward-only probe loss, ``skipped`` predicted steps into a jump."""
        if not math.isfinite(loss):
            return [DivergenceEvent(step, "nan_inf", Level.CRITICAL, loss)]
        events = []
        rise = (loss - reference) / max(abs(reference), 1e-12)
        if rise > self.rollback_tolerance:
            events.append(DivergenceEvent(step, "probe_rise", Level.WARNING, rise))
        gap = self.prediction_gap(loss, reference, skipped, slope)
        if gap > self.config.gap_zscore:
            events.append(DivergenceEvent(step, "prediction_gap", Level.CAUTION, gap))
        return events

    def prediction_gap(self, loss: float, reference: float, skipped: int, slope: float) -> float:
        """Baseline deviations by which a probe loss exceeds the trend's promise for the
        ``skipped`` steps (0 before the baseline is trusted)."""
        if self.seen < self.config.min_baseline_steps:
            return 0.0
        return (loss - (reference + min(slope, 0.0) * skipped)) / self.spread()

    def _gradient(self, step: int, grad_norm: float) -> list[DivergenceEvent]:
        if not (math.isfinite(grad_norm) and grad_norm > 0):
            return []
        if self.grad_seen < self.config.min_baseline_steps:
            return []
        ratio = grad_norm / math.exp(self.grad_log)
        c = self.config
        if ratio > c.grad_critical_ratio:
            return [DivergenceEvent(step, "grad_explosion", Level.CRITICAL, ratio)]
        if ratio > c.grad_explosion_ratio:
            return [DivergenceEvent(step, "grad_explosion", Level.WARNING, ratio)]
        if ratio < c.grad_vanishing_ratio:
            return [DivergenceEvent(step, "grad_vanishing", Level.CAUTION, ratio)]
        return []

    def _oscillation(self, step: int, loss: float) -> list[DivergenceEvent]:
        window = self.signs.maxlen or 0
        if math.isfinite(self.last_loss) and loss != self.last_loss:
            sign = 1 if loss > self.last_loss else -1
            if len(self.signs) == window:  # the oldest pair leaves the window
                self.flips -= self.signs[0] != self.signs[1]
            if self.signs:
                self.flips += self.signs[-1] != sign
            self.signs.append(sign)
        self.last_loss = loss
        if len(self.signs) < window:
            return []
        flips = self.flips / (window - 1)
        was, self.oscillating = self.oscillating, flips >= self.config.oscillation_fraction
        if self.oscillating and not was:  # one event per episode, not per step
            return [DivergenceEvent(step, "loss_oscillation", Level.CAUTION, flips)]
        return []

    def _absorb(self, loss: float, grad_norm: float) -> None:
        a = 1.0 - self.config.baseline_decay
        self.seen += 1
        if self.seen == 1:
            self.mean, self.var = loss, 0.0
        else:
            delta = loss - self.mean
            self.mean += a * delta
            self.var = (1.0 - a) * (self.var + a * delta * delta)
        if math.isfinite(grad_norm) and grad_norm > 0:
            g = math.log(grad_norm)
            self.grad_seen += 1
            self.grad_log = g if self.grad_seen == 1 else self.grad_log + a * (g - self.grad_log)

    def state_dict(self) -> dict[str, object]:
        return {"mean": self.mean, "var": self.var, "seen": self.seen, "grad_log": self.grad_log,
                "grad_seen": self.grad_seen, "last_loss": self.last_loss,
                "signs": list(self.signs), "oscillating": self.oscillating}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.mean, self.var = float(state["mean"]), float(state["var"])
        self.seen, self.grad_seen = int(state["seen"]), int(state["grad_seen"])
        self.grad_log, self.last_loss = float(state["grad_log"]), float(state["last_loss"])
        self.signs.clear()
        self.signs.extend(int(x) for x in state["signs"])
        self.flips = sum(a != b for a, b in itertools.pairwise(self.signs))
        self.oscillating = bool(state["oscillating"])
