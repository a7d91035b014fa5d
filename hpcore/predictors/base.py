"""The predictor protocol the engine drives (DESIGN section 5)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from hpcore.history import SnapshotHistory

__all__ = ["Predictor"]


@runtime_checkable
class Predictor(Protocol):
    """Maps the snapshot window to a forecast displacement; may learn online.

    The engine calls ``observe_snapshot`` after every snapshot, ``confidence`` and then
    ``forecast`` when it considers a jump, and ``learn_from_jump`` when a jump is judged
    (before any rollback) with the displacement the trajectory really made from the jump's
    origin through the Correct phase.
    """

    min_snapshots: int
    learns_from_jumps: bool  # learn_from_jump uses ``actual`` (else it is not computed)

    def observe_snapshot(self, history: SnapshotHistory) -> None: ...

    def confidence(self, history: SnapshotHistory) -> float: ...

    def forecast(self, history: SnapshotHistory, origin: Any, horizon: int, out: Any) -> None: ...

    def learn_from_jump(self, actual: Any, taken: int, horizon: int, correct_steps: int) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
