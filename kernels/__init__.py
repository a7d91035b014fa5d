"""Array kernels behind one dispatch: NumPy references and their faster twins.

The engine calls the functions re-exported here, never a twin directly; ``use`` forces a
backend for tests and benchmarks. Numba twins compile on their first call (and are cached
on disk); ``numba.cuda`` and ``cupy`` are imported only when a GPU twin first runs.
Numba's threads follow the framework's (``follow_framework_threads``), applied before the
first Numba twin runs.
"""

from ._dispatch import (
    BACKENDS,
    get_array_module,
    lookup,
    register,
    registered,
    start_up_seconds,
    to_host,
    use,
)
from ._threads import follow_framework_threads, numba_threads
from .history import axpy_path, copy, ema_update, ema_update_stats, lincomb, shift, trend_r2
from .linucb import linucb_scores, linucb_update
from .nowcast import (
    GRUWeights,
    MLPWeights,
    categorical_sample,
    gru_backward,
    gru_forward,
    init_gru,
    init_mlp,
    mlp_backward,
    mlp_forward,
)
from .residual import residual_correct, residual_weights
from .stats import vector_stats

__all__ = [
    "BACKENDS",
    "GRUWeights",
    "MLPWeights",
    "axpy_path",
    "categorical_sample",
    "copy",
    "ema_update",
    "ema_update_stats",
    "follow_framework_threads",
    "get_array_module",
    "gru_backward",
    "gru_forward",
    "init_gru",
    "init_mlp",
    "lincomb",
    "linucb_scores",
    "linucb_update",
    "lookup",
    "mlp_backward",
    "mlp_forward",
    "numba_threads",
    "register",
    "registered",
    "residual_correct",
    "residual_weights",
    "shift",
    "start_up_seconds",
    "to_host",
    "trend_r2",
    "use",
    "vector_stats",
]
