"""Shared fixtures of the kernel tests: backends (skipped visibly when missing), tolerances."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pytest

# Tolerances follow the dtype of the buffers: float32 results are rounded from float64 maths,
# so one ulp of float32 separates twins; float64 twins differ only in summation order.
TOLERANCES = {
    np.dtype(np.float32): {"rtol": 2e-6, "atol": 1e-6},
    np.dtype(np.float64): {"rtol": 1e-10, "atol": 1e-12},
}


class Backend(NamedTuple):
    """How a test moves arrays to the twin under test and back."""

    name: str
    to_device: Callable[[Any], Any]
    to_host: Callable[[Any], Any]


def _host(x: Any) -> Any:
    return x.get() if hasattr(x, "get") and not isinstance(x, np.ndarray) else x


@pytest.fixture
def on_backend() -> Callable[[str], Backend]:
    """``on_backend(name)``: a :class:`Backend`, or a visible skip saying why it is missing."""

    def make(name: str) -> Backend:
        if name in ("numpy", "numba"):
            return Backend(name, lambda a: a, lambda a: a)
        if name == "cupy":
            from hpcore.kernels._gpu import cupy_module

            cp = cupy_module()
            if cp is None:
                pytest.skip("cupy twin: cupy is not installed or sees no GPU (cupy.is_available())")
            return Backend(name, cp.asarray, _host)
        msg = f"no test backend {name!r}"
        raise ValueError(msg)

    return make


@pytest.fixture
def tol() -> Callable[[Any], dict[str, float]]:
    """``tol(dtype)``: keyword tolerances for ``np.testing.assert_allclose``."""
    return lambda dtype: TOLERANCES[np.dtype(dtype)]
