"""What every adapter's ``HybridTrainer`` offers on top of its port: one surface, one place.

Adapters build a port and an engine, then inherit the step loop, the statistics, the metrics
export and the checkpoint files from :class:`TrainerBase`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpcore.checkpoint import latest_checkpoint, read_checkpoint, rotate, step_path, write_checkpoint
from hpcore.engine import HybridEngine
from hpcore.types import Phase, StepResult, TrainingStatistics

__all__ = ["TrainerBase"]


class TrainerBase:
    """Shared surface of the adapters' trainers; subclasses set ``self._engine``.

    A subclass provides ``_checkpoint_state()`` (a dict with an ``"engine"`` entry, plus
    whatever else resuming needs) and ``_load_checkpoint_state(state)``.
    """

    _engine: HybridEngine

    @property
    def engine(self) -> HybridEngine:
        """The phase machine behind this trainer."""
        return self._engine

    @property
    def current_step(self) -> int:
        """Steps taken so far, predicted ones included."""
        return self._engine.step_count

    @property
    def current_phase(self) -> Phase:
        """The phase the next step runs in."""
        return self._engine.phase

    def step(self, batch: Any) -> StepResult:
        """One training step on ``batch`` (a predicted step does not use it)."""
        result = self._engine.step(batch)
        cfg = self._engine.config.checkpoint
        if cfg.save_interval and self.current_step % cfg.save_interval == 0:
            self.save_checkpoint()
        return result

    def statistics(self) -> TrainingStatistics:
        """Counters of the run so far."""
        return self._engine.statistics()

    def export_metrics(self, path: str | Path) -> Path:
        """Write statistics, config, jumps and divergence events to ``path`` as JSON."""
        return self._engine.export_metrics(path)

    def _checkpoint_state(self) -> dict[str, Any]:  # pragma: no cover - adapter provides
        raise NotImplementedError

    def _load_checkpoint_state(self, state: dict[str, Any]) -> None:  # pragma: no cover
        raise NotImplementedError

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write the whole training state to ``path`` (default: the configured folder).

        Without a path the file is ``<directory>/ckpt-<step>.npz`` and only the newest
        ``keep_last_n`` of them are kept.
        """
        cfg = self.engine.config.checkpoint
        state = self._checkpoint_state()
        if not cfg.include_predictor:
            state["engine"]["predictor"] = None
        if path is None:
            if cfg.directory is None:
                msg = "save_checkpoint() needs a path, or a CheckpointConfig(directory=...)"
                raise ValueError(msg)
            written = write_checkpoint(step_path(cfg.directory, self.current_step), state)
            rotate(cfg.directory, cfg.keep_last_n)
            return written
        return write_checkpoint(path, state)

    def load_checkpoint(self, path: str | Path) -> Path:
        """Restore from a checkpoint file, or from the newest readable one in a folder.

        Raises:
            CheckpointError: nothing readable there; the trainer is unchanged.
        """
        path = Path(path)
        if path.is_dir():
            path, state = latest_checkpoint(path)
        else:
            state = read_checkpoint(path)
        if state.get("engine", {}).get("predictor", {}) is None:
            state["engine"]["predictor"] = self.engine.predictor.state_dict()
        self._load_checkpoint_state(state)
        return path
