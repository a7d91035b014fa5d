"""PyTorch adapter: HybridOptimizer wraps the user's optimizer; the loop stays the user's."""

from __future__ import annotations

import io
import math
import subprocess
import sys
import textwrap

import attrs
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hpcore import HybridTrainerConfig, LinearConfig  # noqa: E402
from hpcore.adapters.torch import HybridOptimizer, HybridTrainer  # noqa: E402

FAST = HybridTrainerConfig(
    warmup_steps=0, history_size=4, snapshot_interval=5, predictor=LinearConfig(window=4),
    full_steps=20, correct_steps=10, max_predict_steps=20, check_interval=10, floor=None,
)


def digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return torch.tensor(x / 16, dtype=torch.float32), torch.tensor(y)


def mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))


def run(model, opt, steps: int, seed: int = 0, probe_fail_at: int | None = None):
    """The user's loop; returns the number of backward calls."""
    x, y = digits()
    g = torch.Generator().manual_seed(seed)
    backward = 0
    for _ in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=g)
        if opt.need_grads:
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            backward += 1
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(loss)
        else:
            opt.step()
        opt.zero_grad()
    return backward


def params_of(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


class TestHybridOptimizer:
    def test_is_a_torch_optimizer_sharing_the_param_groups(self):
        """Schedulers built on the wrapper set the inner optimizer's learning rate."""
        model = mlp()
        inner = torch.optim.SGD(model.parameters(), lr=1.0)
        opt = HybridOptimizer(inner, FAST)
        assert isinstance(opt, torch.optim.Optimizer)
        assert opt.param_groups is inner.param_groups
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        run(model, opt, 3)
        sched.step()
        assert inner.param_groups[0]["lr"] == 0.5

    def test_jumps_without_backward_and_counts_backward_passes(self):
        """A real loop jumps; backward_passes equals the user's backward calls."""
        model = mlp()
        opt = HybridOptimizer(torch.optim.Adam(model.parameters(), lr=1e-3), FAST)
        backward = run(model, opt, 200)
        stats = opt.statistics()
        assert stats.jumps >= 2 and stats.predicted_steps > 0
        assert stats.backward_passes == backward == 200 - stats.predicted_steps

    def test_a_frozen_parameter_is_skipped_and_never_moved(self):
        """requires_grad=False parameters stay out of the flat layout, as torch.optim does."""
        model = mlp()
        model[0].bias.requires_grad_(False)
        frozen = model[0].bias.detach().clone()
        opt = HybridOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), FAST)
        run(model, opt, 120)
        assert opt.statistics().predicted_steps > 0
        assert torch.equal(model[0].bias, frozen)
        assert opt.flat_params.numel() == sum(p.numel() for p in model.parameters()) - 32

    def test_wrong_calls_are_refused_and_change_nothing(self):
        """A loss on a predicted step, or no gradients on a full one: clear errors, no change."""
        model = mlp()
        opt = HybridOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), FAST)
        before = params_of(model)
        with pytest.raises(RuntimeError, match="no gradients: run loss.backward"):
            opt.step(torch.tensor(1.0))
        assert all(torch.equal(a, b) for a, b in zip(before, params_of(model), strict=True))
        assert opt.current_step == 0
        while opt.need_grads:
            run(model, opt, 1)
        with pytest.raises(RuntimeError, match=r"this step is predicted \(need_grads is False\)"):
            opt.step(torch.tensor(1.0))
        with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
            HybridOptimizer(model)

    def test_a_non_finite_loss_is_counted_and_never_applied(self):
        """A NaN loss skips the inner step, leaves the weights and counts a divergence event."""
        model = mlp()
        opt = HybridOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), FAST)
        run(model, opt, 3)
        before = params_of(model)
        loss = model(torch.ones(2, 64)).sum() * float("nan")
        loss.backward()
        opt.step(loss)
        assert all(torch.equal(a, b) for a, b in zip(before, params_of(model), strict=True))
        assert opt.statistics().divergence_events == {"nan_inf": 1}

    def test_logs_nothing_on_stdout(self, capsys):
        """With logging unconfigured, a run with jumps and rollbacks prints nothing."""
        import structlog

        structlog.reset_defaults()
        model = mlp()
        opt = HybridOptimizer(torch.optim.Adam(model.parameters(), lr=1e-3), FAST)
        run(model, opt, 120)
        assert opt.statistics().jumps > 0
        assert capsys.readouterr().out == ""

    def test_half_precision_parameters_move_through_a_float32_master(self):
        """bfloat16 parameters stay bfloat16 and follow the jumps."""
        model = mlp().to(torch.bfloat16)
        opt = HybridOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), FAST)
        x, y = digits()
        for _ in range(120):
            if opt.need_grads:
                loss = torch.nn.functional.cross_entropy(model(x[:64].bfloat16()).float(), y[:64])
                loss.backward()
                opt.step(loss)
            else:
                opt.step()
            opt.zero_grad()
        assert opt.statistics().predicted_steps > 0
        assert all(p.dtype == torch.bfloat16 for p in model.parameters())
        assert torch.equal(opt.flat_params.float(), torch.from_numpy(opt._core.theta).bfloat16().float())


class TestLoops:
    def test_grad_scaler_and_autocast_pass_the_loss_through(self):
        """scaler.step(opt, loss) forwards the loss; the run jumps and nothing is flagged."""
        model = mlp()
        opt = HybridOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), FAST)
        scaler = torch.amp.GradScaler("cpu")
        x, y = digits()
        for _ in range(120):
            if opt.need_grads:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    loss = torch.nn.functional.cross_entropy(model(x[:64]), y[:64])
                scaler.scale(loss).backward()
                scaler.step(opt, loss)
                scaler.update()
                opt.zero_grad()
            else:
                opt.step()
        stats = opt.statistics()
        assert stats.predicted_steps > 0 and stats.divergence_events == {}

    def test_a_closure_computes_the_loss(self):
        """step(closure=...) runs the closure on full steps, as torch optimizers do."""
        model = mlp()
        opt = HybridOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), FAST)
        x, y = digits()
        calls = []

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[:64]), y[:64])
            loss.backward()
            calls.append(1)
            return loss

        for _ in range(120):
            opt.step(closure=closure) if opt.need_grads else opt.step()
        assert len(calls) == opt.statistics().backward_passes < 120

    def test_without_a_loss_or_probe_it_never_jumps(self):
        """Jumps are judged on losses: a loop that passes none gets plain steps only."""
        model = mlp()
        opt = HybridOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), FAST)
        x, y = digits()
        for _ in range(120):
            torch.nn.functional.cross_entropy(model(x[:64]), y[:64]).backward()
            opt.step()
            opt.zero_grad()
        assert opt.statistics().predicted_steps == 0 and opt.statistics().divergence_events == {}


class TestStateDict:
    def test_torch_save_and_load_weights_only_resume_bit_for_bit(self):
        """torch.save / torch.load(weights_only=True) of state_dict() continue the same run."""
        model = mlp()
        opt = HybridOptimizer(torch.optim.Adam(model.parameters(), lr=1e-3), FAST)
        run(model, opt, 55)  # mid-jump or mid-Correct
        buf = io.BytesIO()
        torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
        buf.seek(0)
        saved = torch.load(buf, weights_only=True)
        run(model, opt, 100, seed=1)
        model2 = mlp(seed=5)
        opt2 = HybridOptimizer(torch.optim.Adam(model2.parameters(), lr=1e-3), FAST)
        model2.load_state_dict(saved["model"])
        opt2.load_state_dict(saved["opt"])
        run(model2, opt2, 100, seed=1)
        assert all(torch.equal(a, b) for a, b in zip(params_of(model), params_of(model2), strict=True))
        assert opt.statistics() == opt2.statistics()

    def test_a_refused_load_changes_nothing(self):
        """An SGD state loaded into an Adam wrapper is refused; weights and state stay."""
        m_sgd = mlp()
        sgd = HybridOptimizer(torch.optim.SGD(m_sgd.parameters(), lr=0.1, momentum=0.9), FAST)
        run(m_sgd, sgd, 30)
        model = mlp(seed=1)
        opt = HybridOptimizer(torch.optim.Adam(model.parameters(), lr=1e-3), FAST)
        run(model, opt, 30)
        before, state = params_of(model), opt.state_dict()
        with pytest.raises(ValueError, match="the state is of another optimizer or layout"):
            opt.load_state_dict(sgd.state_dict())
        with pytest.raises(ValueError, match="not a HybridOptimizer state dict"):
            opt.load_state_dict({"params": 1})
        assert all(torch.equal(a, b) for a, b in zip(before, params_of(model), strict=True))
        after = opt.state_dict()
        assert torch.equal(after["params"], state["params"])
        assert after["hybrid"]["controller"] == state["hybrid"]["controller"]
        run(model, opt, 5)  # still steps


class TestProbes:
    def test_a_probe_that_raises_mid_jump_changes_nothing_and_the_step_can_be_retried(self):
        """The run with a failing probe, retried, ends where the run without failures ends."""
        def make():
            model = mlp()
            x, y = digits()

            def probe():
                return torch.nn.functional.cross_entropy(model(x[:200]), y[:200])

            return model, probe

        model_a, probe_a = make()
        opt_a = HybridOptimizer(torch.optim.SGD(model_a.parameters(), lr=0.1), FAST, probe=probe_a)
        run(model_a, opt_a, 150)

        model_b, probe_b = make()
        calls = {"n": 0}

        def flaky():
            calls["n"] += 1
            if calls["n"] in (2, 5):
                raise KeyboardInterrupt
            return probe_b()

        opt_b = HybridOptimizer(torch.optim.SGD(model_b.parameters(), lr=0.1), FAST, probe=flaky)
        x, y = digits()
        g = torch.Generator().manual_seed(0)
        failures = 0
        for _ in range(150):
            idx = torch.randint(0, len(x), (32,), generator=g)
            while True:
                try:
                    if opt_b.need_grads:
                        opt_b.zero_grad()
                        loss = torch.nn.functional.cross_entropy(model_b(x[idx]), y[idx])
                        loss.backward()
                        torch.nn.utils.clip_grad_norm_(model_b.parameters(), 1.0)
                        opt_b.step(loss)
                    else:
                        opt_b.step()
                    break
                except KeyboardInterrupt:
                    failures += 1
            opt_b.zero_grad()
        assert failures == 2 and opt_a.statistics().forward_only_passes > 2
        assert all(torch.equal(a, b) for a, b in zip(params_of(model_a), params_of(model_b), strict=True))
        assert opt_a.statistics() == opt_b.statistics()


class TestDeterminism:
    def test_the_default_config_gives_identical_parameters_twice(self):
        """Two runs of one seed with the default config (jumps included) are bit-identical."""
        cfg = HybridTrainerConfig(total_steps=1200)
        finals = []
        for _ in range(2):
            model = mlp()
            opt = HybridOptimizer(torch.optim.AdamW(model.parameters(), lr=1e-3), cfg)
            run(model, opt, 1200)
            finals.append(params_of(model))
            assert opt.statistics().predicted_steps > 0
        assert all(torch.equal(a, b) for a, b in zip(*finals, strict=True))

    def test_a_resume_in_a_fresh_process_continues_bit_for_bit(self, tmp_path):
        """State saved with torch.save mid-run, loaded in a new process, ends where the
        uninterrupted run ends."""
        script = textwrap.dedent(f"""
            import sys, torch
            sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parent)!r})
            from test_torch_adapter import FAST, mlp, run
            from hpcore.adapters.torch import HybridOptimizer
            model = mlp()
            opt = HybridOptimizer(torch.optim.Adam(model.parameters(), lr=1e-3), FAST)
            if sys.argv[1] == "first":
                run(model, opt, 65)
                torch.save({{"m": model.state_dict(), "o": opt.state_dict()}}, sys.argv[2])
            else:
                s = torch.load(sys.argv[2], weights_only=True)
                model.load_state_dict(s["m"]); opt.load_state_dict(s["o"])
                run(model, opt, 90, seed=1)
                torch.save(model.state_dict(), sys.argv[3])
        """)
        path = tmp_path / "resume.py"
        path.write_text(script)
        ckpt, out = tmp_path / "c.pt", tmp_path / "final.pt"
        for args in (["first", str(ckpt)], ["second", str(ckpt), str(out)]):
            subprocess.run([sys.executable, str(path), *args], check=True, timeout=300)
        model = mlp()
        opt = HybridOptimizer(torch.optim.Adam(model.parameters(), lr=1e-3), FAST)
        run(model, opt, 65)
        run(model, opt, 90, seed=1)
        resumed = torch.load(out, weights_only=True)
        assert all(torch.equal(v, resumed[k]) for k, v in model.state_dict().items())


class TestHybridTrainer:
    def test_the_scheduler_is_stepped_once_per_step_and_the_loss_is_never_none(self):
        """The convenience trainer steps its scheduler every step, predicted ones too."""
        model = mlp()
        inner = torch.optim.SGD(model.parameters(), lr=1.0)
        sched = torch.optim.lr_scheduler.LambdaLR(inner, lambda s: 1.0 / (1 + s))
        trainer = HybridTrainer(model, inner, lambda m, b: torch.nn.functional.cross_entropy(m(b[0]), b[1]),
                                attrs.evolve(FAST, anneal_share=None), scheduler=sched)
        x, y = digits()
        results = [trainer.step((x[:32], y[:32])) for _ in range(100)]
        assert any(r.was_predicted for r in results)
        assert all(isinstance(r.loss, float) and math.isfinite(r.loss) for r in results)
        assert inner.param_groups[0]["lr"] == pytest.approx(1.0 / 101)


def test_numba_threads_follow_torch_after_construction_and_after_a_jump():
    """The kernels never run more threads than torch's; torch's own count is untouched."""
    kernels = pytest.importorskip("hpcore.kernels")
    if not hasattr(kernels, "numba_threads"):
        pytest.skip("kernels.numba_threads is not available")
    threads = torch.get_num_threads()
    model = mlp()
    opt = HybridOptimizer(torch.optim.Adam(model.parameters(), lr=1e-3),
                          attrs.evolve(FAST, snapshot_interval=5))
    assert torch.get_num_threads() == threads and kernels.numba_threads() <= threads
    run(model, opt, 60)
    assert opt.statistics().jumps >= 1
    assert torch.get_num_threads() == threads and kernels.numba_threads() <= threads


def _np(t) -> np.ndarray:
    return t.detach().numpy()


class TestOptimizerAtJump:
    @pytest.mark.parametrize("mode", ["keep", "advance"])
    def test_adams_step_counters_count_the_predicted_steps_only_when_told(self, mode):
        """``optimizer_at_jump="advance"``: every parameter's ``step`` moves on by the
        predicted steps at the landing (AdamW's bias correction); ``"keep"``: full steps."""
        model = mlp()
        inner = torch.optim.AdamW(model.parameters(), lr=1e-3)
        opt = HybridOptimizer(inner, attrs.evolve(FAST, optimizer_at_jump=mode))
        x, y = digits()
        first = next(iter(model.parameters()))
        for _ in range(500):
            if not opt.need_grads:
                break
            loss = torch.nn.functional.cross_entropy(model(x[:32]), y[:32])
            loss.backward()
            opt.step(loss)
            opt.zero_grad()
        t0 = float(inner.state[first]["step"])
        predicted = 0
        while not opt.need_grads:
            opt.step()
            predicted += 1
        assert t0 > 0 and predicted == FAST.max_predict_steps
        want = t0 + (predicted if mode == "advance" else 0)
        assert {float(inner.state[q]["step"]) for q in model.parameters()} == {want}


class TestAnnealingSchedule:
    def test_no_jump_starts_once_the_users_scheduler_anneals(self):
        """The wrapper reads the rate from ``param_groups``: once a scheduler has cut it to
        half (step 150), no jump starts; the same run at a constant rate jumps after it."""
        starts = {}
        for name, factor in (("constant", lambda k: 1.0), ("step", lambda k: 1.0 if k < 150 else 0.5)):
            model = mlp()
            inner = torch.optim.AdamW(model.parameters(), lr=1e-3)
            sched = torch.optim.lr_scheduler.LambdaLR(inner, factor)
            opt = HybridOptimizer(inner, FAST)
            x, y = digits()
            g = torch.Generator().manual_seed(0)
            for _ in range(400):
                if opt.need_grads:
                    idx = torch.randint(0, len(x), (32,), generator=g)
                    loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
                    loss.backward()
                    opt.step(loss)
                    opt.zero_grad()
                else:
                    opt.step()
                sched.step()
            starts[name] = [j.step for j in opt.jumps]
        assert starts["constant"] and max(starts["constant"]) > 150
        assert starts["step"] and max(starts["step"]) < 150
