"""JAX adapter: the hybrid trainer around a parameter pytree, an optax optimizer and a loss.

JAX arrays are immutable, so the engine works on a NumPy float32 host buffer holding the
raveled parameters (``jax.flatten_util.ravel_pytree``). After each full step the adapter
writes the new parameters into that buffer in place; after the engine moves it (a predicted
step, a rollback) ``commit_params`` unravels it back into the pytree. The full step
(``value_and_grad`` + ``tx.update`` + ``optax.apply_updates``) and the forward-only loss are
each jitted once.

Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> from hpcore.adapters.jax import HybridTrainer
    >>> def loss_fn(params, batch):
    ...     return jnp.sum((params["w"] - batch) ** 2)
    >>> trainer = HybridTrainer({"w": jnp.zeros(2)}, optax.sgd(0.1), loss_fn)
    >>> result = trainer.step(jnp.ones(2))
    >>> result.phase.value, round(result.loss, 3)
    ('warmup', 2.0)
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
    msg = (
        "hpcore.adapters.jax needs JAX and optax; install them with "
        'pip install "hybrid-predict-trainer[jax]"'
    )
    raise ImportError(msg) from exc

import numpy as np

from hpcore.adapters._jit_clock import CLOCK
from hpcore.config import HybridTrainerConfig
from hpcore.engine import HybridEngine
from hpcore.port import FullStepOutput
from hpcore.trainer import TrainerBase

__all__ = ["HybridTrainer", "JaxPort"]

LossFn = Callable[[Any, Any], Any]

# optax states whose ``count`` drives a learning-rate schedule (advanced by predicted steps);
# the counts of the moment estimates (ScaleByAdamState...) are left alone.
_SCHEDULE_STATES = (
    optax.ScaleByScheduleState,
    optax.InjectHyperparamsState,
    optax.InjectStatefulHyperparamsState,
)


def _check_params(params: Any) -> None:
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    if not leaves:
        msg = "params has no leaves: there is nothing to train"
        raise ValueError(msg)
    for path, leaf in leaves:
        where = "params" + jax.tree_util.keystr(path)
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or not hasattr(leaf, "shape"):
            msg = f"{where} is a {type(leaf).__name__}, not an array; make every leaf a jnp.float32 array"
            raise ValueError(msg)
        if dtype != jnp.float32:
            msg = (
                f"{where} has dtype {dtype}; the hybrid trainer needs every leaf in float32 "
                "(cast with jax.tree_util.tree_map(lambda x: x.astype(jnp.float32), params))"
            )
            raise ValueError(msg)
    if sum(int(np.prod(leaf.shape)) for _, leaf in leaves) == 0:
        msg = "params holds only empty arrays: there is nothing to train"
        raise ValueError(msg)


def _checked_loss(loss_fn: LossFn) -> LossFn:
    """``loss_fn`` with its result checked once per trace (free at run time)."""

    def checked(params: Any, batch: Any) -> jax.Array:
        out = loss_fn(params, batch)
        if not isinstance(out, jax.Array):
            msg = (
                f"loss_fn must return a scalar JAX array computed from params "
                f"(got {type(out).__name__})"
            )
            raise TypeError(msg)
        if out.size != 1:
            msg = (
                f"loss_fn must return a scalar (got shape {tuple(out.shape)}); "
                "reduce it, e.g. with .mean()"
            )
            raise ValueError(msg)
        if not jnp.issubdtype(out.dtype, jnp.floating):
            msg = f"loss_fn must return a floating-point scalar (got dtype {out.dtype})"
            raise TypeError(msg)
        return jnp.reshape(out, ())

    return checked


def _tree_norm(tree: Any) -> jax.Array:
    """Euclidean norm of all leaves together (what optax calls the global norm)."""
    return jnp.sqrt(sum(jnp.vdot(x, x) for x in jax.tree_util.tree_leaves(tree)))


def _with_schedule_counts(state: Any, ref: Any, count: Callable[[Any, Any], Any]) -> Any:
    """``state`` with every schedule state's count replaced by ``count(node, ref_node)``,
    ``ref`` a state of the same structure walked alongside (the moments untouched)."""
    if isinstance(state, _SCHEDULE_STATES):
        fields = {f: _with_schedule_counts(getattr(state, f), getattr(ref, f), count)
                  for f in state._fields if f != "count"}
        return state._replace(count=count(state, ref), **fields)
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(_with_schedule_counts(s, r, count)
                             for s, r in zip(state, ref, strict=True)))
    if isinstance(state, (tuple, list)):
        return type(state)(_with_schedule_counts(s, r, count) for s, r in zip(state, ref, strict=True))
    if isinstance(state, dict):
        return {k: _with_schedule_counts(v, ref[k], count) for k, v in state.items()}
    return state


def _advance_schedules(state: Any) -> Any:
    """``state`` with every schedule count one step further (the moments untouched)."""
    return _with_schedule_counts(state, state, lambda s, _r: optax.safe_int32_increment(s.count))


def _schedule_counts_from(now: Any, state: Any) -> Any:
    """``state`` with every schedule count taken from ``now`` (a state of the same structure)."""
    return _with_schedule_counts(state, now, lambda _s, r: r.count)


class JaxPort:
    """The engine's port over a parameter pytree, an optax transformation and a loss.

    Args:
        params: any pytree of float32 arrays.
        tx: an ``optax.GradientTransformation``.
        loss_fn: ``(params, batch) -> scalar``.
    """

    forward_costs_backward = False

    def __init__(self, params: Any, tx: optax.GradientTransformation, loss_fn: LossFn) -> None:
        _check_params(params)
        CLOCK.install()
        flat, unravel = ravel_pytree(params)
        self.tx = tx
        self.loss_fn = loss_fn
        self._unravel = unravel
        self.params = jax.tree_util.tree_map(jnp.asarray, params)
        self.opt_state = tx.init(self.params)
        self.buffer = np.array(flat, dtype=np.float32)  # (N,) float32, the engine's theta
        checked = _checked_loss(loss_fn)

        def update(params: Any, opt_state: Any, batch: Any, norm: bool) -> tuple:
            loss, grads = jax.value_and_grad(checked)(params, batch)
            updates, new_state = tx.update(grads, opt_state, params)
            new_params = optax.apply_updates(params, updates)
            # Never apply an update from a non-finite loss (or gradient, where its norm is
            # taken), decided in the compiled call: the host takes the result before waiting
            # for it (a small step ran about 30 us slower when the old arrays outlived the
            # wait for the loss). The norm costs a lean step 10-20 us on a small model.
            ok = jnp.isfinite(loss)
            grad_norm = _tree_norm(grads) if norm else jnp.nan
            if norm:
                ok = ok & jnp.isfinite(grad_norm)
            keep = functools.partial(jax.tree_util.tree_map, lambda n, o: jnp.where(ok, n, o))
            return keep(new_params, params), keep(new_state, opt_state), loss, grad_norm

        def train_step(params: Any, opt_state: Any, batch: Any) -> tuple:
            new_params, new_state, loss, grad_norm = update(params, opt_state, batch, True)
            # The flat vector, the loss and the gradient norm come out of the same compiled
            # call as one array: one dispatch and one device-to-host transfer per step.
            scalars = jnp.stack([loss, grad_norm]).astype(jnp.float32)
            packed = jnp.concatenate([ravel_pytree(new_params)[0], scalars])
            return new_params, new_state, packed

        def lean_step(params: Any, opt_state: Any, batch: Any) -> tuple:
            return update(params, opt_state, batch, False)[:3]

        self._train_step = jax.jit(train_step)
        self._lean_step = jax.jit(lean_step)
        self._forward = jax.jit(checked)
        self._unravel_jit = jax.jit(unravel)
        self._ravel_jit = jax.jit(lambda p: ravel_pytree(p)[0])
        self._stale = False  # lean steps moved params past the flat buffer

    def flat_params(self) -> np.ndarray:
        return self.buffer

    def compile_seconds(self) -> float:
        """JAX's JIT compilation seconds so far in this process: the engine leaves a port
        call in which JAX compiled out of its cost model (a one-off cost)."""
        return CLOCK.seconds

    def full_step(self, batch: Any) -> FullStepOutput:
        # A non-finite loss or gradient leaves params and state as they were (in the call).
        self.params, self.opt_state, packed = self._train_step(self.params, self.opt_state, batch)
        packed = np.asarray(packed)
        n = self.buffer.shape[0]
        loss, grad_norm = float(packed[n]), float(packed[n + 1])
        if math.isfinite(loss) and math.isfinite(grad_norm):
            self.buffer[...] = packed[:n]
            self._stale = False
        return FullStepOutput(loss, grad_norm)

    def lean_step(self, batch: Any) -> Any:
        """A full step for a dormant engine: the loss comes back as a scalar array JAX may
        still be computing (the engine reads it after its own bookkeeping), the flat buffer
        is left behind (:meth:`sync_flat` catches it up) and the gradient norm is not taken
        (a non-finite loss still leaves params and state as they were; a non-finite gradient
        under a finite loss shows in the next step's loss, which the engine guards)."""
        self.params, self.opt_state, loss = self._lean_step(self.params, self.opt_state, batch)
        self._stale = True
        return loss

    def sync_flat(self) -> None:
        """Copy the parameters into the flat buffer after lean steps."""
        if self._stale:
            self.buffer[...] = np.asarray(self._ravel_jit(self.params))
            self._stale = False

    def forward_loss(self, batch: Any) -> float:
        return float(self._forward(self.params, batch))

    def commit_params(self) -> None:
        # jnp.array copies: the pytree must not see later in-place writes to the buffer.
        self.params = self._unravel_jit(jnp.array(self.buffer, copy=True))
        self._stale = False

    def optimizer_state(self) -> Any:
        return self.opt_state  # immutable arrays: a reference is a snapshot

    def load_optimizer_state(self, state: Any) -> None:
        """Restore a saved state for a rollback: the moments come back, the schedules keep
        their counts (a schedule counts every step taken, as on the other adapters)."""
        self.opt_state = _schedule_counts_from(self.opt_state, state)

    def on_predicted_step(self) -> None:
        self.opt_state = _advance_schedules(self.opt_state)

    def all_reduce_mean(self, x: float) -> float:
        return x  # single process (multi-host JAX is not supported yet)


def _leaves(tree: Any) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _rebuild(like: Any, leaves: list[np.ndarray], what: str) -> Any:
    """A pytree shaped like ``like`` from saved leaves; shapes checked first."""
    old = jax.tree_util.tree_leaves(like)
    if len(old) != len(leaves) or any(np.shape(a) != np.shape(b) for a, b in zip(old, leaves, strict=False)):
        msg = f"checkpoint {what} does not match this trainer's (was the optimizer or model changed?)"
        raise ValueError(msg)
    treedef = jax.tree_util.tree_structure(like)
    return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(x) for x in leaves])


class HybridTrainer(TrainerBase):
    """Hybrid trainer for a JAX model: some steps are predicted instead of computed.

    Args:
        params: the initial parameters, any pytree of float32 arrays.
        tx: an ``optax.GradientTransformation`` (``optax.adam(1e-3)``...); its state is kept
            across predicted steps, and only schedule counts advance during them.
        loss_fn: ``(params, batch) -> scalar``; it is jitted, so keep it pure.
        config: the engine's configuration (defaults when omitted).

    Raises:
        ValueError: ``params`` is empty or has a leaf that is not a float32 array.
    """

    def __init__(
        self,
        params: Any,
        tx: optax.GradientTransformation,
        loss_fn: LossFn,
        config: HybridTrainerConfig | None = None,
    ) -> None:
        if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
            msg = f"tx must be an optax.GradientTransformation (got {type(tx).__name__})"
            raise ValueError(msg)
        if not callable(loss_fn):
            msg = f"loss_fn must be callable as loss_fn(params, batch) (got {type(loss_fn).__name__})"
            raise ValueError(msg)
        if config is None:
            config = HybridTrainerConfig()
        self._port = JaxPort(params, tx, loss_fn)
        self._engine = HybridEngine(self._port, config)

    @property
    def params(self) -> Any:
        """The current parameters, as a pytree shaped like the one passed in."""
        return self._port.params

    @property
    def opt_state(self) -> Any:
        """The current optax state."""
        return self._port.opt_state

    def state_dict(self) -> dict[str, Any]:
        """The engine's own state (phase, history, policy); save ``params`` and
        ``opt_state`` yourself as usual."""
        return self._engine.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the engine's state from :meth:`state_dict`."""
        self._engine.load_state_dict(state)

    def _checkpoint_state(self) -> dict[str, Any]:
        """Engine, parameters and optax state; pytrees are stored as their leaves."""
        engine = self._engine.state_dict()
        engine["saved_optimizer_state"] = _leaves(engine["saved_optimizer_state"])
        engine["probe"] = jax.tree_util.tree_map(np.asarray, engine["probe"])
        port = self._port
        return {"engine": engine, "params": port.buffer.copy(),
                "opt_state": _leaves(port.opt_state)}

    def _load_checkpoint_state(self, state: dict[str, Any]) -> None:
        port = self._port
        if np.shape(state["params"]) != port.buffer.shape:
            msg = f"checkpoint holds {np.shape(state['params'])} parameters, this model {port.buffer.shape}"
            raise ValueError(msg)
        opt_state = _rebuild(port.opt_state, state["opt_state"], "optimizer state")
        engine = dict(state["engine"])
        engine["saved_optimizer_state"] = _rebuild(port.opt_state, engine["saved_optimizer_state"],
                                                   "saved optimizer state")
        self._engine.load_state_dict(engine)
        port.opt_state = opt_state
        port.buffer[...] = state["params"]
        port.commit_params()
