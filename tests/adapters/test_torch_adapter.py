"""Tests of hpcore.adapters.torch: flat layout, zero copy, port semantics, end-to-end accuracy."""

from __future__ import annotations

import copy
import math
import re
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (extra: [torch])")

from hpcore import HybridTrainerConfig  # noqa: E402
from hpcore.adapters.torch import HybridTrainer, TorchPort  # noqa: E402
from hpcore.bench.numpy_mlp import batches, load_digits_split  # noqa: E402
from hpcore.engine import HybridEngine  # noqa: E402
from hpcore.types import Phase  # noqa: E402

README = Path(__file__).resolve().parents[2] / "README.md"
STEPS = 1000  # the horizon at which the default config predicts steps (floor guard off)
UNGUARDED = HybridTrainerConfig(floor=None)  # jumps from the first decision point on
SEEDS = (0, 1, 2)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, 10))


def cnn(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Unflatten(1, (1, 8, 8)),
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 16, 10),
    )


def make_optimizer(name: str, model: torch.nn.Module) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=1e-3)
    return torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)


def loss_fn(model: torch.nn.Module, batch: tuple) -> torch.Tensor:
    x, y = batch
    return torch.nn.functional.cross_entropy(model(x), y)


def torch_batches(seed: int, batch_size: int = 32):
    x, y, _, _ = load_digits_split(seed)
    for xb, yb in batches(x, y, batch_size, seed):
        yield torch.from_numpy(xb), torch.from_numpy(yb)


def accuracy(model: torch.nn.Module, seed: int) -> float:
    _, _, x, y = load_digits_split(seed)
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def plain_loop(model, optimizer, steps: int, seed: int) -> None:
    torch.set_num_threads(1)
    for batch in islice(torch_batches(seed), steps):
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model, batch).backward()
        optimizer.step()


def flat_of(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def hybrid_run(arch, opt_name: str, seed: int, steps: int = STEPS):
    """Train with the default config less the floor guard; count predicted steps that moved
    the weights."""
    torch.set_num_threads(1)  # the engine's Numba kernels may reset OpenMP's thread count
    model = arch(seed)
    optimizer = make_optimizer(opt_name, model)
    trainer = HybridTrainer(model, optimizer, loss_fn, UNGUARDED)
    moved = 0
    for batch in islice(torch_batches(seed), steps):
        before = flat_of(model) if trainer.current_phase is Phase.PREDICT else None
        result = trainer.step(batch)
        if result.was_predicted and not torch.equal(before, flat_of(model)):
            moved += 1
    return model, trainer.statistics(), moved


class TestLayout:
    """The flat buffer and the engine's zero-copy view of it."""

    def test_parameters_are_views_of_one_buffer(self):
        """Every trainable p.data lies in the flat buffer, in registration order, values kept."""
        model = cnn(0)
        values = flat_of(model).clone()
        trainer = HybridTrainer(model, make_optimizer("sgd", model), loss_fn)
        flat = trainer.flat_params
        assert flat.dtype == torch.float32 and flat.is_contiguous()
        assert torch.equal(flat, values)
        offset = 0
        for p in model.parameters():
            assert p.data_ptr() == flat.data_ptr() + 4 * offset
            offset += p.numel()
        assert offset == flat.numel() == trainer.engine.theta.shape[0]

    def test_engine_writes_are_the_model_parameters(self):
        """A write through engine.theta is read in the parameter, and the reverse."""
        model = mlp(0)
        trainer = HybridTrainer(model, make_optimizer("sgd", model), loss_fn)
        theta = trainer.engine.theta
        assert isinstance(theta, np.ndarray)
        theta[0] = 123.5
        assert model[0].weight.reshape(-1)[0].item() == 123.5
        with torch.no_grad():
            model[2].bias[-1] = -7.25
        assert theta[-1] == -7.25
        theta[:] = 0.0
        assert all(bool((p == 0).all()) for p in model.parameters())

    def test_gradients_live_in_the_flat_grad_buffer(self):
        """After a full step every p.grad is a view of one flat gradient buffer."""
        model = mlp(0)
        trainer = HybridTrainer(model, make_optimizer("adam", model), loss_fn)
        trainer.step(next(torch_batches(0)))
        grad = trainer._port.flat_grad
        offset = 0
        for p in model.parameters():
            assert p.grad.data_ptr() == grad.data_ptr() + 4 * offset
            offset += p.numel()
        assert grad.abs().sum() > 0

    def test_frozen_parameters_stay_out(self):
        """Parameters with requires_grad=False keep their own storage."""
        model = mlp(0)
        model[0].weight.requires_grad_(False)
        frozen_ptr = model[0].weight.data_ptr()
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
        trainer = HybridTrainer(model, optimizer, loss_fn)
        assert model[0].weight.data_ptr() == frozen_ptr
        assert trainer.engine.theta.shape[0] == 64 + 64 * 10 + 10


class TestErrors:
    """Models and losses the adapter cannot serve fail at once, with a message that says why."""

    def test_no_trainable_parameters(self):
        model = torch.nn.Sequential(torch.nn.ReLU())
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        with pytest.raises(ValueError, match=r"Sequential has no trainable parameters"):
            HybridTrainer(model, optimizer, loss_fn)

    def test_mixed_dtypes_name_the_parameter(self):
        model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2).double())
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        msg = (
            "trainable parameters have mixed dtypes: '0.weight' is torch.float32, '1.weight' is "
            "torch.float64; one flat buffer needs a single dtype (call model.float())"
        )
        with pytest.raises(ValueError, match=re.escape(msg)):
            HybridTrainer(model, optimizer, loss_fn)

    def test_non_float32_parameters(self):
        model = torch.nn.Linear(4, 2).double()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        with pytest.raises(ValueError, match=r"parameter 'weight' is torch.float64; the hybrid trainer"):
            HybridTrainer(model, optimizer, loss_fn)

    def test_optimizer_parameter_outside_the_model(self):
        model = torch.nn.Linear(4, 2)
        stray = torch.nn.Parameter(torch.zeros(3))
        optimizer = torch.optim.SGD([*model.parameters(), stray], lr=0.1)
        with pytest.raises(ValueError, match=re.escape("param_groups[0]['params'][2] (shape (3,))")):
            HybridTrainer(model, optimizer, loss_fn)

    def test_non_scalar_loss(self):
        model = mlp(0)
        trainer = HybridTrainer(model, make_optimizer("sgd", model), lambda m, b: m(b[0]).sum(1))
        msg = "loss_fn must return a scalar tensor (got shape (32,)); reduce it, e.g. with .mean()"
        with pytest.raises(ValueError, match=re.escape(msg)):
            trainer.step(next(torch_batches(0)))

    def test_loss_that_is_not_a_tensor(self):
        model = mlp(0)
        trainer = HybridTrainer(model, make_optimizer("sgd", model), lambda m, b: 1.5)
        with pytest.raises(TypeError, match=r"loss_fn must return a scalar torch.Tensor \(got float\)"):
            trainer.step(next(torch_batches(0)))

    def test_loss_without_graph(self):
        model = mlp(0)

        def detached(m, b):
            with torch.no_grad():
                return loss_fn(m, b)

        trainer = HybridTrainer(model, make_optimizer("sgd", model), detached)
        with pytest.raises(ValueError, match=r"does not depend on the trainable parameters"):
            trainer.step(next(torch_batches(0)))

    def test_plateau_scheduler(self):
        model = mlp(0)
        optimizer = make_optimizer("sgd", model)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
        with pytest.raises(ValueError, match=r"ReduceLROnPlateau needs a metric"):
            HybridTrainer(model, optimizer, loss_fn, scheduler=scheduler)

    def test_model_cast_after_wrapping(self):
        model = mlp(0)
        trainer = HybridTrainer(model, make_optimizer("sgd", model), loss_fn)
        model.double()
        with pytest.raises(RuntimeError, match=r"parameter '0.weight' no longer lives in the"):
            trainer.step(next(torch_batches(0)))


class TestPlainLoopParity:
    """Until the first prediction the hybrid trainer is the user's own training loop, bit for bit."""

    @pytest.mark.parametrize("opt_name", ["sgd", "adam", "adamw"])
    def test_warmup_is_bit_identical(self, opt_name):
        steps = 150
        plain = mlp(3)
        plain_loop(plain, make_optimizer(opt_name, plain), steps, seed=3)
        model = mlp(3)
        optimizer = make_optimizer(opt_name, model)
        trainer = HybridTrainer(model, optimizer, loss_fn)
        for batch in islice(torch_batches(3), steps):
            optimizer.zero_grad(set_to_none=True)  # what a user's loop does: must not matter
            trainer.step(batch)
        assert trainer.statistics().predicted_steps == 0
        for p, q in zip(model.parameters(), plain.parameters(), strict=True):
            assert torch.equal(p, q)

    def test_existing_optimizer_state_is_kept(self):
        """Wrapping after some plain Adam steps continues exactly like the plain loop."""
        plain = mlp(4)
        plain_loop(plain, make_optimizer("adam", plain), 20, seed=4)
        model = mlp(4)
        optimizer = make_optimizer("adam", model)
        it = torch_batches(4)
        for batch in islice(it, 10):
            optimizer.zero_grad()
            loss_fn(model, batch).backward()
            optimizer.step()
        trainer = HybridTrainer(model, optimizer, loss_fn)
        for batch in islice(it, 10):
            trainer.step(batch)
        assert torch.equal(flat_of(model), flat_of(plain))


class TestPort:
    """The port's contract with the engine."""

    def test_gradient_norm_is_the_norm_of_the_gradient(self):
        """The full step's gradient norm (NumPy's dot over the shared float32 buffer on a
        CPU) is the norm of the gradients the backward pass left, in float64."""
        model = mlp(0)
        port = TorchPort(model, torch.optim.SGD(model.parameters(), lr=0.0), loss_fn)
        _, norm = port.full_step(next(torch_batches(0)))
        grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double()
        assert norm == pytest.approx(float(torch.linalg.vector_norm(grads)), rel=1e-5)

    def test_gradient_norm_overflow_is_not_finite_and_skips_the_update(self):
        """A gradient whose float32 sum of squares overflows reads as non-finite (as torch's
        own float32 norm does) and the optimizer does not step on it."""
        model = mlp(0)
        port = TorchPort(model, torch.optim.SGD(model.parameters(), lr=1e-30), loss_fn)
        before = port.flat.clone()

        def huge(m, batch):
            return 1e20 * loss_fn(m, batch)

        port.loss_fn = huge
        loss, norm = port.full_step(next(torch_batches(0)))
        assert math.isfinite(loss) and not math.isfinite(norm)
        assert torch.equal(port.flat, before)

    def test_optimizer_state_round_trip_keeps_views(self):
        """optimizer.load_state_dict keeps the parameter objects, so the views stay valid."""
        model = mlp(0)
        optimizer = make_optimizer("adam", model)
        port = TorchPort(model, optimizer, loss_fn)
        it = torch_batches(0)
        port.full_step(next(it))
        saved = port.optimizer_state()
        saved_params = port.flat.clone()
        batch = next(it)
        port.full_step(batch)
        after_one = port.flat.clone()
        # Restore twice: the saved copy must not be mutated by the steps in between.
        for _ in range(2):
            port.flat.copy_(saved_params)
            port.load_optimizer_state(saved)
            port.full_step(batch)
            assert torch.equal(port.flat, after_one)
        offset = 0
        for p in model.parameters():
            assert p.data_ptr() == port.flat.data_ptr() + 4 * offset
            assert p in optimizer.state
            offset += p.numel()

    def test_optimizer_state_is_a_copy(self):
        model = mlp(0)
        optimizer = make_optimizer("sgd", model)
        port = TorchPort(model, optimizer, loss_fn)
        it = torch_batches(0)
        port.full_step(next(it))
        saved = port.optimizer_state()
        kept = copy.deepcopy(saved)
        port.full_step(next(it))
        for k, v in kept["state"].items():
            assert torch.equal(saved["state"][k]["momentum_buffer"], v["momentum_buffer"])

    @pytest.mark.parametrize("step", ["full_step", "lean_step"])
    def test_non_finite_loss_skips_the_optimizer_step(self, step):
        model = mlp(0)
        optimizer = make_optimizer("sgd", model)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1000)
        port = TorchPort(model, optimizer, lambda m, b: loss_fn(m, b) * math.nan, scheduler)
        before = port.flat.clone()
        out = getattr(port, step)(next(torch_batches(0)))
        assert math.isnan(out if step == "lean_step" else out.loss)
        assert torch.equal(port.flat, before)
        assert optimizer.state == {} or all(not s for s in optimizer.state.values())
        assert scheduler.last_epoch == 1

    @pytest.mark.parametrize("opt_name", ["sgd", "adam"])
    def test_lean_step_is_the_full_steps_update(self, opt_name):
        """A dormant engine's lean step (fresh gradients, no norm) moves the parameters and
        the optimizer's state as a full step does, bit for bit, and a full step after it
        gathers the gradients back into the flat buffer."""
        ports = []
        for _ in range(2):
            model = mlp(0)
            ports.append(TorchPort(model, make_optimizer(opt_name, model), loss_fn))
        full, mixed = ports
        for i, batch in enumerate(islice(torch_batches(0), 7)):
            expected = full.full_step(batch).loss
            got = mixed.lean_step(batch) if i % 2 else mixed.full_step(batch).loss
            assert got == expected
            assert torch.equal(full.flat, mixed.flat)
        offset = 0
        for p in mixed.params:
            assert p.grad.data_ptr() == mixed.flat_grad.data_ptr() + 4 * offset
            offset += p.numel()

    def test_forward_loss_keeps_mode_and_buffers(self):
        """The probe runs without a graph, in the user's mode, and leaves BatchNorm alone."""
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.BatchNorm1d(16),
                                    torch.nn.Linear(16, 10))
        port = TorchPort(model, make_optimizer("sgd", model), loss_fn)
        batch = next(torch_batches(0))
        stats = [b.clone() for b in model.buffers()]
        for training in (True, False):
            model.train(training)
            loss = port.forward_loss(batch)
            assert isinstance(loss, float) and math.isfinite(loss)
            assert model.training is training
            assert all(torch.equal(a, b) for a, b in zip(model.buffers(), stats, strict=True))
        assert all(p.grad is None for p in model.parameters())
        model.train()
        port.full_step(batch)  # a full step is the user's forward: it updates the statistics
        assert not torch.equal(model[1].running_mean, stats[0])

    def test_predicted_steps_advance_the_scheduler(self):
        model = mlp(0)
        optimizer = make_optimizer("sgd", model)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
        port = TorchPort(model, optimizer, loss_fn, scheduler)
        port.full_step(next(torch_batches(0)))
        port.on_predicted_step()
        assert scheduler.last_epoch == 2
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.025)

    def test_a_rollback_keeps_the_schedule(self):
        """A rollback restores the optimizer's moments, not its learning rate: the rate
        stays where the scheduler has put it, so that a scheduler that steps from the
        current rate (CosineAnnealingLR) follows the plain loop's schedule after it (with
        the saved rate restored, the 39 rates after the rollback all read higher)."""
        import warnings

        def lrs(trainer_or_none, steps):
            model = mlp(0)
            optimizer = make_optimizer("sgd", model)
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
            out = []
            if trainer_or_none is None:
                for batch in islice(torch_batches(0), steps):
                    optimizer.zero_grad()
                    loss_fn(model, batch).backward()
                    optimizer.step()
                    scheduler.step()
                    out.append(optimizer.param_groups[0]["lr"])
                return out, 0
            poison = [False]

            def poisoned_loss(m, batch):
                loss = loss_fn(m, batch)
                return loss * float("nan") if poison[0] else loss

            trainer = HybridTrainer(model, optimizer, poisoned_loss, scheduler=scheduler,
                                    config=HybridTrainerConfig(floor=None, warmup_steps=200))
            for i, batch in enumerate(islice(torch_batches(0), steps)):
                poison[0] = i == 60
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    trainer.step(batch)
                out.append(optimizer.param_groups[0]["lr"])
            return out, trainer.statistics().rollbacks

        plain, _ = lrs(None, 100)
        hybrid, rollbacks = lrs(True, 100)
        assert rollbacks == 1
        np.testing.assert_allclose(hybrid, plain, rtol=1e-9)

    def test_all_reduce_mean_single_process(self):
        model = mlp(0)
        port = TorchPort(model, make_optimizer("sgd", model), loss_fn)
        assert port.all_reduce_mean(2.5) == 2.5

    @pytest.mark.skipif(not torch.distributed.is_available(),
                        reason="torch.distributed is not available in this build")
    def test_all_reduce_mean_in_a_group_of_one(self, tmp_path):
        model = mlp(0)
        port = TorchPort(model, make_optimizer("sgd", model), loss_fn)
        dist = torch.distributed
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rdv'}", rank=0,
                                world_size=1)
        try:
            assert port.all_reduce_mean(2.5) == 2.5
        finally:
            dist.destroy_process_group()


class TestHybridTrainer:
    """The user-facing surface."""

    def test_surface(self, tmp_path):
        model = mlp(0)
        trainer = HybridTrainer(model, make_optimizer("sgd", model), loss_fn)
        assert trainer.current_phase is Phase.WARMUP and trainer.current_step == 0
        result = trainer.step(next(torch_batches(0)))
        assert result.phase is Phase.WARMUP and not result.was_predicted
        assert trainer.current_step == 1
        assert trainer.statistics().backward_passes == 1
        assert trainer.export_metrics(tmp_path / "m.json").exists()
        assert trainer.model is model and isinstance(trainer.engine, HybridEngine)

    def test_a_torch_compiled_model_trains_and_its_compilation_is_not_a_step_cost(self):
        """A ``torch.compile``'d model (dynamo's eager backend: capture only, no C compiler
        needed) compiles on its first steps; those port calls stay out of the engine's timers
        (billed, they would read as the cost of a full step), and the compiled model computes
        with the shared flat buffer: what the engine writes there is what it runs on."""
        model = mlp(0)
        compiled = torch.compile(model, backend="eager")
        trainer = HybridTrainer(compiled, make_optimizer("sgd", model), loss_fn,
                                HybridTrainerConfig(total_steps=200))
        for batch in islice(torch_batches(0), 60):
            trainer.step(batch)
        t = trainer.engine._timer
        stats = trainer.statistics()
        assert t.jit > 0.0
        assert stats.wall_time_s < t.jit  # 60 steps take less than compiling them
        x = next(torch_batches(1))[0]
        with torch.no_grad():
            before = compiled(x).clone()
            trainer.engine.theta[...] *= 0.5
            after = compiled(x)
            torch.testing.assert_close(after, model(x))
            assert not torch.allclose(after, before)

    @pytest.mark.skipif(not hasattr(HybridEngine, "state_dict"), reason="engine state_dict pending")
    def test_resume_is_bit_identical(self):
        """Model, optimizer and trainer state saved mid-run resume into the same trajectory."""
        model = mlp(0)
        # Decisions from losses alone, jumps from the first decision point on.
        steps_cost = HybridTrainerConfig(cost_model="steps", floor=None)
        trainer = HybridTrainer(model, make_optimizer("sgd", model), loss_fn, steps_cost)
        it = torch_batches(0)
        for batch in islice(it, 250):
            trainer.step(batch)
        saved = copy.deepcopy((model.state_dict(), trainer.optimizer.state_dict(),
                               trainer.state_dict()))
        other_model = mlp(5)
        other = HybridTrainer(other_model, make_optimizer("sgd", other_model), loss_fn,
                              steps_cost)
        other_model.load_state_dict(saved[0])
        other.optimizer.load_state_dict(saved[1])
        other.load_state_dict(saved[2])
        assert other.current_step == trainer.current_step == 250
        assert other.current_phase is trainer.current_phase
        for batch in islice(it, 150):
            trainer.step(batch)
            other.step(batch)
        assert torch.equal(trainer.flat_params, other.flat_params)
        assert trainer.statistics().predicted_steps == other.statistics().predicted_steps > 0


@pytest.mark.slow
class TestAccuracy:
    """Default config less the floor guard, 1000 steps: the plain loop's test accuracy within
    1 point, steps predicted (with the guard 1000 steps are too few for a jump)."""

    @pytest.mark.parametrize("arch", [mlp, cnn], ids=["mlp", "cnn"])
    @pytest.mark.parametrize("opt_name", ["sgd", "adam"])
    def test_matches_plain_loop(self, arch, opt_name):
        plain_acc, hybrid_acc, predicted, moved = [], [], [], []
        for seed in SEEDS:
            model = arch(seed)
            plain_loop(model, make_optimizer(opt_name, model), STEPS, seed)
            plain_acc.append(accuracy(model, seed))
            model, stats, n_moved = hybrid_run(arch, opt_name, seed)
            hybrid_acc.append(accuracy(model, seed))
            predicted.append(stats.predicted_steps)
            moved.append(n_moved)
        report = f"plain {plain_acc} hybrid {hybrid_acc} predicted {predicted} moved {moved}"
        print(f"{arch.__name__}/{opt_name}: {report}")
        assert np.mean(hybrid_acc) >= np.mean(plain_acc) - 0.01, report
        assert min(predicted) > 0, report
        assert min(moved) > 0, report


class TestReadmeQuickStart:
    """The README's PyTorch quick start runs as written."""

    def test_runs(self, run_readme_block):
        assert "steps predicted" in run_readme_block("<!-- section:quickstart-torch -->")
