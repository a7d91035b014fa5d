"""What every adapter's optimizer wrapper offers on top of its :class:`~hpcore.core.HybridCore`.

One surface in one place: whether the next step needs gradients, the statistics and metrics,
checkpoint files (automatic ones too). An adapter sets ``self._core`` and provides
``state_dict()`` / ``load_state_dict()``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from hpcore._log import get_logger
from hpcore.checkpoint import (
    CheckpointError,
    checkpoint_files,
    read_checkpoint,
    rotate,
    step_path,
    write_checkpoint,
)
from hpcore.core import HybridCore, JumpRecord
from hpcore.divergence import DivergenceEvent
from hpcore.types import Phase, TrainingStatistics

__all__ = ["WrapperBase"]

log = get_logger(__name__)


class WrapperBase:
    """Shared surface of the adapters' ``HybridOptimizer`` classes."""

    _core: HybridCore
    _autosave = True  # automatic checkpoints from this object (a convenience trainer takes over)

    @property
    def need_grads(self) -> bool:
        """The next step is a full one: run your forward and backward, then ``step(loss)``.
        False on a predicted step: call ``step()`` with nothing computed."""
        return self._core.need_grads

    @property
    def phase(self) -> Phase:
        """The phase the next step runs in."""
        return self._core.phase

    @property
    def current_step(self) -> int:
        """Steps taken so far, predicted ones included."""
        return self._core.steps

    @property
    def jumps(self) -> tuple[JumpRecord, ...]:
        """How every judged jump went, oldest first (with ``collect_metrics``)."""
        return tuple(self._core.jumps)

    @property
    def events(self) -> tuple[DivergenceEvent, ...]:
        """Every divergence event so far, oldest first."""
        return tuple(self._core.events)

    def statistics(self) -> TrainingStatistics:
        """Counters of the run so far."""
        return self._core.statistics()

    def metrics(self) -> dict[str, Any]:
        """Statistics, config, jumps and events as one JSON-ready dict."""
        return self._core.metrics()

    def export_metrics(self, path: str | Path) -> Path:
        """Write :meth:`metrics` to ``path`` as JSON; returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.metrics(), indent=2, allow_nan=True))
        return path

    # ------------------------------------------------------------------ checkpoint files
    def state_dict(self) -> dict[str, Any]:  # pragma: no cover - the adapter provides it
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:  # pragma: no cover
        raise NotImplementedError

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write :meth:`state_dict` to ``path`` (default: ``<directory>/ckpt-<step>.npz`` of
        the configured :class:`~hpcore.config.CheckpointConfig`, the newest ``keep_last_n``
        kept). The file holds arrays, numbers and strings only: no pickle."""
        cfg = self._core.config.checkpoint
        state = self.state_dict()
        if not cfg.include_predictor:
            _hybrid_of(state)["predictor"] = None
        if path is None:
            if cfg.directory is None:
                msg = "save_checkpoint() needs a path, or a CheckpointConfig(directory=...)"
                raise ValueError(msg)
            folder = cfg.directory

            def make_room() -> None:  # out of space: older ones go first (keep_last_n - 1 stay)
                for old in checkpoint_files(folder)[: -cfg.keep_last_n + 1 or None]:
                    old.unlink(missing_ok=True)

            written = write_checkpoint(step_path(folder, self.current_step), state,
                                       make_room=make_room)
            rotate(folder, cfg.keep_last_n)
            return written
        return write_checkpoint(path, state)

    def load_checkpoint(self, path: str | Path) -> Path:
        """Restore from a checkpoint file, or from the newest valid one in a folder.

        Raises:
            CheckpointError: nothing valid there; the wrapper is unchanged.
        """
        path = Path(path)
        if not path.is_dir():
            self._load_file(path, read_checkpoint(path))
            return path
        skipped = []
        for candidate in reversed(checkpoint_files(path)):  # newest first
            try:
                self._load_file(candidate, read_checkpoint(candidate))
            except CheckpointError as exc:
                log.warning("checkpoint_skipped", path=str(candidate), reason=str(exc))
                skipped.append(str(exc))
                continue
            return candidate
        msg = (f"no checkpoint in {path} could be loaded: {'; '.join(skipped)}" if skipped
               else f"no checkpoint in {path} (no ckpt-<step>.npz files)")
        raise CheckpointError(msg)

    def _load_file(self, path: Path, state: Any) -> None:
        hybrid = _hybrid_of(state)
        if isinstance(hybrid, dict) and hybrid.get("predictor", {}) is None:
            hybrid["predictor"] = self._core.predictor.state_dict()
        try:
            self.load_state_dict(state)
        except (ValueError, TypeError, KeyError) as exc:
            msg = f"{path}: refused, nothing was changed: {exc}"
            raise CheckpointError(msg) from exc

    def _after_step(self) -> None:
        """Automatic checkpoints: a failed save is reported and the step stays taken once."""
        cfg = self._core.config.checkpoint
        if not (self._autosave and cfg.save_interval and self.current_step % cfg.save_interval == 0):
            return
        try:
            self.save_checkpoint()
        except (OSError, ValueError) as exc:  # CheckpointError is a ValueError
            log.error("checkpoint_failed", step=self.current_step, error=str(exc))
            warnings.warn(f"automatic checkpoint at step {self.current_step} failed: {exc}; "
                          "training goes on, the next save will try again", RuntimeWarning,
                          stacklevel=3)


def _hybrid_of(state: Any) -> Any:
    """The hybrid core's part of a wrapper's or a convenience trainer's state."""
    if not isinstance(state, dict):
        return None
    if "hybrid" in state:
        return state["hybrid"]
    inner = state.get("optimizer")
    return inner.get("hybrid") if isinstance(inner, dict) else None
