"""The snapshot history: a strided moving average and a ring that kept jumps shift."""

from __future__ import annotations

import numpy as np
import pytest

from hpcore.history import SnapshotHistory, ema_stride, successive_moves


class TestSnapshotHistory:
    def test_the_average_moves_every_stride_steps_and_at_snapshots(self):
        """With 40-step snapshots the average moves every 4th step, by decay ** 4."""
        theta = np.zeros(8, np.float32)
        h = SnapshotHistory(theta, 4, 40, 0.95)
        assert h.stride == 4 and h.beta == pytest.approx(0.95 ** 4)
        theta += 1.0
        for i in range(1, 4):
            assert h.observe(theta, snapshot=False) == (0, False)
            assert np.all(h.ema == 0.0), i
        h.observe(theta, snapshot=False)
        np.testing.assert_allclose(h.ema, 1.0 - 0.95 ** 4, rtol=1e-6)
        assert h.observe(theta, snapshot=True) == (0, True)  # a snapshot always moves it

    def test_a_strided_average_lags_like_a_per_step_one(self):
        """On a steady drift the strided average trails theta by about ``lag`` steps."""
        theta = np.zeros(1, np.float32)
        h = SnapshotHistory(theta, 4, 40, 0.95)
        for t in range(1, 801):
            theta[0] = t
            h.observe(theta, snapshot=t % 40 == 0)
        assert float(theta[0] - h.ema[0]) == pytest.approx(h.lag, rel=0.02)
        assert 15 < h.lag < 20  # per step: 0.95 / 0.05 = 19

    def test_non_finite_parameters_are_counted_and_never_snapshotted(self):
        """A NaN in theta is reported at the next move and does not enter the ring."""
        theta = np.ones(6, np.float32)
        h = SnapshotHistory(theta, 4, 5, 0.9)
        theta[2] = np.nan
        assert h.observe(theta, snapshot=True) == (1, False)
        assert h.count == 0

    def test_shift_and_drop_undo_each_other(self):
        """A kept jump's shift moves every snapshot; drop forgets the newest ones."""
        theta = np.zeros(3, np.float32)
        h = SnapshotHistory(theta, 4, 1, None)
        for t in range(1, 4):
            theta[:] = t
            h.observe(theta, snapshot=True)
        d = np.ones(3, np.float32)
        h.shift(d, 2.0)
        np.testing.assert_array_equal(h.ring[h.window(3)[0]][:, 0], [3.0, 4.0, 5.0])
        h.shift(d, -2.0)
        h.drop(1, clock=2)
        assert h.count == 2 and h.clock == 2
        np.testing.assert_array_equal(h.ring[h.window(4)[0]][:, 0], [1.0, 2.0])


def test_successive_moves_norm_and_cosine():
    """Norm of the newest move and its cosine with the one before."""
    theta = np.zeros(2, np.float32)
    h = SnapshotHistory(theta, 4, 1, None)
    assert np.isnan(successive_moves(h)[0])
    for v in ([0, 0], [3, 4], [6, 8]):
        theta[:] = v
        h.observe(theta, snapshot=True)
    norm, cos = successive_moves(h)
    assert norm == pytest.approx(5.0) and cos == pytest.approx(1.0)


def test_ema_stride_divides_the_interval():
    """The stride is a divisor of the snapshot interval, at most a tenth of it."""
    assert [ema_stride(n) for n in (1, 10, 20, 40, 100, 25)] == [1, 1, 2, 4, 10, 1]
