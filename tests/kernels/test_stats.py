"""Stats kernel: fused norm, max-abs and non-finite count, every twin against the reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hpcore import kernels
from hpcore.kernels import stats

PROPS = settings(max_examples=60, deadline=None)


@pytest.mark.parametrize("n", [0, 1, 9, 70000], ids=lambda n: f"n{n}")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("backend", ["numba", "cupy"])
class TestVectorStatsParity:
    """Each twin matches the reference, with and without non-finite entries."""

    def test_matches_reference(self, backend, dtype, n, on_backend):
        """Norm, max-abs and count agree (non-finite entries sprinkled in)."""
        bk = on_backend(backend)
        x = np.random.default_rng(n).standard_normal(n).astype(dtype) * 10
        x[::97] = np.nan
        x[5::89] = -np.inf
        expected = stats.vector_stats_ref(x)
        with kernels.use(backend):
            got = kernels.vector_stats(bk.to_device(x))
        np.testing.assert_allclose(got[:2], expected[:2], rtol=1e-9)
        assert got[2] == expected[2]


class TestVectorStatsProperties:
    """Hypothesis over lengths 0.. and any float32 values."""

    @PROPS
    @given(x=hnp.arrays(np.float32, st.integers(0, 50), elements=st.floats(width=32)))
    def test_numba_twin_any_input(self, x):
        """The Numba twin matches the reference; the norm bounds the max-abs."""
        norm, mx, bad = stats.vector_stats_ref(x)
        got = stats.vector_stats_numba(x)
        assert got[2] == bad == int(np.count_nonzero(~np.isfinite(x)))
        np.testing.assert_allclose(got[:2], (norm, mx), rtol=1e-9)
        assert 0.0 <= mx <= norm * (1 + 1e-12)

    def test_reference_accepts_any_shape(self):
        """A 2-D array is treated as its flattened values."""
        x = np.arange(6.0).reshape(2, 3)
        assert stats.vector_stats_ref(x) == pytest.approx((np.sqrt(55.0), 5.0, 0))
        assert stats.vector_stats_numba(x) == pytest.approx((np.sqrt(55.0), 5.0, 0))
