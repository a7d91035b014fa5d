"""Tests of hpcore.adapters.jax: the host buffer, optax state, the user's loop, accuracy."""

from __future__ import annotations

import math
import re
from itertools import islice

import attrs
import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="JAX is not installed (extra: [jax])")
optax = pytest.importorskip("optax", reason="optax is not installed (extra: [jax])")

import jax.numpy as jnp  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

from hpcore import HybridTrainerConfig, LinearConfig  # noqa: E402
from hpcore.adapters.jax import HybridOptimizer, HybridTrainer  # noqa: E402
from hpcore.bench.numpy_mlp import batches, load_digits_split  # noqa: E402
from hpcore.types import Phase  # noqa: E402

STEPS = 1000  # the horizon at which the default config predicts steps (floor guard off)
SEEDS = (0, 1, 2)
UNGUARDED = HybridTrainerConfig(floor=None)  # jumps from the first decision point on
# Jumps within a few hundred steps of the digits MLP.
SMALL = HybridTrainerConfig(
    warmup_steps=50, full_steps=20, max_predict_steps=20, correct_steps=10, history_size=4,
    snapshot_interval=10, check_interval=10, predictor=LinearConfig(window=4), floor=None,
)


def init(seed: int) -> dict:
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    return {"w1": jax.random.normal(k1, (64, 64)) / 8.0, "b1": jnp.zeros(64),
            "w2": jax.random.normal(k2, (64, 10)) / 8.0, "b2": jnp.zeros(10)}


def logits(params: dict, x):
    return jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]


def loss_fn(params: dict, batch: tuple):
    x, y = batch
    return optax.softmax_cross_entropy_with_integer_labels(logits(params, x), y).mean()


value_and_grad = jax.jit(jax.value_and_grad(loss_fn))


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


def user_step(opt: HybridOptimizer, batch):
    """One step of the loop the JAX adapter documents."""
    if opt.need_grads:
        loss, grads = value_and_grad(opt.params, batch)
        return opt.step(grads, loss)
    return opt.step()


def until_predicted(opt: HybridOptimizer, it, limit: int = 500) -> None:
    """Full steps until the next step is a predicted one."""
    for _ in range(limit):
        if not opt.need_grads:
            return
        user_step(opt, next(it))
    raise AssertionError("no jump within the limit")


def flat(params) -> np.ndarray:
    return np.asarray(ravel_pytree(params)[0])


def same_result(a, b) -> None:
    """Two step results are the same, a ``nan`` loss (not read) included."""
    np.testing.assert_equal(attrs.astuple(a, recurse=False), attrs.astuple(b, recurse=False))


def leaves_equal(a, b) -> None:
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


class TestBuffer:
    """The core's host buffer and the parameter pytree stay in step."""

    def test_buffer_is_the_raveled_params(self):
        """The buffer starts as the raveled params; a state dict always holds the params of
        now, though the buffer is brought up to date only where the core reads it."""
        params = init(0)
        opt = HybridOptimizer(optax.adam(1e-3), params)
        assert isinstance(opt.buffer, np.ndarray) and opt.buffer.dtype == np.float32
        np.testing.assert_array_equal(opt.buffer, flat(params))
        for batch in islice(digit_batches(0), 3):
            user_step(opt, batch)
            np.testing.assert_array_equal(opt.state_dict()["params"], flat(opt.params))
        assert not np.array_equal(flat(opt.params), flat(params))
        assert set(opt.params) == {"w1", "b1", "w2", "b2"} and opt.params["w1"].shape == (64, 64)

    def test_predicted_steps_reach_the_pytree(self):
        """A predicted step moves the params; params handed out earlier stay as they were
        (the pytree is a copy of the buffer, not a view of it)."""
        opt = HybridOptimizer(optax.adam(1e-3), init(0), SMALL)
        until_predicted(opt, digit_batches(0))
        earlier = opt.params
        kept = flat(earlier).copy()
        moved = opt.step()
        assert opt.last_result.was_predicted
        assert not np.array_equal(flat(moved), kept)
        np.testing.assert_array_equal(flat(earlier), kept)
        opt.step()
        np.testing.assert_array_equal(flat(earlier), kept)
        np.testing.assert_array_equal(opt.state_dict()["params"], flat(opt.params))


class TestErrors:
    """Parameters and losses the adapter cannot serve fail at once with a clear message."""

    def test_no_parameters(self):
        """An empty pytree is refused."""
        with pytest.raises(ValueError, match=r"params has no leaves: there is nothing to train"):
            HybridTrainer({}, optax.sgd(0.1), loss_fn)

    def test_non_float32_leaf_is_named(self):
        """An integer leaf is named with its dtype."""
        params = {"w": jnp.zeros(3), "steps": jnp.zeros(2, jnp.int32)}
        with pytest.raises(ValueError, match=re.escape("params['steps'] has dtype int32")):
            HybridTrainer(params, optax.sgd(0.1), loss_fn)

    def test_mixed_dtypes_name_the_leaf(self):
        """A float64 leaf among float32 ones is named."""
        params = {"a": jnp.zeros(3), "b": np.zeros(2, np.float64)}
        with pytest.raises(ValueError, match=re.escape("params['b'] has dtype float64")):
            HybridTrainer(params, optax.sgd(0.1), loss_fn)

    def test_non_array_leaf(self):
        """A Python number as a leaf is named."""
        with pytest.raises(ValueError, match=re.escape("params['s'] is a float, not an array")):
            HybridTrainer({"w": jnp.zeros(3), "s": 1.0}, optax.sgd(0.1), loss_fn)

    def test_not_an_optax_transformation(self):
        """Only an optax transformation drives the parameters."""
        with pytest.raises(ValueError, match=r"tx must be an optax.GradientTransformation \(got object\)"):
            HybridTrainer(init(0), object(), loss_fn)

    def test_bad_config_and_loss_fn(self):
        """A config that is not a HybridTrainerConfig, a loss_fn that is not callable."""
        with pytest.raises(ValueError, match=r"config must be a HybridTrainerConfig \(got dict\)"):
            HybridOptimizer(optax.sgd(0.1), init(0), {"floor": None})
        with pytest.raises(ValueError, match=r"loss_fn must be callable as loss_fn\(params, "
                                             r"batch\) \(got int\)"):
            HybridTrainer(init(0), optax.sgd(0.1), 3)

    def test_non_scalar_loss(self):
        """A loss_fn returning a vector is named, with what to do about it."""
        trainer = HybridTrainer(init(0), optax.sgd(0.1), lambda p, b: logits(p, b[0]).sum(1))
        msg = "loss_fn must return a scalar (got shape (32,)); reduce it, e.g. with .mean()"
        with pytest.raises(ValueError, match=re.escape(msg)):
            trainer.step(next(digit_batches(0)))
        assert trainer.current_step == 0

    def test_loss_that_is_not_an_array(self):
        """A loss_fn returning a Python number (no gradient reaches params) is refused
        instead of training with zero gradients."""
        trainer = HybridTrainer(init(0), optax.sgd(0.1), lambda p, b: 1.5)
        msg = "loss_fn must return a scalar JAX array computed from params (got float)"
        with pytest.raises(TypeError, match=re.escape(msg)):
            trainer.step(next(digit_batches(0)))
        assert trainer.current_step == 0


class TestPlainLoopParity:
    """Until the first prediction the hybrid trainer is the canonical optax loop, bit for bit."""

    @pytest.mark.parametrize("make_tx", [lambda: optax.adam(1e-3),
                                         lambda: optax.sgd(0.05, momentum=0.9)],
                             ids=["adam", "sgd"])
    def test_full_steps_are_bit_identical(self, make_tx):
        """150 steps under the default floor guard (no jump yet) equal the plain loop's."""
        steps = 150
        plain = plain_loop(init(3), make_tx(), steps, seed=3)
        trainer = HybridTrainer(init(3), make_tx(), loss_fn)
        for batch in islice(digit_batches(3), steps):
            trainer.step(batch)
        assert trainer.statistics().predicted_steps == 0
        for k in plain:
            np.testing.assert_array_equal(np.asarray(trainer.params[k]), np.asarray(plain[k]))


class TestHybridOptimizer:
    """The user's loop around the optax transformation, and the optax state across jumps."""

    def test_user_loop_matches_the_trainer(self):
        """The documented loop takes the convenience trainer's steps exactly."""
        opt = HybridOptimizer(optax.adam(1e-3), init(0), SMALL)
        trainer = HybridTrainer(init(0), optax.adam(1e-3), loss_fn, SMALL)
        for a, b in zip(islice(digit_batches(0), 150), islice(digit_batches(0), 150),
                        strict=True):
            user_step(opt, a)
            same_result(trainer.step(b), opt.last_result)
        np.testing.assert_array_equal(flat(opt.params), flat(trainer.params))
        assert opt.statistics().predicted_steps > 0

    def test_step_of_the_wrong_kind_is_refused(self):
        """Gradients on a predicted step, none on a full one, or gradients of another
        shape, are refused."""
        opt = HybridOptimizer(optax.sgd(0.1), init(0), SMALL)
        batch = next(digit_batches(0))
        loss, grads = value_and_grad(opt.params, batch)
        with pytest.raises(RuntimeError, match=re.escape(
                "this step needs gradients (need_grads is True): call step(grads, loss)")):
            opt.step()
        with pytest.raises(ValueError, match=r"grads must be a pytree shaped like params"):
            opt.step({"w1": grads["w1"]}, loss)
        with pytest.raises(ValueError, match=r"grads must have the shapes of params, leaf for leaf"):
            opt.step({**grads, "b1": jnp.zeros(3)}, loss)
        with pytest.raises(ValueError, match=re.escape("loss must be a scalar (got shape (2,))")):
            opt.step(grads, jnp.ones(2))
        assert opt.current_step == 0
        until_predicted(opt, digit_batches(0))
        with pytest.raises(RuntimeError, match=re.escape(
                "this step is predicted (need_grads is False): call step() without gradients")):
            opt.step(grads, loss)
        assert opt.phase is Phase.PREDICT

    @pytest.mark.parametrize("poison", ["loss", "grads"])
    def test_non_finite_step_leaves_params_and_state(self, poison):
        """A non-finite loss or gradient leaves params and optax state as they were (decided
        on the device); it is counted as an event at the next observed step."""
        opt = HybridOptimizer(optax.adam(1e-3), init(0), SMALL)
        before, state = flat(opt.params), opt.opt_state
        loss, grads = value_and_grad(opt.params, next(digit_batches(0)))
        if poison == "loss":
            loss = loss * jnp.nan
        else:
            grads = {**grads, "b2": grads["b2"].at[0].set(jnp.inf)}
        opt.step(grads, loss)
        np.testing.assert_array_equal(flat(opt.params), before)
        leaves_equal(opt.opt_state, state)
        assert opt.current_step == 1
        it = digit_batches(1)
        while opt.statistics().observed_steps == 0:  # the warmup's first steps are not read
            assert opt.events == ()
            user_step(opt, next(it))
        assert opt.statistics().divergence_events == {"nan_inf": 1}

    def test_a_rollback_keeps_the_schedule_and_restores_the_moments(self):
        """A rolled-back jump brings back the params and the moments of its origin and
        leaves each schedule's count where it is: a schedule counts every step taken."""
        probes = []

        def probe(params):  # finite at the jump's origin, non-finite at the first check
            probes.append(flat(params))
            return 1.0 if len(probes) == 1 else math.nan

        tx = optax.chain(optax.trace(decay=0.9),
                         optax.scale_by_schedule(optax.cosine_decay_schedule(0.05, 1000)),
                         optax.scale(-1.0))
        opt = HybridOptimizer(tx, init(0), SMALL, probe=probe)
        it = digit_batches(0)
        until_predicted(opt, it)
        origin, saved = flat(opt.params), opt.opt_state
        results = []
        while not (results and results[-1].rolled_back):
            assert len(results) < SMALL.max_predict_steps, "no rollback"
            opt.step()
            results.append(opt.last_result)
        assert all(r.was_predicted for r in results) and len(probes) == 2
        np.testing.assert_array_equal(probes[0], origin)  # the origin's probe saw the origin
        np.testing.assert_array_equal(flat(opt.params), origin)
        trace, schedule, _ = opt.opt_state
        assert int(schedule.count) == opt.current_step > int(saved[1].count)
        leaves_equal(trace, saved[0])
        assert opt.phase is Phase.FULL and opt.jumps[-1].rolled_back

    def test_predicted_steps_advance_schedules_only(self):
        """A schedule's count advances on a predicted step; Adam's moments and count do not."""
        schedule = optax.linear_schedule(1e-2, 0.0, transition_steps=1000)
        opt = HybridOptimizer(optax.adam(schedule), init(0), SMALL)
        until_predicted(opt, digit_batches(0))
        adam_state, sched_state = opt.opt_state[0], opt.opt_state[-1]
        opt.step()
        opt.step()
        assert int(opt.opt_state[-1].count) == int(sched_state.count) + 2 == opt.current_step
        assert int(opt.opt_state[0].count) == int(adam_state.count)
        leaves_equal(opt.opt_state[0].mu, adam_state.mu)

    def test_injected_hyperparams_advance(self):
        """inject_hyperparams' count is a schedule's: it advances; the inner Adam's does not."""
        tx = optax.inject_hyperparams(optax.adam)(
            learning_rate=optax.linear_schedule(1e-2, 0.0, 1000))
        opt = HybridOptimizer(tx, init(0), SMALL)
        until_predicted(opt, digit_batches(0))
        full = opt.current_step
        opt.step()
        assert int(opt.opt_state.count) == full + 1
        assert int(opt.opt_state.inner_state[0].count) == full


class TestHybridTrainer:
    """The user-facing surface."""

    def test_surface(self, tmp_path):
        """step, phase, current_step, statistics, metrics and export_metrics work; an
        observed step reports its loss."""
        trainer = HybridTrainer(init(0), optax.sgd(0.1), loss_fn,
                                HybridTrainerConfig(floor=None, warmup_steps=0))
        assert trainer.phase is Phase.FULL and trainer.current_step == 0
        result = trainer.step(next(digit_batches(0)))
        assert result.phase is Phase.FULL and not result.was_predicted and result.step == 0
        batch = next(digit_batches(0))
        assert result.loss == pytest.approx(float(loss_fn(init(0), batch)), rel=1e-6)
        assert trainer.statistics().observed_steps == trainer.current_step == 1
        assert trainer.statistics().backward_passes == 1
        assert trainer.export_metrics(tmp_path / "m.json").exists()
        assert trainer.metrics()["statistics"]["total_steps"] == 1

    def test_checkpoint_after_unobserved_steps_holds_the_current_params(self, tmp_path):
        """Held back by the floor guard the trainer observes no step, so the host buffer
        lags behind the params; a checkpoint still saves the parameters of now."""
        trainer = HybridTrainer(init(0), optax.adam(1e-3), loss_fn,
                                HybridTrainerConfig(total_steps=200))
        for batch in islice(digit_batches(0), 100):
            trainer.step(batch)
        assert trainer.statistics().observed_steps == 0
        assert not np.array_equal(trainer.optimizer.buffer, flat(trainer.params))
        path = trainer.save_checkpoint(tmp_path / "ckpt.npz")
        other = HybridTrainer(init(1), optax.adam(1e-3), loss_fn,
                              HybridTrainerConfig(total_steps=200))
        other.load_checkpoint(path)
        np.testing.assert_array_equal(flat(other.params), flat(trainer.params))
        assert other.current_step == 100

    def test_resume_is_bit_identical(self):
        """Params, optax state and hybrid state loaded mid-run resume into the same
        trajectory."""
        trainer = HybridTrainer(init(0), optax.adam(1e-3), loss_fn, SMALL)
        it = digit_batches(0)
        for batch in islice(it, 120):
            trainer.step(batch)
        other = HybridTrainer(init(1), optax.adam(1e-3), loss_fn, SMALL)
        other.load_state_dict(trainer.state_dict())
        assert other.current_step == trainer.current_step == 120
        for batch in islice(it, 150):
            same_result(trainer.step(batch), other.step(batch))
        np.testing.assert_array_equal(flat(trainer.params), flat(other.params))
        assert trainer.statistics() == other.statistics()
        assert trainer.statistics().predicted_steps > 0

    def test_refused_state_changes_nothing(self):
        """A state of another model is refused and the trainer is left as it was."""
        trainer = HybridTrainer(init(0), optax.adam(1e-3), loss_fn, SMALL)
        for batch in islice(digit_batches(0), 5):
            trainer.step(batch)
        before = flat(trainer.params)
        small = HybridTrainer({"w": jnp.zeros(3)}, optax.adam(1e-3), loss_fn).state_dict()
        with pytest.raises(ValueError, match=re.escape("state holds (3,) parameters, this model (4810,)")):
            trainer.load_state_dict(small)
        np.testing.assert_array_equal(flat(trainer.params), before)
        assert trainer.current_step == 5


@pytest.mark.slow
class TestAccuracy:
    """Default config less the floor guard, 1000 steps, optax adam: the plain loop's accuracy
    within 1 point (the guard would make 1000 steps too short for jumps to be affordable)."""

    def test_matches_plain_loop(self):
        """Same step budget: accuracy within 1 point, predicted steps that moved the weights."""
        plain_acc, hybrid_acc, predicted, moved = [], [], [], []
        for seed in SEEDS:
            plain_acc.append(accuracy(plain_loop(init(seed), optax.adam(1e-3), STEPS, seed), seed))
            trainer = HybridTrainer(init(seed), optax.adam(1e-3), loss_fn, UNGUARDED)
            n_moved = 0
            for batch in islice(digit_batches(seed), STEPS):
                before = flat(trainer.params) if trainer.phase is Phase.PREDICT else None
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


@pytest.mark.slow
def test_checkpoint_resume_is_bit_identical(tmp_path):
    """Params, optax state and hybrid state saved to a file mid-run continue identically in
    a new trainer."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(64, 4)).astype(np.float32)
    ys = xs @ np.arange(1.0, 5.0, dtype=np.float32)

    def linear_loss(p, batch):
        x, y = batch
        return jnp.mean((x @ p["w"] + p["b"] - y) ** 2)

    cfg = HybridTrainerConfig(warmup_steps=20, full_steps=20, max_predict_steps=20,
                              correct_steps=10, history_size=4, snapshot_interval=5,
                              predictor=LinearConfig(window=4), floor=None)

    def make():
        return HybridTrainer({"w": jnp.zeros(4), "b": jnp.zeros(())}, optax.adam(0.05),
                             linear_loss, cfg)

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
    np.testing.assert_array_equal(flat(a.params), flat(b.params))
    assert a.statistics() == b.statistics()
    assert a.statistics().predicted_steps > 0


class TestOptimizerAtJump:
    @pytest.mark.parametrize("mode", ["keep", "advance"])
    def test_adams_count_counts_the_predicted_steps_only_when_told(self, mode):
        """``optimizer_at_jump="advance"``: ScaleByAdamState's count moves on by the
        predicted steps at the landing; a schedule's count moves on every step either way."""
        tx = optax.chain(optax.scale_by_adam(), optax.scale_by_schedule(lambda n: -1e-3))
        opt = HybridOptimizer(tx, init(0), attrs.evolve(SMALL, optimizer_at_jump=mode))
        it = digit_batches(0)
        until_predicted(opt, it)
        adam0, sched0 = int(opt.opt_state[0].count), int(opt.opt_state[1].count)
        predicted = 0
        while not opt.need_grads:
            opt.step()
            predicted += 1
        assert adam0 > 0 and predicted == SMALL.max_predict_steps
        assert int(opt.opt_state[0].count) == adam0 + (predicted if mode == "advance" else 0)
        assert int(opt.opt_state[1].count) == sched0 + predicted
