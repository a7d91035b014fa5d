"""Benchmark runs: one model, its optimizer and data, for each framework.

A run offers the plain loop's step, the hybrid trainer over the same model and optimizer,
flat get/set of the parameters (for Lookahead) and validation. Torch and JAX are imported
only when a run of theirs is built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from hpcore.bench import data
from hpcore.bench.jit_clock import CLOCK as _CLOCK

__all__ = ["JaxRun", "NumpyRun", "TorchRun"]


class NumpyRun:
    """A NumPy model over a flat float32 vector with an :mod:`hpcore.optim` optimizer."""

    def __init__(self, model: Any, split: tuple, optimizer: str, lr: float, steps: int,
                 schedule: str, seed: int, batch_size: int) -> None:
        from hpcore.optim import SGD, Adam, cosine_schedule

        self.model = model
        self.x, self.y, self.xv, self.yv = split
        self.params = model.init(seed)
        rate: Any = cosine_schedule(lr, steps) if schedule == "cosine" else lr
        self.opt = SGD(rate, momentum=0.9) if optimizer == "sgd" else Adam(rate)
        self.seed, self.batch_size = seed, batch_size
        self.trainer: Any = None

    def batches(self) -> Iterator[tuple]:
        return data.batches(self.x, self.y, self.batch_size, self.seed)

    def plain_step(self, batch: Any) -> None:
        _, grad = self.model.loss_and_grad(self.params, batch)
        self.opt.step(self.params, grad)

    def make_hybrid(self, config: Any) -> Any:
        """The hybrid trainer over these parameters and optimizer, one parameter group per
        layer tensor (as the torch and JAX adapters group them), no probe."""
        from hpcore.adapters.numpy import HybridTrainer

        sizes = [int(np.prod(s)) for s in self.model.shapes]
        self.trainer = HybridTrainer(self.params, self.model.loss_and_grad, self.opt, config,
                                     group_sizes=sizes)
        return self.trainer

    def get_flat(self) -> np.ndarray:
        return self.params.copy()

    def set_flat(self, v: np.ndarray) -> None:
        self.params[...] = v

    def validate(self) -> tuple[float, float]:
        return (self.model.loss(self.params, (self.xv, self.yv)),
                self.model.accuracy(self.params, self.xv, self.yv))


class TorchRun:
    """A ``torch.nn.Module`` with ``torch.optim`` SGD-momentum or Adam and an optional
    ``CosineAnnealingLR`` (stepped every step, predicted ones included)."""

    def __init__(self, make_model: Callable[[], Any], loss_fn: Callable, batches: Callable,
                 val: tuple, optimizer: str, lr: float, steps: int, schedule: str,
                 seed: int) -> None:
        import torch

        torch.manual_seed(seed)
        self.torch = torch
        self.model = make_model()
        self.loss_fn = loss_fn
        self._batches = batches
        self.val = val
        self.seed = seed
        if optimizer == "sgd":
            self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9)
        else:
            self.opt = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.sched = (torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=steps)
                      if schedule == "cosine" else None)
        self.trainer: Any = None
        self.device = torch.device("cpu")

    def batches(self) -> Iterator[tuple]:
        return self._batches(self.seed)

    def to(self, device: str) -> TorchRun:
        """Move the model, the validation set and every batch to ``device`` (before the
        hybrid trainer is made, while the optimizer holds no state)."""
        torch = self.torch
        self.model.to(device)
        self.val = tuple(v.to(device) for v in self.val)
        make = self._batches
        self._batches = lambda seed: (tuple(t.to(device) for t in b) for b in make(seed))
        self.device = torch.device(device)
        return self

    def sync(self) -> None:
        """Wait for the device's queued work (a no-op on the CPU)."""
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def plain_step(self, batch: Any) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model, batch)
        loss.backward()
        self.opt.step()
        if self.sched is not None:
            self.sched.step()

    def make_hybrid(self, config: Any) -> Any:
        from hpcore.adapters.torch import HybridTrainer

        self.trainer = HybridTrainer(self.model, self.opt, self.loss_fn, config,
                                     scheduler=self.sched)
        return self.trainer

    def get_flat(self) -> np.ndarray:
        vec = self.torch.nn.utils.parameters_to_vector(self.model.parameters())
        return vec.detach().cpu().numpy().copy()

    def set_flat(self, v: np.ndarray) -> None:
        with self.torch.no_grad():
            vec = self.torch.from_numpy(np.asarray(v, dtype=np.float32)).to(self.device)
            self.torch.nn.utils.vector_to_parameters(vec, self.model.parameters())

    def validate(self) -> tuple[float, float]:
        torch = self.torch
        with torch.no_grad():
            x, y = self.val
            logits = self.model(x)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                     y.reshape(-1))
            acc = (logits.argmax(-1) == y).float().mean()
        return float(loss), float(acc)


class JaxRun:
    """A JAX parameter pytree with ``optax.sgd(momentum=0.9)`` or ``optax.adam``, constant or
    ``optax.cosine_decay_schedule``; the plain step is one jitted function."""

    def __init__(self, init: Callable, logits: Callable, split: tuple, optimizer: str,
                 lr: float, steps: int, schedule: str, seed: int, batch_size: int) -> None:
        import jax
        import jax.numpy as jnp
        import optax
        from jax.flatten_util import ravel_pytree

        _CLOCK.install()
        self.jax, self.jnp = jax, jnp
        self.x, self.y, xv, yv = split
        self.xv, self.yv = jnp.asarray(xv), jnp.asarray(yv)
        self.seed, self.batch_size = seed, batch_size
        rate: Any = optax.cosine_decay_schedule(lr, steps) if schedule == "cosine" else lr
        self.tx = optax.sgd(rate, momentum=0.9) if optimizer == "sgd" else optax.adam(rate)
        self._params = init(jax.random.PRNGKey(seed))
        self.opt_state = self.tx.init(self._params)
        self._unravel = ravel_pytree(self._params)[1]

        def loss_fn(p: Any, batch: Any) -> Any:
            xb, yb = batch
            return optax.softmax_cross_entropy_with_integer_labels(logits(p, xb), yb).mean()

        def train_step(p: Any, s: Any, batch: Any) -> tuple:
            loss, grads = jax.value_and_grad(loss_fn)(p, batch)
            updates, s = self.tx.update(grads, s, p)
            return loss, optax.apply_updates(p, updates), s

        def evaluate(p: Any) -> tuple:
            z = logits(p, self.xv)
            loss = optax.softmax_cross_entropy_with_integer_labels(z, self.yv).mean()
            return loss, (z.argmax(-1) == self.yv).mean()

        self.loss_fn = loss_fn
        self._step = jax.jit(train_step)
        self._eval = jax.jit(evaluate)
        self.trainer: Any = None

    @property
    def params(self) -> Any:
        return self.trainer.params if self.trainer is not None else self._params

    def batches(self) -> Iterator[tuple]:
        for xb, yb in data.batches(self.x, self.y, self.batch_size, self.seed):
            yield self.jnp.asarray(xb), self.jnp.asarray(yb)

    def plain_step(self, batch: Any) -> None:
        loss, self._params, self.opt_state = self._step(self._params, self.opt_state, batch)
        float(loss)  # wait for the step (JAX dispatches asynchronously)

    def make_hybrid(self, config: Any) -> Any:
        from hpcore.adapters.jax import HybridTrainer

        self.trainer = HybridTrainer(self._params, self.tx, self.loss_fn, config)
        return self.trainer

    def get_flat(self) -> np.ndarray:
        from jax.flatten_util import ravel_pytree

        return np.asarray(ravel_pytree(self.params)[0], dtype=np.float32).copy()

    def set_flat(self, v: np.ndarray) -> None:
        self._params = self._unravel(self.jnp.asarray(np.asarray(v, dtype=np.float32)))

    def validate(self) -> tuple[float, float]:
        loss, acc = self._eval(self.params)
        return float(loss), float(acc)


# ---------------------------------------------------------------------------- torch models
