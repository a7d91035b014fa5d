"""JAX adapter: :class:`HybridOptimizer` over any optax transformation; your loop stays yours.

JAX arrays are immutable, so the core works on a NumPy float32 host copy of the raveled
parameters (``jax.flatten_util.ravel_pytree``), brought up to date only where the core reads
it (observed steps, jumps) and unraveled back after the core moves it. The update
(``tx.update`` + ``optax.apply_updates``) is jitted once; a non-finite loss or gradient leaves
params and state as they were, decided on the device and counted at the next observed step.

Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from hpcore.adapters.jax import HybridOptimizer
    >>> def loss_fn(params, x):
    ...     return jnp.sum((params["w"] - x) ** 2)
    >>> opt = HybridOptimizer(optax.sgd(0.1), {"w": jnp.zeros(2)})
    >>> for _ in range(3):
    ...     if opt.need_grads:
    ...         loss, grads = jax.value_and_grad(loss_fn)(opt.params, jnp.ones(2))
    ...         params = opt.step(grads, loss)
    ...     else:
    ...         params = opt.step()
    >>> opt.statistics().backward_passes
    3
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

try:
    import jax
    import jax.numpy as jnp
    import optax
    from jax.flatten_util import ravel_pytree
except ImportError as exc:  # pragma: no cover - exercised only without jax
    msg = ('hpcore.adapters.jax needs JAX and optax; install them with '
           'pip install "hybrid-predict-trainer[jax]"')
    raise ImportError(msg) from exc

import numpy as np

from hpcore.adapters._optax_state import (
    advance_moment_counts,
    advance_schedules,
    check_params,
    schedule_counts_from,
)
from hpcore.config import HybridTrainerConfig, config_or_default
from hpcore.core import HybridCore, group_offsets
from hpcore.types import StepResult
from hpcore.wrapper import WrapperBase

__all__ = ["HybridOptimizer", "HybridTrainer", "HybridTrainerConfig"]


def _tree_norm(tree: Any) -> jax.Array:
    return jnp.sqrt(sum(jnp.vdot(x, x) for x in jax.tree_util.tree_leaves(tree)))


class _Port:
    """The core's view of the parameters and the optax state held by the wrapper."""

    def __init__(self, wrapper: HybridOptimizer) -> None:
        self.w = wrapper

    def optimizer_state(self, reuse: Any = None) -> Any:
        return self.w.opt_state  # immutable arrays: a reference is a snapshot

    def load_optimizer_state(self, state: Any) -> None:
        """The moments come back; schedules keep their counts (they count every step)."""
        self.w.opt_state = schedule_counts_from(self.w.opt_state, state)

    def advance_steps(self, steps: int) -> None:
        self.w.opt_state = advance_moment_counts(self.w.opt_state, steps)

    def commit_params(self) -> None:
        # jnp.array copies: the pytree must not see later in-place writes to the buffer.
        self.w._params = self.w._unravel(jnp.array(self.w.buffer, copy=True))
        self.w._stale = False

    def sync_params(self) -> None:
        if self.w._stale:
            self.w.buffer[...] = np.asarray(self.w._ravel(self.w._params))
            self.w._stale = False

    def all_reduce_mean(self, values: tuple[float, ...]) -> tuple[float, ...]:
        return values  # single process (multi-host JAX is not supported yet)


class HybridOptimizer(WrapperBase):
    """Some steps of the optax transformation ``tx`` are predicted instead of computed.

    Args:
        tx: any ``optax.GradientTransformation``; its state is kept across predicted steps,
            where only schedule counts advance.
        params: the initial parameters, a pytree of float32 arrays.
        config: the controller's configuration (defaults when omitted).
        probe: optional callable ``probe(params) -> scalar``, a forward-only loss on a fixed
            probe set; called only at checks and judgements.

    Raises:
        ValueError: ``tx`` is not a transformation, or ``params`` is empty or not float32.
    """

    def __init__(self, tx: optax.GradientTransformation, params: Any,
                 config: HybridTrainerConfig | None = None, *,
                 probe: Callable[[Any], Any] | None = None) -> None:
        if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
            msg = f"tx must be an optax.GradientTransformation (got {type(tx).__name__})"
            raise ValueError(msg)
        config = config_or_default(config)
        check_params(params)
        flat, unravel = ravel_pytree(params)
        self.tx = tx
        self._params = jax.tree_util.tree_map(jnp.asarray, params)
        self._treedef = jax.tree_util.tree_structure(self._params)
        self.opt_state = tx.init(self._params)
        self.buffer = np.array(flat, dtype=np.float32)  # (N,) float32, the core's theta
        self._stale = False  # params moved past the buffer
        self._bad = jnp.zeros((), jnp.int32)  # skipped steps not yet reported (on device)
        self._unravel = jax.jit(unravel)
        self._ravel = jax.jit(lambda p: ravel_pytree(p)[0])

        def update(params: Any, opt_state: Any, grads: Any, loss: Any, bad: Any) -> tuple:
            updates, new_state = tx.update(grads, opt_state, params)
            norm = _tree_norm(grads)
            ok = jnp.isfinite(norm) & jnp.isfinite(loss)
            keep = functools.partial(jax.tree_util.tree_map, lambda n, o: jnp.where(ok, n, o))
            new_params = optax.apply_updates(params, updates)
            return keep(new_params, params), keep(new_state, opt_state), norm, bad + (~ok)

        self._update = jax.jit(update)
        sizes = [int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(self._params)]
        self._user_probe = probe
        self._core = HybridCore(self.buffer, _Port(self), config,
                                probe=None if probe is None else self._probe,
                                offsets=group_offsets([s for s in sizes if s > 0]))

    @property
    def params(self) -> Any:
        """The current parameters, a pytree shaped like the one passed in."""
        return self._params

    def _probe(self) -> float:
        return float(self._user_probe(self._params))

    def step(self, grads: Any = None, loss: Any = None) -> Any:
        """One training step; returns the new parameters.

        When :attr:`need_grads`: with the gradients (a pytree like ``params``) and the loss
        (read only where a decision needs it). Otherwise bare: the parameters move along the
        jump. :attr:`last_result` holds what the step did.
        """
        if not self._core.need_grads:
            if grads is not None:
                msg = "this step is predicted (need_grads is False): call step() without gradients"
                raise RuntimeError(msg)
            self.last_result = self._core.predicted()
            self.opt_state = advance_schedules(self.opt_state)
            self._after_step()
            return self._params
        if grads is None:
            msg = "this step needs gradients (need_grads is True): call step(grads, loss)"
            raise RuntimeError(msg)
        if jax.tree_util.tree_structure(grads) != self._treedef:
            msg = (f"grads must be a pytree shaped like params (got {jax.tree_util.tree_structure(grads)}, "
                   f"expected {self._treedef})")
            raise ValueError(msg)
        if any(np.shape(g) != np.shape(p) for g, p in zip(
                jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(self._params), strict=True)):
            msg = "grads must have the shapes of params, leaf for leaf"
            raise ValueError(msg)
        loss_arr = jnp.asarray(jnp.nan if loss is None else loss, jnp.float32)
        if loss_arr.size != 1:
            msg = f"loss must be a scalar (got shape {loss_arr.shape})"
            raise ValueError(msg)
        if loss is None:
            loss_arr = jnp.zeros((), jnp.float32)
        self._core.before_full()
        self._params, self.opt_state, norm, self._bad = self._update(
            self._params, self.opt_state, grads, loss_arr.reshape(()), self._bad)
        self._stale = True
        value, grad_norm = math.nan, math.nan
        if self._core.reads_loss:
            bad = int(self._bad)
            if bad:
                self._core.record_bad_steps(bad)
                self._bad = jnp.zeros((), jnp.int32)
            value = math.nan if loss is None else float(loss_arr)
            grad_norm = float(norm)
        self.last_result = self._core.after_full(value, grad_norm)
        self._after_step()
        return self._params

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Parameters, optax state (as leaves) and hybrid state: everything to resume."""
        self._core.port.sync_params()
        hybrid = self._core.state_dict()
        hybrid["saved_optimizer_state"] = [np.asarray(x) for x in
                                           jax.tree_util.tree_leaves(hybrid["saved_optimizer_state"])]
        return {"params": self.buffer.copy(),
                "opt_state": [np.asarray(x) for x in jax.tree_util.tree_leaves(self.opt_state)],
                "hybrid": hybrid}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; a refused state (``ValueError``) changes nothing."""
        if not isinstance(state, dict) or set(state) != {"params", "opt_state", "hybrid"}:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            msg = f"not a HybridOptimizer state dict (keys {got}; expected hybrid, opt_state, params)"
            raise ValueError(msg)
        if np.shape(state["params"]) != self.buffer.shape:
            msg = f"state holds {np.shape(state['params'])} parameters, this model {self.buffer.shape}"
            raise ValueError(msg)
        opt_state = _rebuild(self.opt_state, state["opt_state"], "optimizer state")
        if not isinstance(state["hybrid"], dict):
            msg = "the state's 'hybrid' part is not a dict"
            raise ValueError(msg)
        hybrid = dict(state["hybrid"])
        hybrid["saved_optimizer_state"] = _rebuild(self.opt_state, hybrid["saved_optimizer_state"],
                                                   "saved optimizer state")
        self._core.load_state_dict(hybrid)
        self.opt_state = opt_state
        self.buffer[...] = state["params"]
        self._core.port.commit_params()


def _rebuild(like: Any, leaves: list[Any], what: str) -> Any:
    """A pytree shaped like ``like`` from saved leaves; shapes checked first."""
    old = jax.tree_util.tree_leaves(like)
    if not isinstance(leaves, (list, tuple)) or len(old) != len(leaves) or any(
            np.shape(a) != np.shape(b) or np.asarray(b).dtype != a.dtype
            or (np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(np.asarray(b))))
            for a, b in zip(old, leaves, strict=False)):
        msg = (f"the state's {what} does not match this optimizer's: leaf count, shapes, dtypes "
               "and finite values are checked (was tx or the model changed?)")
        raise ValueError(msg)
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like),
                                        [jnp.asarray(x) for x in leaves])


def _checked_loss(loss_fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], jax.Array]:
    """``loss_fn`` with its result checked once per trace (free at run time)."""

    def checked(params: Any, batch: Any) -> jax.Array:
        out = loss_fn(params, batch)
        if not isinstance(out, jax.Array):
            msg = (f"loss_fn must return a scalar JAX array computed from params "
                   f"(got {type(out).__name__})")
            raise TypeError(msg)
        if out.size != 1:
            msg = (f"loss_fn must return a scalar (got shape {tuple(out.shape)}); "
                   "reduce it, e.g. with .mean()")
            raise ValueError(msg)
        if not jnp.issubdtype(out.dtype, jnp.floating):
            msg = f"loss_fn must return a floating-point scalar (got dtype {out.dtype})"
            raise TypeError(msg)
        return jnp.reshape(out, ())

    return checked


class HybridTrainer(WrapperBase):
    """Convenience over :class:`HybridOptimizer`: ``step(batch)`` runs the whole step.

    Args:
        params: the initial parameters (a pytree of float32 arrays).
        tx: an optax transformation.
        loss_fn: ``(params, batch) -> scalar``; jitted with its gradient, so keep it pure.
        config: the controller's configuration.
        probe: as in :class:`HybridOptimizer`.
    """

    def __init__(self, params: Any, tx: optax.GradientTransformation, loss_fn: Callable[[Any, Any], Any],
                 config: HybridTrainerConfig | None = None, *,
                 probe: Callable[[Any], Any] | None = None) -> None:
        if not callable(loss_fn):
            msg = f"loss_fn must be callable as loss_fn(params, batch) (got {type(loss_fn).__name__})"
            raise ValueError(msg)
        self.optimizer = HybridOptimizer(tx, params, config, probe=probe)
        self._core = self.optimizer._core
        self._grad = jax.jit(jax.value_and_grad(_checked_loss(loss_fn)))
        self.state_dict = self.optimizer.state_dict
        self.load_state_dict = self.optimizer.load_state_dict

    @property
    def params(self) -> Any:
        """The current parameters."""
        return self.optimizer.params

    def step(self, batch: Any) -> StepResult:
        """One training step on ``batch`` (a predicted step does not use it)."""
        if self.optimizer.need_grads:
            loss, grads = self._grad(self.optimizer.params, batch)
            self.optimizer.step(grads, loss)
        else:
            self.optimizer.step()
        return self.optimizer.last_result
