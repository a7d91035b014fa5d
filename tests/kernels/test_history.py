"""History kernels: every twin against the NumPy reference, and properties of the reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hpcore import kernels
from hpcore.kernels import _dispatch, history, stats

PROPS = settings(max_examples=40, deadline=None)
TWINS = ["numba", "cupy"]
DTYPES = [np.float32, np.float64]
SIZES = [0, 1, 7, 5000]


def _buffers(rng: np.random.Generator, n: int, dtype: type, k: int) -> list[np.ndarray]:
    return [rng.standard_normal(n).astype(dtype) for _ in range(k)]


def _floats(dtype: type, n: st.SearchStrategy[int], finite: bool = True) -> st.SearchStrategy:
    elements = st.floats(-1e3, 1e3, width=32) if finite else st.floats(width=32)
    return hnp.arrays(dtype, n, elements=elements)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("backend", TWINS)
class TestTwinParity:
    """Each twin gives the reference's results, through the public dispatching function."""

    @pytest.mark.parametrize("n", SIZES, ids=lambda n: f"n{n}")
    def test_ema_update_stats(self, backend, dtype, n, on_backend, tol):
        """Statistics and all three updated buffers match the reference."""
        bk = on_backend(backend)
        rng = np.random.default_rng(n)
        ref = _buffers(rng, n, dtype, 4)
        if n > 3:
            ref[0][3] = np.nan
        dev = [bk.to_device(a.copy()) for a in ref]
        expected = history.ema_update_stats_ref(*ref, 0.9)
        with kernels.use(backend):
            got = kernels.ema_update_stats(*dev, 0.9)
        np.testing.assert_allclose(got[:2], expected[:2], rtol=1e-9, equal_nan=True)
        assert got[2] == expected[2]
        for a, b in zip(dev, ref, strict=True):
            np.testing.assert_allclose(bk.to_host(a), b, **tol(dtype), equal_nan=True)

    @pytest.mark.parametrize("n", SIZES, ids=lambda n: f"n{n}")
    @pytest.mark.parametrize("c", [0, 1, 8], ids=lambda c: f"c{c}")
    def test_lincomb(self, backend, dtype, n, c, on_backend, tol):
        """The combination of snapshots matches the reference's float64 GEMV."""
        bk = on_backend(backend)
        rng = np.random.default_rng(n + c)
        ring = rng.standard_normal((c, n)).astype(dtype)
        w = rng.standard_normal(c)
        base = rng.standard_normal(n).astype(dtype)
        expected = np.empty(n, dtype)
        history.lincomb_ref(w, ring, base, -0.25, expected)
        out = bk.to_device(np.full(n, np.nan, dtype))
        with kernels.use(backend):
            kernels.lincomb(bk.to_device(w), bk.to_device(ring), bk.to_device(base), -0.25, out)
        np.testing.assert_allclose(bk.to_host(out), expected, **tol(dtype))

    @pytest.mark.parametrize("n", SIZES, ids=lambda n: f"n{n}")
    def test_axpy_path_is_bit_identical(self, backend, dtype, n, on_backend):
        """A step along the path rounds exactly as the reference does."""
        bk = on_backend(backend)
        origin, direction = _buffers(np.random.default_rng(n), n, dtype, 2)
        expected = np.empty(n, dtype)
        history.axpy_path_ref(expected, origin, direction, 3 / 7)
        theta = bk.to_device(np.empty(n, dtype))
        with kernels.use(backend):
            kernels.axpy_path(theta, bk.to_device(origin), bk.to_device(direction), 3 / 7)
        np.testing.assert_array_equal(bk.to_host(theta), expected)

    @pytest.mark.parametrize("n", SIZES, ids=lambda n: f"n{n}")
    def test_copy(self, backend, dtype, n, on_backend):
        """The destination becomes the source, bit for bit."""
        bk = on_backend(backend)
        (src,) = _buffers(np.random.default_rng(n), n, dtype, 1)
        dst = bk.to_device(np.zeros(n, dtype))
        with kernels.use(backend):
            kernels.copy(dst, bk.to_device(src))
        np.testing.assert_array_equal(bk.to_host(dst), src)
        if backend == "numba":  # the unregistered parallel loop, checked all the same
            dst = np.zeros(n, dtype)
            history.copy_numba(dst, src)
            np.testing.assert_array_equal(dst, src)

    @pytest.mark.parametrize("n", SIZES, ids=lambda n: f"n{n}")
    @pytest.mark.parametrize("c", [1, 2, 8], ids=lambda c: f"c{c}")
    def test_trend_r2(self, backend, dtype, n, c, on_backend):
        """Total and explained sums of squares match the reference."""
        bk = on_backend(backend)
        rng = np.random.default_rng(n + c)
        ring = (rng.standard_normal((c, n)) + np.arange(c)[:, None]).astype(dtype)
        times = np.arange(c) - (c - 1) / 2
        expected = history.trend_r2_ref(ring, times)
        with kernels.use(backend):
            got = kernels.trend_r2(bk.to_device(ring), bk.to_device(times))
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


class TestDispatch:
    """The public functions pick the twin from the array and the override."""

    def test_large_numpy_arrays_go_to_numba(self):
        """Auto mode sends arrays of NUMBA_MIN_SIZE or more to the Numba twin."""
        from hpcore.kernels._dispatch import NUMBA_MIN_SIZE

        big = np.zeros(NUMBA_MIN_SIZE, np.float32)
        assert kernels.lookup("vector_stats", big) is stats.vector_stats_numba
        assert kernels.lookup("vector_stats", big[:10]) is stats.vector_stats_ref
        # The ops with a one-thread path take Numba at every size.
        assert kernels.lookup("lincomb", big[:10]) is history.lincomb_numba

    def test_use_is_a_context_manager_that_restores(self):
        """``use`` forces a backend inside the block and restores auto mode after it."""
        small = np.zeros(3, np.float32)
        with kernels.use("numba"):
            assert kernels.lookup("vector_stats", small) is stats.vector_stats_numba
            assert kernels.lookup("copy", small) is history.copy_ref  # no twin: the reference
        assert kernels.lookup("vector_stats", small) is stats.vector_stats_ref

    @pytest.mark.parametrize("op", ["ema_update_stats", "lincomb", "axpy_path", "trend_r2"])
    def test_every_history_op_has_cpu_and_gpu_twins(self, op):
        """Each op has its reference, a Numba twin and a CuPy twin."""
        assert kernels.registered(op) == ("numpy", "numba", "cupy")

    def test_copy_stays_with_numpy_on_the_cpu(self):
        """A copy is a memcpy: no Numba twin is registered, the GPU copy is CuPy's."""
        assert kernels.registered("copy") == ("numpy", "cupy")


class TestProperties:
    """Hypothesis: twins agree with the reference on any shape, finite or not."""

    @PROPS
    @given(data=st.data(), n=st.integers(0, 40), beta=st.floats(0.0, 1.0))
    def test_ema_update_stats_numba_any_input(self, data, n, beta):
        """Non-finite parameters are counted and propagate like the reference's."""
        bufs = [data.draw(_floats(np.float32, n, finite=(i > 0))) for i in range(4)]
        ref = [b.copy() for b in bufs]
        with np.errstate(all="ignore"):
            expected = history.ema_update_stats_ref(*ref, beta)
            got = history.ema_update_stats_numba(*bufs, beta)
        assert got[2] == expected[2]
        np.testing.assert_allclose(got[:2], expected[:2], rtol=1e-9, atol=1e-12, equal_nan=True)
        for a, b in zip(bufs, ref, strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-6, equal_nan=True)

    @PROPS
    @given(data=st.data(), n=st.integers(0, 30), c=st.integers(0, 5))
    def test_lincomb_selects_a_snapshot(self, data, n, c):
        """A unit weight on snapshot i and no base reproduces that snapshot exactly."""
        ring = data.draw(hnp.arrays(np.float32, (c, n), elements=st.floats(-1e3, 1e3, width=32)))
        base = np.ones(n, np.float32)
        for i in range(c):
            out = np.empty(n, np.float32)
            history.lincomb_numba(np.eye(c)[i], ring, base, 0.0, out)
            np.testing.assert_array_equal(out, ring[i])

    @PROPS
    @given(data=st.data(), n=st.integers(0, 30), frac=st.floats(-2.0, 2.0))
    def test_axpy_path_numba_bit_identical(self, data, n, frac):
        """Any fraction, any values (inf and NaN included) give the reference's bits."""
        origin = data.draw(_floats(np.float32, n, finite=False))
        direction = data.draw(_floats(np.float32, n, finite=False))
        a, b = np.empty(n, np.float32), np.empty(n, np.float32)
        with np.errstate(all="ignore"):
            history.axpy_path_ref(a, origin, direction, frac)
            history.axpy_path_numba(b, origin, direction, frac)
        np.testing.assert_array_equal(a, b)

    @PROPS
    @given(data=st.data(), n=st.integers(0, 30), c=st.integers(1, 6))
    def test_trend_r2_explained_within_total(self, data, n, c):
        """The line never explains more than the spread, and both twins agree."""
        ring = data.draw(hnp.arrays(np.float32, (c, n), elements=st.floats(-1e3, 1e3, width=32)))
        times = np.arange(c) - (c - 1) / 2
        total, explained = history.trend_r2_ref(ring, times)
        assert 0.0 <= explained <= total * (1 + 1e-9) + 1e-9
        np.testing.assert_allclose(
            history.trend_r2_numba(ring, times), (total, explained), rtol=1e-9, atol=1e-6
        )

    def test_trend_r2_of_a_straight_line_explains_everything(self):
        """Snapshots on exact lines give ss_explained == ss_total."""
        times = np.arange(5) - 2.0
        ring = (np.outer(times, [1.0, -2.0, 0.5]) + 3.0).astype(np.float64)
        total, explained = history.trend_r2_numba(ring, times)
        assert total > 0
        assert explained == pytest.approx(total, rel=1e-12)


class TestEmaUpdateStatsNumpyFallback:
    """The registered NumPy fallback keeps the reference's contract in buffer precision."""

    @pytest.mark.parametrize("n", SIZES, ids=lambda n: f"n{n}")
    def test_matches_reference(self, n):
        """Statistics within float32 rounding, buffers identical, non-finite counts equal."""
        rng = np.random.default_rng(n)
        ref = _buffers(rng, n, np.float32, 4)
        if n > 3:
            ref[0][3] = np.inf
        got_bufs = [a.copy() for a in ref]
        expected = history.ema_update_stats_ref(*ref, 0.9)
        got = history.ema_update_stats_numpy(*got_bufs, 0.9)
        np.testing.assert_allclose(got[:2], expected[:2], rtol=1e-5, equal_nan=True)
        assert got[2] == expected[2]
        for a, b in zip(got_bufs, ref, strict=True):
            np.testing.assert_array_equal(a, b)

    def test_overflowing_sum_falls_back_to_float64(self):
        """Finite entries whose float32 square sum overflows give a finite norm, no non-finite."""
        theta = np.full(4, 1e20, np.float32)
        zeros = [np.zeros(4, np.float32) for _ in range(3)]
        norm, _, nonfinite = history.ema_update_stats_numpy(theta, *zeros, 0.5)
        assert norm == pytest.approx(2e20, rel=1e-6) and nonfinite == 0

    def test_is_the_numpy_backend(self):
        """``use("numpy")`` runs the fallback, not the float64 reference; auto picks Numba's
        single-thread path for small vectors."""
        small = np.zeros(10, np.float32)
        with kernels.use("numpy"):
            assert kernels.lookup("ema_update_stats", small) is history.ema_update_stats_numpy
        assert kernels.lookup("ema_update_stats", small) is history.ema_update_stats_numba


class TestEmaUpdate:
    """The cheap per-step op: average update and the sum of squares that flags non-finite."""

    @pytest.mark.parametrize("backend", ["numpy", "numba"])
    @pytest.mark.parametrize("n", SIZES, ids=lambda n: f"n{n}")
    def test_matches_reference(self, backend, n):
        """Every twin moves the average like the reference and returns the same sum."""
        rng = np.random.default_rng(n)
        theta, ema = _buffers(rng, n, np.float32, 2)
        ema_ref = ema.copy()
        expected = history.ema_update_ref(theta, ema_ref, 0.9)
        with kernels.use(backend):
            got = kernels.ema_update(theta, ema, 0.9)
        assert got == pytest.approx(expected, rel=1e-5)
        np.testing.assert_allclose(ema, ema_ref, rtol=1e-6, atol=1e-7)

    @pytest.mark.parametrize("n", [1, 7, 1000, _dispatch.NUMBA_MIN_SIZE - 1, _dispatch.NUMBA_MIN_SIZE])
    def test_serial_and_parallel_numba_paths(self, n):
        """For both EMA ops the single-thread path below ``NUMBA_MIN_SIZE`` and the parallel
        one above agree with the reference (NaN counted), and auto dispatch picks Numba at
        every size."""
        rng = np.random.default_rng(n)
        theta, ema = _buffers(rng, n, np.float32, 2)
        ema_ref = ema.copy()
        expected = history.ema_update_ref(theta, ema_ref, 0.7)
        assert kernels.lookup("ema_update", theta) is history.ema_update_numba
        got = kernels.ema_update(theta, ema, 0.7)
        assert got == pytest.approx(expected, rel=1e-5)
        np.testing.assert_allclose(ema, ema_ref, rtol=1e-6, atol=1e-7)
        bufs = list(_buffers(rng, n, np.float32, 4))
        ref = [a.copy() for a in bufs]
        if n > 3:
            bufs[0][2] = ref[0][2] = np.nan
        expected = history.ema_update_stats_ref(*ref, 0.7)
        assert kernels.lookup("ema_update_stats", bufs[0]) is history.ema_update_stats_numba
        got = kernels.ema_update_stats(*bufs, 0.7)
        np.testing.assert_allclose(got[:2], expected[:2], rtol=1e-5, equal_nan=True)
        assert got[2] == expected[2]
        np.testing.assert_allclose(bufs[3], ref[3], rtol=1e-6, atol=1e-6)  # float32 rounding

    @pytest.mark.parametrize("n", [1, 1000, _dispatch.NUMBA_MIN_SIZE - 1, _dispatch.NUMBA_MIN_SIZE])
    def test_jump_ops_serial_and_parallel(self, n):
        """The jump's Numba twins (line, laying, confidence, shift), on one thread below
        ``NUMBA_MIN_SIZE`` and in parallel above, agree with the reference (the element-wise
        ones bit for bit); the line and the confidence take Numba at every size."""
        rng = np.random.default_rng(n)
        ring = rng.standard_normal((5, n)).astype(np.float32)
        theta, origin, direction = _buffers(rng, n, np.float32, 3)
        w = rng.standard_normal(5)
        out, out_ref = np.empty(n, np.float32), np.empty(n, np.float32)
        assert kernels.lookup("lincomb", out) is history.lincomb_numba
        kernels.lincomb(w, ring, origin, -1.0, out)
        history.lincomb_ref(w, ring, origin, -1.0, out_ref)
        np.testing.assert_allclose(out, out_ref, rtol=1e-6, atol=1e-6)
        ref = theta.copy()
        history.axpy_path_numba(theta, origin, direction, 0.37)
        history.axpy_path_ref(ref, origin, direction, 0.37)
        np.testing.assert_array_equal(theta, ref)
        history.shift_numba(theta, direction, -0.6)
        history.shift_xp(ref, direction, -0.6)
        np.testing.assert_array_equal(theta, ref)
        times = np.arange(5) - 2.0
        np.testing.assert_allclose(kernels.trend_r2(ring, times),
                                   history.trend_r2_ref(ring, times), rtol=1e-9)

    @pytest.mark.parametrize("backend", ["numpy", "numba"])
    def test_non_finite_shows_in_the_sum(self, backend):
        """A NaN or Inf parameter makes the returned sum non-finite; huge finite ones do not."""
        for bad in (np.nan, np.inf):
            theta = np.ones(9, np.float32)
            theta[4] = bad
            with kernels.use(backend):
                assert not np.isfinite(kernels.ema_update(theta, np.zeros(9, np.float32), 0.5))
        huge = np.full(4, 1e20, np.float32)
        with kernels.use(backend):
            assert np.isfinite(kernels.ema_update(huge, np.zeros(4, np.float32), 0.5))
