"""Stats kernels: fused norm, max-abs and non-finite count of a vector."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._dispatch import lookup, register


@register("vector_stats", "numpy")
def vector_stats_ref(x: np.ndarray) -> tuple[float, float, int]:
    """``(L2 norm over finite entries, max |x| over finite entries, #non-finite)``; zeros if empty."""
    finite = np.isfinite(x)
    nonfinite = int(x.size - np.count_nonzero(finite))
    xf = np.where(finite, x, 0).astype(np.float64)
    if xf.size == 0:
        return 0.0, 0.0, nonfinite
    return float(np.sqrt(xf @ xf)), float(np.max(np.abs(xf))), nonfinite


def vector_stats(x: Any) -> tuple[float, float, int]:
    """Dispatching entry point of :func:`vector_stats_ref`."""
    return lookup("vector_stats", x)(x)
