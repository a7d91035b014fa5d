"""Tests of hpcore.adapters.jax: the host buffer, port semantics, end-to-end accuracy."""

from __future__ import annotations

import math
import re
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="JAX is not installed (extra: [jax])")
optax = pytest.importorskip("optax", reason="optax is not installed (extra: [jax])")

import jax.numpy as jnp  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

from hpcore import HybridTrainerConfig  # noqa: E402
from hpcore.adapters.jax import HybridTrainer, JaxPort  # noqa: E402
from hpcore.bench.numpy_mlp import batches, load_digits_split  # noqa: E402
from hpcore.engine import HybridEngine  # noqa: E402
from hpcore.types import Phase  # noqa: E402

README = Path(__file__).resolve().parents[2] / "README.md"
STEPS = 1000  # the horizon at which the default config predicts steps (floor guard off)
SEEDS = (0, 1, 2)
UNGUARDED = HybridTrainerConfig(floor=None)  # jumps from the first decision point on


def init(seed: int) -> dict:
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    return {"w1": jax.random.normal(k1, (64, 64)) / 8.0, "b1": jnp.zeros(64),
            "w2": jax.random.normal(k2, (64, 10)) / 8.0, "b2": jnp.zeros(10)}


def logits(params: dict, x):
    return jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]


def loss_fn(params: dict, batch: tuple):
    x, y = batch
    return optax.softmax_cross_entropy_with_integer_labels(logits(params, x), y).mean()


def accuracy(params: dict, seed: int) -> float:
    _, _, x, y = load_digits_split(seed)
    return float((np.asarray(logits(params, x)).argmax(1) == y).mean())


def digit_batches(seed: int):
    x, y, _, _ = load_digits_split(seed)
    return batches(x, y, 32, seed)


def plain_loop(params, tx, steps: int, seed: int):
    """The canonical optax loop, jitted."""
    state = tx.init(params)

    @jax.jit
    def step(params, state, batch):
        grads = jax.grad(loss_fn)(params, batch)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for batch in islice(digit_batches(seed), steps):
        params, state = step(params, state, batch)
    return params


def flat(params) -> np.ndarray:
    return np.asarray(ravel_pytree(params)[0])


class TestBuffer:
    """The engine's host buffer and the parameter pytree stay in step."""

    def test_buffer_is_the_raveled_params(self):
        params = init(0)
        trainer = HybridTrainer(params, optax.adam(1e-3), loss_fn)
        theta = trainer.engine.theta
        assert isinstance(theta, np.ndarray) and theta.dtype == np.float32
        np.testing.assert_array_equal(theta, flat(params))
        trainer.step(next(digit_batches(0)))
        np.testing.assert_array_equal(theta, flat(trainer.params))
        assert not np.array_equal(theta, flat(params))

    def test_engine_writes_reach_the_pytree_on_commit(self):
        """A write through engine.theta is read in the params after commit, and not before."""
        trainer = HybridTrainer(init(0), optax.sgd(0.1), loss_fn)
        theta = trainer.engine.theta
        theta[0] = 123.5
        assert float(trainer.params["b1"][0]) == 0.0  # ravel order: b1 first (sorted keys)
        trainer._port.commit_params()
        assert float(trainer.params["b1"][0]) == 123.5
        theta[0] = 7.0  # the pytree is a copy: later buffer writes need another commit
        assert float(trainer.params["b1"][0]) == 123.5
        assert set(trainer.params) == {"w1", "b1", "w2", "b2"}
        assert trainer.params["w1"].shape == (64, 64)


class TestErrors:
    """Parameters and losses the adapter cannot serve fail at once with a clear message."""

    def test_no_parameters(self):
        with pytest.raises(ValueError, match=r"params has no leaves: there is nothing to train"):
            HybridTrainer({}, optax.sgd(0.1), loss_fn)

    def test_non_float32_leaf_is_named(self):
        params = {"w": jnp.zeros(3), "steps": jnp.zeros(2, jnp.int32)}
        with pytest.raises(ValueError, match=re.escape("params['steps'] has dtype int32")):
            HybridTrainer(params, optax.sgd(0.1), loss_fn)

    def test_mixed_dtypes_name_the_leaf(self):
        params = {"a": jnp.zeros(3), "b": np.zeros(2, np.float64)}
        with pytest.raises(ValueError, match=re.escape("params['b'] has dtype float64")):
            HybridTrainer(params, optax.sgd(0.1), loss_fn)

    def test_non_array_leaf(self):
        with pytest.raises(ValueError, match=re.escape("params['s'] is a float, not an array")):
            HybridTrainer({"w": jnp.zeros(3), "s": 1.0}, optax.sgd(0.1), loss_fn)

    def test_not_an_optax_transformation(self):
        with pytest.raises(ValueError, match=r"tx must be an optax.GradientTransformation"):
            HybridTrainer(init(0), object(), loss_fn)

    def test_non_scalar_loss(self):
        trainer = HybridTrainer(init(0), optax.sgd(0.1), lambda p, b: logits(p, b[0]).sum(1))
        msg = "loss_fn must return a scalar (got shape (32,)); reduce it, e.g. with .mean()"
        with pytest.raises(ValueError, match=re.escape(msg)):
            trainer.step(next(digit_batches(0)))

    def test_loss_that_is_not_an_array(self):
        trainer = HybridTrainer(init(0), optax.sgd(0.1), lambda p, b: 1.5)
        msg = "loss_fn must return a scalar JAX array computed from params (got float)"
        with pytest.raises(TypeError, match=re.escape(msg)):
            trainer.step(next(digit_batches(0)))


class TestPlainLoopParity:
    """Until the first prediction the hybrid trainer is the canonical optax loop, bit for bit."""

    @pytest.mark.parametrize("make_tx", [lambda: optax.adam(1e-3),
                                         lambda: optax.sgd(0.05, momentum=0.9)],
                             ids=["adam", "sgd"])
    def test_warmup_is_bit_identical(self, make_tx):
        steps = 150
        plain = plain_loop(init(3), make_tx(), steps, seed=3)
        trainer = HybridTrainer(init(3), make_tx(), loss_fn)
        for batch in islice(digit_batches(3), steps):
            trainer.step(batch)
        assert trainer.statistics().predicted_steps == 0
        for k in plain:
            np.testing.assert_array_equal(np.asarray(trainer.params[k]), np.asarray(plain[k]))


class TestPort:
    """The port's contract with the engine."""

    def test_optimizer_state_round_trip(self):
        port = JaxPort(init(0), optax.adam(1e-3), loss_fn)
        it = digit_batches(0)
        port.full_step(next(it))
        saved_state, saved_theta = port.optimizer_state(), port.buffer.copy()
        batch = next(it)
        port.full_step(batch)
        after_one = port.buffer.copy()
        for _ in range(2):
            port.buffer[...] = saved_theta
            port.commit_params()
            port.load_optimizer_state(saved_state)
            port.full_step(batch)
            np.testing.assert_array_equal(port.buffer, after_one)

    def test_a_rollback_keeps_the_schedule_and_restores_the_moments(self):
        """``load_optimizer_state`` (a rollback) brings the moments back and leaves each
        schedule's count where it is: a schedule counts every step taken, as on the other
        adapters (restoring its count would set it back by the rolled-back steps)."""
        tx = optax.chain(optax.trace(decay=0.9),
                         optax.scale_by_schedule(optax.cosine_decay_schedule(0.05, 100)),
                         optax.scale(-1.0))
        port = JaxPort(init(0), tx, loss_fn)
        it = digit_batches(0)
        port.full_step(next(it))
        saved = port.optimizer_state()
        for _ in range(5):
            port.full_step(next(it))
        port.load_optimizer_state(saved)
        trace, schedule, _ = port.opt_state
        assert int(schedule.count) == 6
        for now, then in zip(jax.tree_util.tree_leaves(trace), jax.tree_util.tree_leaves(saved[0]),
                             strict=True):
            np.testing.assert_array_equal(np.asarray(now), np.asarray(then))

    @pytest.mark.parametrize("step", ["full_step", "lean_step"])
    def test_non_finite_loss_leaves_params_and_state(self, step):
        port = JaxPort(init(0), optax.adam(1e-3), lambda p, b: loss_fn(p, b) * jnp.nan)
        before, state = port.buffer.copy(), port.opt_state
        out = getattr(port, step)(next(digit_batches(0)))
        assert math.isnan(float(out) if step == "lean_step" else out.loss)
        port.sync_flat()
        np.testing.assert_array_equal(port.buffer, before)
        for a, b in zip(jax.tree_util.tree_leaves(port.opt_state),
                        jax.tree_util.tree_leaves(state), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    @pytest.mark.parametrize("make_tx", [lambda: optax.adam(1e-3),
                                         lambda: optax.sgd(0.05, momentum=0.9)],
                             ids=["adam", "sgd"])
    def test_lean_step_is_the_full_steps_update(self, make_tx):
        """A dormant engine's lean step (no norm, no flat copy) moves params and state as a
        full step does; the flat buffer lags until ``sync_flat``, and a full step or a
        commit brings it back in line."""
        full, mixed = JaxPort(init(0), make_tx(), loss_fn), JaxPort(init(0), make_tx(), loss_fn)
        for i, batch in enumerate(islice(digit_batches(0), 7)):
            expected = full.full_step(batch).loss
            if i % 2:
                before = mixed.buffer.copy()
                assert float(mixed.lean_step(batch)) == pytest.approx(expected, rel=1e-6)
                np.testing.assert_array_equal(mixed.buffer, before)  # not copied yet
                mixed.sync_flat()
            else:
                assert mixed.full_step(batch).loss == pytest.approx(expected, rel=1e-6)
            np.testing.assert_allclose(mixed.buffer, full.buffer, rtol=1e-6, atol=1e-7)
            np.testing.assert_array_equal(flat(mixed.params), mixed.buffer)
        mixed.lean_step(batch)
        mixed.commit_params()  # the buffer is the truth after a commit
        np.testing.assert_array_equal(flat(mixed.params), mixed.buffer)

    def test_forward_loss(self):
        port = JaxPort(init(0), optax.adam(1e-3), loss_fn)
        batch = next(digit_batches(0))
        assert port.forward_loss(batch) == pytest.approx(float(loss_fn(init(0), batch)), rel=1e-6)
        np.testing.assert_array_equal(port.buffer, flat(init(0)))

    def test_predicted_steps_advance_schedules_only(self):
        """A schedule's count advances on a predicted step; Adam's moments and count do not."""
        schedule = optax.linear_schedule(1e-2, 0.0, transition_steps=100)
        port = JaxPort(init(0), optax.adam(schedule), loss_fn)
        port.full_step(next(digit_batches(0)))
        adam_state, sched_state = port.opt_state[0], port.opt_state[-1]
        port.on_predicted_step()
        port.on_predicted_step()
        assert int(port.opt_state[-1].count) == int(sched_state.count) + 2 == 3
        assert port.opt_state[0] is adam_state or int(port.opt_state[0].count) == 1
        np.testing.assert_array_equal(port.opt_state[0].mu["w1"], adam_state.mu["w1"])

    def test_injected_hyperparams_advance(self):
        tx = optax.inject_hyperparams(optax.adam)(learning_rate=optax.linear_schedule(1.0, 0.0, 10))
        port = JaxPort(init(0), tx, loss_fn)
        port.on_predicted_step()
        assert int(port.opt_state.count) == 1
        assert int(port.opt_state.inner_state[0].count) == 0

    def test_all_reduce_mean_is_identity(self):
        assert JaxPort(init(0), optax.sgd(0.1), loss_fn).all_reduce_mean(2.5) == 2.5


class TestHybridTrainer:
    """The user-facing surface."""

    def test_surface(self, tmp_path):
        trainer = HybridTrainer(init(0), optax.sgd(0.1), loss_fn)
        assert trainer.current_phase is Phase.WARMUP and trainer.current_step == 0
        result = trainer.step(next(digit_batches(0)))
        assert result.phase is Phase.WARMUP and not result.was_predicted
        assert trainer.current_step == 1
        assert trainer.statistics().backward_passes == 1
        assert trainer.export_metrics(tmp_path / "m.json").exists()
        assert isinstance(trainer.engine, HybridEngine)

    def test_checkpoint_after_lean_steps_holds_the_current_params(self, tmp_path):
        """Dormant from the first step (a run too short for the floor's slack), the trainer
        takes lean steps; a checkpoint between them still saves the parameters of now."""
        trainer = HybridTrainer(init(0), optax.adam(1e-3), loss_fn,
                                HybridTrainerConfig(total_steps=200))
        it = digit_batches(0)
        for batch in islice(it, 100):
            trainer.step(batch)
        for batch in islice(it, 8):  # up to the next lean step: one in eight is guarded
            if trainer._port._stale:
                break
            trainer.step(batch)
        assert trainer._port._stale  # the flat buffer lags behind the params
        assert trainer.statistics().dormant_steps == trainer.current_step
        path = trainer.save_checkpoint(tmp_path / "ckpt.npz")
        other = HybridTrainer(init(1), optax.adam(1e-3), loss_fn,
                              HybridTrainerConfig(total_steps=200))
        other.load_checkpoint(path)
        np.testing.assert_array_equal(flat(other.params), flat(trainer.params))

    def test_compilation_is_left_out_of_the_engines_costs(self):
        """JAX compiles the port's full and lean steps on their first calls, a one-off cost:
        those calls stay out of the engine's timers, so that its step time, its own cost and
        its guard interval are measured on compiled steps (counted, the lean step's
        compilation made a short-path step look dearer than a guarded one: interval 2)."""
        trainer = HybridTrainer(init(0), optax.sgd(0.05, momentum=0.9), loss_fn,
                                HybridTrainerConfig(total_steps=300))  # dormant throughout
        engine = trainer.engine
        first_choice = None
        for batch in islice(digit_batches(0), 150):
            trainer.step(batch)
            if first_choice is None and engine._guard_chosen:
                first_choice = engine._guard_interval
        stats = trainer.statistics()
        t = engine._timer
        assert stats.dormant_steps == 150
        assert t.jit > 0.05  # the full and the lean step compiled
        assert stats.wall_time_s < t.jit  # 150 compiled steps take less than compiling
        assert first_choice is not None and first_choice >= 16

    def test_a_compilation_on_the_short_path_is_left_out_of_its_timing(self):
        """A batch of a new shape (an epoch's last, partial one) makes JAX compile the lean
        step again in the middle of a run of short-path steps, which read no clock: that
        step's time goes to the JIT account, not into the lean steps' mean (billed, 0.1-0.3 s
        would read as a step of milliseconds for the rest of the run)."""
        trainer = HybridTrainer(init(0), optax.sgd(0.05, momentum=0.9), loss_fn,
                                HybridTrainerConfig(total_steps=400))  # dormant throughout
        engine = trainer.engine
        it = digit_batches(0)
        for batch in islice(it, 60):
            trainer.step(batch)
        while engine._lean_run < 3:  # into a run of short steps, two left after the next
            trainer.step(next(it))
        trainer.statistics()  # settled: the timers hold only what follows
        t = engine._timer
        jit, short_s, short_n = t.jit, t.short_s, t.short_n
        x, y = next(it)
        trainer.step((x[:17], y[:17]))  # compiles the lean step for 17 rows
        trainer.step(next(it))
        trainer.statistics()
        assert t.jit - jit > 0.02  # the compiling step's time, JAX's compile included
        assert t.short_n - short_n == 1  # the plain one
        assert t.short_s - short_s < 0.01  # a compiled step of this model: ~0.1 ms

    @pytest.mark.skipif(not hasattr(HybridEngine, "state_dict"), reason="engine state_dict pending")
    def test_resume_is_bit_identical(self):
        """Params, optax state and trainer state saved mid-run resume into the same trajectory."""
        trainer = HybridTrainer(init(0), optax.adam(1e-3), loss_fn, UNGUARDED)
        it = digit_batches(0)
        for batch in islice(it, 250):
            trainer.step(batch)
        other = HybridTrainer(trainer.params, optax.adam(1e-3), loss_fn, UNGUARDED)
        other._port.load_optimizer_state(trainer.opt_state)
        other.load_state_dict(trainer.state_dict())
        assert other.current_step == trainer.current_step == 250
        for batch in islice(it, 150):
            trainer.step(batch)
            other.step(batch)
        np.testing.assert_array_equal(trainer.engine.theta, other.engine.theta)
        assert trainer.statistics().predicted_steps == other.statistics().predicted_steps > 0


@pytest.mark.slow
class TestAccuracy:
    """Default config less the floor guard, 1000 steps, optax adam: the plain loop's accuracy
    within 1 point (the guard would make 1000 steps too short for jumps to be affordable)."""

    def test_matches_plain_loop(self):
        plain_acc, hybrid_acc, predicted, moved = [], [], [], []
        for seed in SEEDS:
            plain_acc.append(accuracy(plain_loop(init(seed), optax.adam(1e-3), STEPS, seed), seed))
            trainer = HybridTrainer(init(seed), optax.adam(1e-3), loss_fn, UNGUARDED)
            n_moved = 0
            for batch in islice(digit_batches(seed), STEPS):
                before = flat(trainer.params) if trainer.current_phase is Phase.PREDICT else None
                if trainer.step(batch).was_predicted:
                    n_moved += not np.array_equal(before, flat(trainer.params))
            hybrid_acc.append(accuracy(trainer.params, seed))
            predicted.append(trainer.statistics().predicted_steps)
            moved.append(n_moved)
        report = f"plain {plain_acc} hybrid {hybrid_acc} predicted {predicted} moved {moved}"
        print(f"jax mlp/adam: {report}")
        assert np.mean(hybrid_acc) >= np.mean(plain_acc) - 0.01, report
        assert min(predicted) > 0, report
        assert min(moved) > 0, report


class TestReadmeQuickStart:
    """The README's JAX quick start runs as written."""

    def test_runs(self, run_readme_block):
        assert "steps predicted" in run_readme_block("<!-- section:quickstart-jax -->")


def test_checkpoint_resume_is_bit_identical(tmp_path):
    """Params, optax state and engine saved mid-run continue identically in a new trainer."""
    import logging

    import structlog

    from hpcore.adapters.jax import HybridTrainer as JaxTrainer

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(64, 4)).astype(np.float32)
    ys = xs @ np.arange(1.0, 5.0, dtype=np.float32)

    def loss_fn(p, batch):
        x, y = batch
        return jnp.mean((x @ p["w"] + p["b"] - y) ** 2)

    # cost_model="steps": decisions that depend on losses alone, so two processes agree.
    cfg = HybridTrainerConfig(warmup_steps=20, full_steps=20, max_predict_steps=20,
                              correct_steps=10, cost_model="steps", floor=None)

    def make():
        return JaxTrainer({"w": jnp.zeros(4), "b": jnp.zeros(())}, optax.adam(0.05), loss_fn, cfg)

    def batch(i):
        idx = np.random.default_rng(i).integers(0, 64, size=8)
        return xs[idx], ys[idx]

    a = make()
    for i in range(90):
        a.step(batch(i))
    ckpt = a.save_checkpoint(tmp_path / "j.npz")
    b = make()
    b.load_checkpoint(ckpt)
    for i in range(90, 200):
        a.step(batch(i))
        b.step(batch(i))
    np.testing.assert_array_equal(a.engine.theta, b.engine.theta)
    assert a.statistics().predicted_steps == b.statistics().predicted_steps > 0
