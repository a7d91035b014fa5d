"""The NumPy adapter's surface and its refusals of bad input."""

from __future__ import annotations

import numpy as np
import pytest

from hpcore import Phase
from hpcore.adapters.numpy import HybridTrainer
from hpcore.optim import SGD


def lg(p, batch):
    r = p - batch
    return float(r @ r), 2 * r


class TestHybridTrainer:
    def test_surface(self, tmp_path):
        """step, params, current_step, current_phase, statistics and export_metrics work."""
        p = np.zeros(4, np.float32)
        t = HybridTrainer(p, lg, SGD(lr=0.1))
        r = t.step(np.ones(4, np.float32))
        assert t.params is p and t.current_step == 1 and r.step == 0
        assert t.current_phase is Phase.WARMUP and not r.was_predicted
        assert t.statistics().backward_passes == 1
        assert t.export_metrics(tmp_path / "m.json").exists()

    @pytest.mark.parametrize(
        ("params", "message"),
        [
            (np.zeros(4, np.float64), "params must be a 1-D float32 array"),
            (np.zeros((2, 2), np.float32), "params must be a 1-D float32 array"),
            (np.zeros(0, np.float32), "params is empty"),
            (np.zeros(8, np.float32)[::2], "params must be C-contiguous and writeable"),
            ([0.0, 1.0], "params must be a NumPy array"),
        ],
        ids=["float64", "2d", "empty", "strided", "list"],
    )
    def test_bad_params(self, params, message):
        """Parameters the engine cannot train in place are refused at construction."""
        with pytest.raises(ValueError, match=message):
            HybridTrainer(params, lg, SGD(lr=0.1))

    def test_bad_optimizer(self):
        """Only hpcore.optim optimizers drive a NumPy model."""
        with pytest.raises(ValueError, match="optimizer must be an hpcore.optim optimizer"):
            HybridTrainer(np.zeros(2, np.float32), lg, object())

    def test_bad_loss_and_grad_results(self):
        """A non-scalar loss or a wrongly shaped gradient is named, and nothing moves."""
        p = np.ones(3, np.float32)
        t = HybridTrainer(p, lambda p, b: (np.ones(2), p.copy()), SGD(lr=0.1))
        with pytest.raises(ValueError, match=r"must return a scalar loss \(got an array of shape \(2,\)\)"):
            t.step(None)
        t = HybridTrainer(p, lambda p, b: (1.0, np.ones(5, np.float32)), SGD(lr=0.1))
        with pytest.raises(ValueError, match=r"gradient of shape \(5,\); it must match params \(3,\)"):
            t.step(None)
        np.testing.assert_array_equal(p, np.ones(3, np.float32))


def test_a_rollback_keeps_the_schedule_and_restores_the_moments():
    """The port's ``load_optimizer_state`` (a rollback) brings the momentum back and leaves
    the schedule where it is: it counts every step taken, rolled-back ones too."""
    from hpcore.adapters.numpy import NumpyPort
    from hpcore.optim import cosine_schedule

    params = np.zeros(4, np.float32)
    optimizer = SGD(cosine_schedule(0.1, 100), momentum=0.9)
    port = NumpyPort(params, lambda p, b: (float(p @ p), 2 * p - b), optimizer, None)
    batch = np.ones(4, np.float32)
    port.full_step(batch)
    saved = port.optimizer_state()
    for _ in range(5):
        port.full_step(batch)
    port.load_optimizer_state(saved)
    assert optimizer.schedule_step == 6
    np.testing.assert_array_equal(optimizer.state_dict()["momentum_buffer"],
                                  saved["momentum_buffer"])
