"""Flat optimizers: PyTorch's update rules, schedules, state dicts, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

from hpcore.optim import SGD, Adam, cosine_schedule


class TestSGD:
    def test_momentum_rule(self):
        """Two steps of heavy-ball momentum match the hand-computed update."""
        p = np.array([1.0], np.float32)
        opt = SGD(lr=0.1, momentum=0.9)
        opt.step(p, np.array([1.0], np.float32))  # buf = 1
        opt.step(p, np.array([1.0], np.float32))  # buf = 1.9
        assert p[0] == pytest.approx(1.0 - 0.1 - 0.19)

    def test_nesterov_and_weight_decay(self):
        """Nesterov adds momentum * buf to the gradient; weight decay adds wd * p."""
        p = np.array([2.0], np.float32)
        SGD(lr=0.1, momentum=0.5, nesterov=True, weight_decay=0.5).step(p, np.zeros(1, np.float32))
        g = 0.5 * 2.0
        assert p[0] == pytest.approx(2.0 - 0.1 * (g + 0.5 * g))

    def test_skip_step_advances_schedule_only(self):
        """A predicted step moves the schedule, not the momentum."""
        opt = SGD(lr=lambda s: 1.0 / (1 + s), momentum=0.9)
        p = np.zeros(2, np.float32)
        opt.step(p, np.ones(2, np.float32))
        state = opt.state_dict()
        opt.skip_step()
        assert opt.lr == pytest.approx(1 / 3)
        np.testing.assert_array_equal(opt.state_dict()["momentum_buffer"], state["momentum_buffer"])

    def test_bad_arguments(self):
        """Bad hyperparameters are refused with the argument's name."""
        with pytest.raises(ValueError, match="'lr' must be a positive number"):
            SGD(lr=0)
        with pytest.raises(ValueError, match="'nesterov' needs 'momentum' > 0"):
            SGD(lr=0.1, nesterov=True)
        with pytest.raises(ValueError, match="'momentum' must be a number >= 0"):
            SGD(lr=0.1, momentum=-1)


class TestAdam:
    def test_first_step_is_lr_times_sign(self):
        """With bias correction the first Adam step is about lr * sign(grad)."""
        p = np.zeros(3, np.float32)
        Adam(lr=0.01).step(p, np.array([3.0, -0.5, 2.0], np.float32))
        np.testing.assert_allclose(p, [-0.01, 0.01, -0.01], rtol=1e-5)

    def test_state_dict_round_trip(self):
        """Loading a state dict continues bit-identically."""
        rng = np.random.default_rng(0)
        grads = rng.normal(size=(6, 4)).astype(np.float32)
        a, pa = Adam(lr=0.1), np.zeros(4, np.float32)
        for g in grads[:3]:
            a.step(pa, g)
        b, pb = Adam(lr=0.1), pa.copy()
        b.load_state_dict(a.state_dict())
        for g in grads[3:]:
            a.step(pa, g)
            b.step(pb, g)
        np.testing.assert_array_equal(pa, pb)

    def test_bad_betas(self):
        """Betas outside [0, 1) are refused."""
        with pytest.raises(ValueError, match="'betas' must be two numbers in"):
            Adam(lr=0.1, betas=(0.9, 1.0))


def test_cosine_schedule():
    """Cosine decay starts at the base rate and ends at the minimum."""
    lr = cosine_schedule(0.1, 100, min_lr=0.001)
    assert lr(0) == pytest.approx(0.1) and lr(100) == pytest.approx(0.001)
    assert lr(50) == pytest.approx(0.0505)
