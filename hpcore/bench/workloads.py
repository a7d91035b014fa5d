"""Benchmark workloads: a model, its real data and an optimizer family, for each framework.

A :class:`Workload` names what is trained; :meth:`Workload.task` binds an optimizer
(``"sgd"``: SGD with momentum 0.9, ``"adam"``, ``"adamw"``: weight decay 0.01) and
:meth:`Task.build` makes one fresh *run*: the model at the seed's initial point, its optimizer
(with a constant rate, a cosine schedule or a warmup-stable-decay one,
:func:`hpcore.bench.runs.wsd_factor`) and its data. A run offers the plain loop's step, the
hybrid trainer over the same model and optimizer, flat get/set of the parameters (for
Lookahead) and validation.

:data:`LONG_WORKLOADS` are the entries for long-run studies (thousands of steps, AdamW). A
workload may record learning rates tuned for it (:attr:`Workload.tuned`, :meth:`Task.tuned_lr`)
so that a run at its budget can skip the sweep.

Torch and JAX are imported only when a workload of theirs is built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs
import numpy as np

from hpcore.bench import data
from hpcore.bench.numpy_mlp import MLP, SoftmaxRegression
from hpcore.bench.runs import JaxRun, NumpyRun, TorchRun

__all__ = ["LONG_WORKLOADS", "TUNED_SEED", "WORKLOADS", "Task", "Workload", "get_task",
           "torch_available"]

_SCHEDULES = ("constant", "cosine", "wsd")  # what Task.build accepts
# The seed the recorded rates (Workload.tuned) were tuned on: hpcore.bench.long_study's
# TUNING_SEED, never a seed a study reports.
TUNED_SEED = 100


def torch_available() -> bool:
    """Whether PyTorch can be imported."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _torch_batches(x: np.ndarray, y: np.ndarray, batch_size: int, shape: tuple[int, ...] = ()):
    import torch

    def make(seed: int) -> Iterator[tuple]:
        for xb, yb in data.batches(x, y, batch_size, seed):
            xt = torch.from_numpy(xb)
            yield (xt.reshape(len(xb), *shape) if shape else xt), torch.from_numpy(yb)

    return make


def _ce(model: Any, batch: tuple) -> Any:
    import torch

    x, y = batch
    logits = model(x)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def _mse(model: Any, batch: tuple) -> Any:
    """Mean squared error between the reconstruction of ``x`` and its target (``x`` itself)."""
    import torch

    x, target = batch
    return torch.nn.functional.mse_loss(model(x), target)


def _mse_val(model: Any, val: tuple) -> tuple[float, float]:
    """Validation of an autoencoder: ``(MSE, 0.0)``. There is no accuracy for a
    reconstruction; the metric slot holds 0.0 rather than the loss again, so that nothing
    reading it as an accuracy (higher is better) is misled."""
    return float(_mse(model, val)), 0.0


def _torch_autoencoder() -> Any:
    """MLP autoencoder 784-128-32-128-784, ReLU hidden layers, sigmoid output in [0, 1]."""
    import torch

    nn = torch.nn
    return nn.Sequential(
        nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 32), nn.ReLU(),
        nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 784), nn.Sigmoid(),
    )


def _torch_mlp(n_in: int, n_hidden: int, n_out: int, act: str) -> Callable[[], Any]:
    def make() -> Any:
        import torch

        a = torch.nn.Tanh() if act == "tanh" else torch.nn.ReLU()
        return torch.nn.Sequential(torch.nn.Linear(n_in, n_hidden), a,
                                   torch.nn.Linear(n_hidden, n_out))

    return make


def _torch_cnn() -> Any:
    import torch

    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 8 x 14 x 14
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 16 x 7 x 7
        nn.Flatten(), nn.Linear(16 * 7 * 7, 10),
    )


def _char_transformer(vocab: int, seq_len: int, d_model: int = 48, layers: int = 2) -> Any:
    import torch

    nn = torch.nn

    class CharTransformer(nn.Module):
        """Decoder-only character model: token + position embeddings, causal pre-LN blocks."""

        def __init__(self) -> None:
            super().__init__()
            self.tok = nn.Embedding(vocab, d_model)
            self.pos = nn.Parameter(torch.zeros(seq_len, d_model))
            block = nn.TransformerEncoderLayer(d_model, nhead=4, dim_feedforward=2 * d_model,
                                               dropout=0.0, batch_first=True, norm_first=True)
            self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(d_model)
            self.head = nn.Linear(d_model, vocab)
            self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(seq_len),
                                 persistent=False)

        def forward(self, x: Any) -> Any:
            t = x.shape[1]
            h = self.tok(x) + self.pos[:t]
            h = self.blocks(h, mask=self.mask[:t, :t], is_causal=True)
            return self.head(self.norm(h))

    return CharTransformer()


# ---------------------------------------------------------------------------- builders
def _numpy_mlp_digits(seed, optimizer, lr, steps, schedule):
    return NumpyRun(MLP(64, 64, 10), data.load_digits_split(seed), optimizer, lr, steps,
                    schedule, seed, 32)


def _numpy_softmax_bc(seed, optimizer, lr, steps, schedule):
    return NumpyRun(SoftmaxRegression(30, 2), data.load_breast_cancer_split(seed), optimizer, lr,
                    steps, schedule, seed, 32)


def _torch_mlp_digits(seed, optimizer, lr, steps, schedule):
    import torch

    x, y, xv, yv = data.load_digits_split(seed)
    return TorchRun(_torch_mlp(64, 64, 10, "tanh"), _ce, _torch_batches(x, y, 32),
                    (torch.from_numpy(xv), torch.from_numpy(yv)), optimizer, lr, steps,
                    schedule, seed)


def _torch_mlp_mnist(seed, optimizer, lr, steps, schedule):
    import torch

    x, y, xv, yv = data.load_mnist()
    return TorchRun(_torch_mlp(784, 128, 10, "relu"), _ce, _torch_batches(x, y, 64),
                    (torch.from_numpy(xv), torch.from_numpy(yv)), optimizer, lr, steps,
                    schedule, seed)


def _torch_cnn_mnist(seed, optimizer, lr, steps, schedule, n_val=500):
    import torch

    x, y, xv, yv = data.load_mnist()
    xv, yv = xv[:n_val], yv[:n_val]
    return TorchRun(_torch_cnn, _ce, _torch_batches(x, y, 32, (1, 28, 28)),
                    (torch.from_numpy(xv).reshape(-1, 1, 28, 28), torch.from_numpy(yv)),
                    optimizer, lr, steps, schedule, seed)


def _torch_cnn_mnist_long(seed, optimizer, lr, steps, schedule):
    """The CNN with all 2,000 validation images: on 500 the loss's plateau moved by 20-50%
    between evaluations, and the frontier read that noise (benchmarks/RESULTS.md)."""
    return _torch_cnn_mnist(seed, optimizer, lr, steps, schedule, n_val=2000)


def _mnist_pixels(x: np.ndarray) -> np.ndarray:
    """MNIST as :func:`data.load_mnist` returns it (normalised with mean 0.1307, std 0.3081)
    back to pixel intensities in [0, 1], the range of the autoencoder's sigmoid output."""
    return np.clip(x * np.float32(0.3081) + np.float32(0.1307), 0.0, 1.0).astype(np.float32)


def _torch_ae_mnist(seed, optimizer, lr, steps, schedule):
    import torch

    x, _, xv, _ = data.load_mnist()
    x, xv = _mnist_pixels(x), _mnist_pixels(xv)
    val = torch.from_numpy(xv)
    return TorchRun(_torch_autoencoder, _mse, _torch_batches(x, x, 64), (val, val),
                    optimizer, lr, steps, schedule, seed, val_fn=_mse_val)


_SEQ = 32


def _torch_char_transformer(seed, optimizer, lr, steps, schedule):
    import torch

    corpus = data.load_shakespeare()

    def batches(s: int) -> Iterator[tuple]:
        for xb, yb in corpus.windows("train", _SEQ, 16, s):
            yield torch.from_numpy(xb), torch.from_numpy(yb)

    xv, yv = corpus.fixed_windows("val", _SEQ, 128)
    return TorchRun(lambda: _char_transformer(corpus.vocab_size, _SEQ), _ce, batches,
                    (torch.from_numpy(xv), torch.from_numpy(yv)), optimizer, lr, steps,
                    schedule, seed)


def _jax_mlp_digits(seed, optimizer, lr, steps, schedule):
    import jax
    import jax.numpy as jnp

    def init(key: Any) -> dict:
        k1, k2 = jax.random.split(key)
        return {"w1": jax.random.normal(k1, (64, 64)) / 8.0, "b1": jnp.zeros(64),
                "w2": jax.random.normal(k2, (64, 10)) / 8.0, "b2": jnp.zeros(10)}

    def logits(p: dict, x: Any) -> Any:
        return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    return JaxRun(init, logits, data.load_digits_split(seed), optimizer, lr, steps, schedule,
                  seed, 32)


# ---------------------------------------------------------------------------- registry
@attrs.frozen
class Workload:
    """What is trained: a model, its data, the optimizers and learning-rate grids it is run with.

    Attributes:
        name: registry key, ``<framework>-<model>-<data>``.
        framework: ``"numpy"``, ``"torch"`` or ``"jax"``.
        description: one line for tables.
        lr_grids: optimizer name -> learning rates the baseline's sweep tries.
        steps: the suite's step budget for this workload.
        eval_every: steps between two validation points.
        builder: ``(seed, optimizer, lr, steps, schedule) -> run``.
        tuned: ``(optimizer, schedule) -> learning rate`` tuned for this workload at its
            budget ``steps`` on :data:`TUNED_SEED` (the plain loop's sweep over the grid);
            empty where none was recorded.
    """

    name: str
    framework: str
    description: str
    lr_grids: dict[str, tuple[float, ...]]
    steps: int
    eval_every: int
    builder: Callable[..., Any] = attrs.field(repr=False)
    tuned: dict[tuple[str, str], float] = attrs.field(factory=dict)

    @property
    def optimizers(self) -> tuple[str, ...]:
        return tuple(self.lr_grids)

    def task(self, optimizer: str) -> Task:
        """This workload with ``optimizer`` bound."""
        if optimizer not in self.lr_grids:
            msg = (f"workload {self.name!r} runs with {', '.join(self.lr_grids)}, not {optimizer!r}")
            raise ValueError(msg)
        return Task(self, optimizer)


@attrs.frozen
class Task:
    """A workload with its optimizer chosen: what one time-to-target comparison runs."""

    workload: Workload
    optimizer: str

    @property
    def name(self) -> str:
        return f"{self.workload.name}-{self.optimizer}"

    @property
    def lr_grid(self) -> tuple[float, ...]:
        return self.workload.lr_grids[self.optimizer]

    @property
    def eval_every(self) -> int:
        return self.workload.eval_every

    def tuned_lr(self, schedule: str) -> float | None:
        """The rate recorded for this optimizer and ``schedule`` (tuned at the workload's
        budget on :data:`TUNED_SEED`), or ``None`` where none was: a sweep must pick one."""
        return self.workload.tuned.get((self.optimizer, schedule))

    def build(self, *, seed: int, lr: float, steps: int, schedule: str = "constant") -> Any:
        """A fresh run at the seed's initial point (schedule ``"constant"``, ``"cosine"`` or
        ``"wsd"``)."""
        if schedule not in _SCHEDULES:
            msg = f"schedule must be 'constant', 'cosine' or 'wsd' (got {schedule!r})"
            raise ValueError(msg)
        return self.workload.builder(seed, self.optimizer, lr, steps, schedule)


_SGD = (0.01, 0.03, 0.1, 0.3)
_ADAM = (3e-4, 1e-3, 3e-3, 1e-2)

# Rates of torch-chartf-long from hpcore.bench.long_study.tune: the plain loop's sweep over the
# workload's grid (1e-3 to 9e-3) on seed 100 (TUNED_SEED), 5,000 steps (its budget), as
#     python benchmarks/long_runs.py --workloads torch-chartf-long --schedules constant
# runs it (--schedules wsd, cosine for the others). Final validation losses, 2026-12-02:
# constant 1.866 1.806 1.787 1.789 1.796 1.819; wsd 1.834 1.727 1.709 1.704 1.707 1.706;
# cosine 1.979 1.805 1.751 1.724 1.714 1.716.
_CHARTF_LONG_TUNED = {
    ("adamw", "constant"): 3e-3,
    ("adamw", "wsd"): 4.5e-3,
    ("adamw", "cosine"): 6e-3,
}

WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    Workload("numpy-mlp-digits", "numpy", "NumPy MLP 64-64-10 (tanh) on digits, batch 32",
             {"sgd": (0.01, 0.02, 0.05, 0.1, 0.2), "adam": _ADAM}, 1500, 25, _numpy_mlp_digits),
    Workload("torch-mlp-digits", "torch", "PyTorch MLP 64-64-10 (tanh) on digits, batch 32",
             {"sgd": _SGD, "adam": _ADAM}, 1500, 25, _torch_mlp_digits),
    Workload("torch-mlp-mnist", "torch",
             "PyTorch MLP 784-128-10 (ReLU) on MNIST (12k train / 2k val), batch 64",
             {"sgd": (0.01, 0.03, 0.1), "adam": (3e-4, 1e-3, 3e-3)}, 600, 25, _torch_mlp_mnist),
    Workload("torch-cnn-mnist", "torch",
             "PyTorch CNN (2 conv 8/16 ch + linear) on MNIST (12k train / 500 val), batch 32",
             {"sgd": (0.01, 0.03, 0.1), "adam": (3e-4, 1e-3, 3e-3)}, 400, 50, _torch_cnn_mnist),
    Workload("torch-chartf-shakespeare", "torch",
             "PyTorch char transformer (2 pre-LN blocks, d=48, ctx 32) on Shakespeare, batch 16",
             {"adam": (1e-3, 3e-3, 1e-2, 3e-2)}, 400, 50, _torch_char_transformer),
    Workload("jax-mlp-digits", "jax", "JAX MLP 64-64-10 (tanh) on digits, batch 32",
             {"sgd": (0.01, 0.03, 0.1, 0.3), "adam": (1e-3, 3e-3, 1e-2)}, 800, 25,
             _jax_mlp_digits),
    Workload("numpy-softmax-breastcancer", "numpy",
             "NumPy softmax regression on breast-cancer (sklearn), batch 32",
             {"sgd": _SGD, "adam": (1e-3, 3e-3, 1e-2, 3e-2)}, 1000, 25, _numpy_softmax_bc),
    # long-run studies
    Workload("torch-chartf-long", "torch",
             "PyTorch char transformer (2 pre-LN blocks, d=48, ctx 32) on Shakespeare, "
             "batch 16, AdamW, long run",
             {"adamw": (1e-3, 2e-3, 3e-3, 4.5e-3, 6e-3, 9e-3)}, 5000, 100, _torch_char_transformer,
             tuned=_CHARTF_LONG_TUNED),
    Workload("torch-cnn-mnist-long", "torch",
             "PyTorch CNN (2 conv 8/16 ch + linear) on MNIST (12k train / 2k val), batch 32, "
             "AdamW, long run",
             {"adamw": (1e-3, 2e-3, 4e-3)}, 4000, 100, _torch_cnn_mnist_long),
    Workload("torch-ae-mnist", "torch",
             "PyTorch MLP autoencoder 784-128-32-128-784 (ReLU, sigmoid) on MNIST pixels "
             "(12k train / 2k val), batch 64, MSE",
             {"adamw": (1e-3, 2e-3, 4e-3)}, 4000, 100, _torch_ae_mnist),
)}

LONG_WORKLOADS = ("torch-chartf-long", "torch-cnn-mnist-long", "torch-ae-mnist")

SUITE_DEFAULT = ("torch-mlp-mnist", "torch-cnn-mnist", "torch-chartf-shakespeare",
                 "jax-mlp-digits", "numpy-softmax-breastcancer")


def get_task(name: str, optimizer: str) -> Task:
    """The registered workload ``name`` with ``optimizer`` bound.

    Raises:
        ValueError: unknown workload (the message lists the known ones) or optimizer.
    """
    if name not in WORKLOADS:
        msg = f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}"
        raise ValueError(msg)
    return WORKLOADS[name].task(optimizer)
