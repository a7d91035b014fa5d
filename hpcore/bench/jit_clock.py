"""JAX's JIT compilation time in this process, summed from ``jax.monitoring`` events.

The benchmarks leave the steps in which JAX compiled out of the wall clock: compilation (and a
compiled function's first call) is a one-off cost that a long run amortises. The library itself
reads no clock (CONVENTIONS: a timer may report, it never decides); this clock lives with the
benchmarks. JAX is imported on ``install``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CLOCK", "CompileClock", "compile_seconds"]


class CompileClock:
    """Cumulative JAX tracing + lowering + compilation seconds (``/jax/core/compile/``
    duration events), from the moment :meth:`install` was first called."""

    def __init__(self) -> None:
        self.seconds = 0.0  # float, seconds of compilation events seen so far
        self.installed = False  # the listener is registered with jax.monitoring

    def listen(self, event: str, duration: float, **_kw: Any) -> None:
        if event.startswith("/jax/core/compile/"):
            self.seconds += duration

    def install(self) -> None:
        """Register the listener (once; later calls do nothing)."""
        if not self.installed:
            import jax

            jax.monitoring.register_event_duration_secs_listener(self.listen)
            self.installed = True


CLOCK = CompileClock()


def compile_seconds() -> float:
    """JAX JIT compilation seconds so far in this process (0 before the clock's install)."""
    return CLOCK.seconds
