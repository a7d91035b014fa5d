"""JAX's JIT compilation time in this process, summed from ``jax.monitoring`` events.

The engine leaves the port calls in which JAX compiled out of its cost model, and the
benchmarks leave those steps out of the wall clock: compilation (and a compiled function's
first call) is a one-off cost that a long run amortises. JAX is imported on ``install``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CompileClock", "CLOCK", "compile_seconds"]


class CompileClock:
    """Cumulative JAX tracing + lowering + compilation seconds (``/jax/core/compile/``
    duration events), from the moment :meth:`install` was first called."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.installed = False

    def listen(self, event: str, duration: float, **_kw: Any) -> None:
        if event.startswith("/jax/core/compile/"):
            self.seconds += duration

    def install(self) -> None:
        if not self.installed:
            import jax

            jax.monitoring.register_event_duration_secs_listener(self.listen)
            self.installed = True


CLOCK = CompileClock()


def compile_seconds() -> float:
    """JAX JIT compilation seconds so far in this process (0 before the clock's install)."""
    return CLOCK.seconds
