"""The port: what only the framework can do, as the engine sees it (DESIGN section 3)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["FullStepOutput", "TrainingPort"]


class FullStepOutput(tuple):
    """``(loss, grad_norm)`` of one full step; ``grad_norm`` may be ``nan`` if unknown."""

    __slots__ = ()

    def __new__(cls, loss: float, grad_norm: float) -> FullStepOutput:
        return super().__new__(cls, (float(loss), float(grad_norm)))

    @property
    def loss(self) -> float:
        return self[0]

    @property
    def grad_norm(self) -> float:
        return self[1]


@runtime_checkable
class TrainingPort(Protocol):
    """Framework glue an adapter provides to :class:`hpcore.engine.HybridEngine`.

    ``flat_params()`` shares memory with the model where it can; ``forward_costs_backward``
    is true when ``forward_loss`` has no cheaper path than the gradient function (the
    statistics then count it as a backward pass).

    Optional, for a dormant engine's steps between its fully guarded ones:
    ``lean_step(batch)``, a full step as the plain loop takes it that returns the loss alone
    (no gradient norm; a non-finite loss must not update), as a float or as a scalar the
    framework may still be computing (``float()`` waits for it: the engine reads it after
    its own bookkeeping); and ``sync_flat()``, where a
    lean step leaves ``flat_params()`` behind the model, to bring it up to date. A port
    without ``lean_step`` takes full steps throughout.

    Optional for a JIT framework: ``compile_seconds()``, a clock of its compilation time so
    far in the process (JAX: ``jax.monitoring``; ``torch.compile``: dynamo's records); a port
    call during which it moved (a compilation, and the compiled function's first call) is
    left out of the engine's cost model, as a one-off cost.
    """

    forward_costs_backward: bool

    def flat_params(self) -> Any:
        """1-D float32 array, a view of the model's parameters (or a buffer, see commit)."""

    def full_step(self, batch: Any) -> FullStepOutput:
        """Forward, backward and the optimizer's step on ``batch``."""

    def forward_loss(self, batch: Any) -> float:
        """Loss on ``batch`` at the current parameters, no graph, no update."""

    def commit_params(self) -> None:
        """Push ``flat_params()`` into the framework where it cannot share memory."""

    def optimizer_state(self) -> Any:
        """A copy of the optimizer's state, for rollback."""

    def load_optimizer_state(self, state: Any) -> None:
        """Restore a state returned by :meth:`optimizer_state`, for a rollback: the
        optimizer's moments; a learning-rate schedule keeps its position, since it counts
        every step taken (predicted and rolled-back ones too)."""

    def on_predicted_step(self) -> None:
        """A predicted step happened (advance learning-rate schedules)."""

    def all_reduce_mean(self, x: float) -> float:
        """Mean of ``x`` over processes; identity on one process."""
