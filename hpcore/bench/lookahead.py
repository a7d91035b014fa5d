"""Lookahead (k steps forward, 1 step back) as a wrapper around a plain training loop.

Slow weights ``phi`` start at the initial parameters; the inner optimizer takes ``k`` steps
on the fast weights ``theta``; then ``phi <- phi + alpha * (theta - phi)`` and ``theta <- phi``.
The inner optimizer's state (momentum, Adam moments) is kept across the synchronisation.

References:
    Zhang, Lucas, Hinton, Ba. "Lookahead Optimizer: k steps forward, 1 step back."
    NeurIPS 2019.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["Lookahead"]


class Lookahead:
    """Wraps ``step(batch)`` of a plain loop; the parameters are read and written as flat vectors.

    Args:
        step: one plain training step (forward, backward, the inner optimizer's step).
        get_flat: returns the current (fast) parameters as a 1-D float array (a copy or view).
        set_flat: writes a 1-D float array into the parameters.
        k: inner steps between two synchronisations.
        alpha: slow-weight step size, in ``(0, 1]``.

    Example:
        >>> import numpy as np
        >>> p = np.zeros(1)
        >>> def sgd(batch):
        ...     p[:] -= 0.1 * (p - batch)  # gradient of 0.5 * (p - batch)^2
        >>> la = Lookahead(sgd, lambda: p.copy(), lambda v: p.__setitem__(slice(None), v), k=2, alpha=0.5)
        >>> for _ in range(2):
        ...     la.step(1.0)
        >>> round(float(p[0]), 4)  # fast weights 0.19 after 2 steps, slow: 0 + 0.5 * 0.19
        0.095
    """

    def __init__(self, step: Callable[[Any], Any], get_flat: Callable[[], np.ndarray],
                 set_flat: Callable[[np.ndarray], None], *, k: int = 5, alpha: float = 0.5) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            msg = f"'k' must be an int >= 1 (got {k!r})"
            raise ValueError(msg)
        if not 0.0 < alpha <= 1.0:
            msg = f"'alpha' must be in (0, 1] (got {alpha!r})"
            raise ValueError(msg)
        self._step = step
        self._get = get_flat
        self._set = set_flat
        self.k = k
        self.alpha = float(alpha)
        self.slow = np.array(get_flat(), dtype=np.float64, copy=True)  # (N,) float64 slow weights
        self.count = 0  # inner steps taken
        self.sync_time_s = 0.0  # wall time spent synchronising (the wrapper's overhead)

    def step(self, batch: Any) -> Any:
        """One inner step; every ``k``-th one ends with the slow-weight update."""
        out = self._step(batch)
        self.count += 1
        if self.count % self.k == 0:
            t0 = time.perf_counter()
            fast = np.asarray(self._get(), dtype=np.float64)
            self.slow += self.alpha * (fast - self.slow)
            self._set(self.slow)
            self.sync_time_s += time.perf_counter() - t0
        return out
