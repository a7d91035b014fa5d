"""Array kernels behind one dispatch: NumPy references and their faster twins.

The engine calls the functions re-exported here, never a twin directly; ``use`` forces a
backend for tests and benchmarks.
"""

from ._dispatch import BACKENDS, get_array_module, lookup, register, registered, use
from .history import axpy_path, copy, ema_update_stats, lincomb, trend_r2
from .stats import vector_stats

__all__ = [
    "BACKENDS",
    "axpy_path",
    "copy",
    "ema_update_stats",
    "get_array_module",
    "lincomb",
    "lookup",
    "register",
    "registered",
    "trend_r2",
    "use",
    "vector_stats",
]
