"""Benchmark runs: one model, its optimizer and data, for each framework.

A run offers the plain loop's step, the hybrid trainer over the same model and optimizer,
flat get/set of the parameters (for Lookahead) and validation. Torch and JAX are imported
only when a run of theirs is built.

Optimizers: ``"sgd"`` (momentum 0.9), ``"adam"`` and ``"adamw"`` (weight decay 0.01).
Schedules: ``"constant"``, ``"cosine"`` (decay to 0 over ``steps``) and ``"wsd"``
(warmup-stable-decay, :func:`wsd_factor`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from hpcore.bench import data
from hpcore.bench.jit_clock import CLOCK as _CLOCK

__all__ = ["JaxRun", "NumpyRun", "TorchRun", "cross_entropy_accuracy", "wsd_factor"]

WEIGHT_DECAY = 0.01  # AdamW's decay, the same in every framework
WSD_WARMUP = 0.05  # fraction of the budget spent warming up linearly from 0
WSD_DECAY_START = 0.8  # fraction of the budget after which the rate decays linearly to 0


def _wsd_lengths(steps: int) -> tuple[float, float]:
    """Warmup length and decay length (in steps) of a WSD schedule over ``steps`` steps."""
    if steps < 1:
        msg = f"a wsd schedule needs steps >= 1 (got {steps})"
        raise ValueError(msg)
    return WSD_WARMUP * steps, steps - WSD_DECAY_START * steps


def wsd_factor(step: int, steps: int) -> float:
    """Warmup-stable-decay multiplier of the base learning rate at ``step`` of ``steps``.

    Linear from 0 at step 0 to 1 at 5% of ``steps``, 1 until 80% of ``steps``, then linear
    down to 0 at ``steps``; 0 after ``steps`` (a run past its budget does not go negative).
    The three pieces are one ``min`` because the warmup ramp is above 1 once warmup is over
    and the decay ramp is above 1 before decay starts.

    Example:
        >>> [wsd_factor(k, 100) for k in (0, 1, 50, 90, 100, 120)]
        [0.0, 0.2, 1.0, 0.5, 0.0, 0.0]
    """
    warm, decay = _wsd_lengths(steps)
    return max(0.0, min(step / warm, 1.0, (steps - step) / decay))


def _wsd_jax(lr: float, steps: int) -> Callable[[Any], Any]:
    """:func:`wsd_factor` times ``lr`` as an optax schedule (``count -> lr``, jittable)."""
    import jax.numpy as jnp

    warm, decay = _wsd_lengths(steps)

    def schedule(count: Any) -> Any:
        ramp = jnp.minimum(jnp.minimum(count / warm, 1.0), (steps - count) / decay)
        return lr * jnp.clip(ramp, 0.0, 1.0)

    return schedule


def _check_names(optimizer: str, schedule: str) -> None:
    """Refuse an optimizer or schedule no run knows (rather than silently running Adam)."""
    if optimizer not in ("sgd", "adam", "adamw"):
        msg = f"optimizer must be 'sgd', 'adam' or 'adamw' (got {optimizer!r})"
        raise ValueError(msg)
    if schedule not in ("constant", "cosine", "wsd"):
        msg = f"schedule must be 'constant', 'cosine' or 'wsd' (got {schedule!r})"
        raise ValueError(msg)


def _numpy_optimizer(optimizer: str, lr: float, steps: int, schedule: str) -> Any:
    """The :mod:`hpcore.optim` optimizer for ``optimizer`` with its rate or schedule.

    ``"adamw"`` is :class:`hpcore.optim.Adam` with ``weight_decay=0.01``: hpcore.optim has
    no AdamW, and its Adam's decay is L2 (added to the gradient, as ``torch.optim.Adam``),
    not decoupled as in ``torch.optim.AdamW`` / ``optax.adamw``.
    """
    from hpcore.optim import SGD, Adam, cosine_schedule

    _check_names(optimizer, schedule)
    rate: Any = lr
    if schedule == "cosine":
        rate = cosine_schedule(lr, steps)
    elif schedule == "wsd":
        _wsd_lengths(steps)  # refuse steps < 1 now, not at the first step
        rate = lambda k: lr * wsd_factor(k, steps)  # noqa: E731
    if optimizer == "sgd":
        return SGD(rate, momentum=0.9)
    return Adam(rate, weight_decay=WEIGHT_DECAY if optimizer == "adamw" else 0.0)


def _torch_optimizer(torch: Any, params: Any, optimizer: str, lr: float) -> Any:
    """``torch.optim`` SGD-momentum, Adam or AdamW (weight decay 0.01) over ``params``."""
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=WEIGHT_DECAY)
    return torch.optim.Adam(params, lr=lr)


def _torch_scheduler(torch: Any, opt: Any, steps: int, schedule: str) -> Any:
    """``CosineAnnealingLR``, a ``LambdaLR`` over :func:`wsd_factor`, or ``None`` (constant).

    The WSD lambda is a plain function, so ``LambdaLR.state_dict`` (checkpoints) skips it.
    """
    lr_scheduler = torch.optim.lr_scheduler
    if schedule == "cosine":
        return lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    if schedule == "wsd":
        _wsd_lengths(steps)
        return lr_scheduler.LambdaLR(opt, lambda k: wsd_factor(k, steps))
    return None


def _optax_transform(optimizer: str, lr: float, steps: int, schedule: str) -> Any:
    """``optax.sgd(momentum=0.9)``, ``optax.adam`` or ``optax.adamw(weight_decay=0.01)``
    with a constant rate, ``optax.cosine_decay_schedule`` or the WSD schedule."""
    import optax

    rate: Any = lr
    if schedule == "cosine":
        rate = optax.cosine_decay_schedule(lr, steps)
    elif schedule == "wsd":
        rate = _wsd_jax(lr, steps)
    if optimizer == "sgd":
        return optax.sgd(rate, momentum=0.9)
    if optimizer == "adamw":
        return optax.adamw(rate, weight_decay=WEIGHT_DECAY)
    return optax.adam(rate)


def cross_entropy_accuracy(model: Any, val: tuple) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of a classifier ``model`` on ``val = (x, labels)``
    (logits of any leading shape, the class axis last): :class:`TorchRun`'s default."""
    import torch

    with torch.no_grad():
        x, y = val
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 y.reshape(-1))
        acc = (logits.argmax(-1) == y).float().mean()
    return float(loss), float(acc)


class NumpyRun:
    """A NumPy model over a flat float32 vector with an :mod:`hpcore.optim` optimizer."""

    def __init__(self, model: Any, split: tuple, optimizer: str, lr: float, steps: int,
                 schedule: str, seed: int, batch_size: int) -> None:
        self.model = model
        self.x, self.y, self.xv, self.yv = split
        self.params = model.init(seed)
        self.opt = _numpy_optimizer(optimizer, lr, steps, schedule)
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
    """A ``torch.nn.Module`` with ``torch.optim`` SGD-momentum, Adam or AdamW and an optional
    ``CosineAnnealingLR`` or WSD ``LambdaLR`` (stepped every step, predicted ones included).

    ``val_fn(model, val) -> (loss, metric)`` validates; it defaults to
    :func:`cross_entropy_accuracy`, and a run with another loss (an autoencoder's MSE)
    passes its own so that validation measures what training minimises.
    """

    def __init__(self, make_model: Callable[[], Any], loss_fn: Callable, batches: Callable,
                 val: tuple, optimizer: str, lr: float, steps: int, schedule: str,
                 seed: int, val_fn: Callable[[Any, tuple], tuple[float, float]] | None = None,
                 ) -> None:
        import torch

        _check_names(optimizer, schedule)
        torch.manual_seed(seed)
        self.torch = torch
        self.model = make_model()
        self.loss_fn = loss_fn
        self.val_fn = val_fn if val_fn is not None else cross_entropy_accuracy
        self._batches = batches
        self.val = val
        self.seed = seed
        self.opt = _torch_optimizer(torch, self.model.parameters(), optimizer, lr)
        self.sched = _torch_scheduler(torch, self.opt, steps, schedule)
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
        """``(loss, metric)`` of the model on the validation set, by the run's ``val_fn``."""
        with self.torch.no_grad():
            loss, metric = self.val_fn(self.model, self.val)
        return float(loss), float(metric)


class JaxRun:
    """A JAX parameter pytree with ``optax.sgd(momentum=0.9)``, ``optax.adam`` or
    ``optax.adamw``, constant, ``optax.cosine_decay_schedule`` or WSD; the plain step is one
    jitted function."""

    def __init__(self, init: Callable, logits: Callable, split: tuple, optimizer: str,
                 lr: float, steps: int, schedule: str, seed: int, batch_size: int) -> None:
        import jax
        import jax.numpy as jnp
        import optax
        from jax.flatten_util import ravel_pytree

        _check_names(optimizer, schedule)
        _CLOCK.install()
        self.jax, self.jnp = jax, jnp
        self.x, self.y, xv, yv = split
        self.xv, self.yv = jnp.asarray(xv), jnp.asarray(yv)
        self.seed, self.batch_size = seed, batch_size
        self.tx = _optax_transform(optimizer, lr, steps, schedule)
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
