"""Tests of the fork measurement harness (benchmarks/fork_worth.py) and its candidate
forecast directions (benchmarks/fork_directions.py), on a tiny torch MLP over made-up data."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fork_directions as fd
import fork_worth as fw

torch = pytest.importorskip("torch")


class TinyTask:
    """A task-like builder: an 8-16-3 MLP on a fixed synthetic classification problem."""

    def build(self, *, seed: int, lr: float, steps: int, schedule: str = "constant"):
        """A fresh :class:`hpcore.bench.runs.TorchRun` at the seed's initial point."""
        from hpcore.bench.data import batches
        from hpcore.bench.runs import TorchRun
        from hpcore.bench.workloads import _ce

        rng = np.random.default_rng(0)
        w = rng.normal(size=(8, 3))
        x = rng.normal(size=(384, 8)).astype(np.float32)
        y = np.argmax(x @ w + 0.5 * rng.normal(size=(384, 3)), 1).astype(np.int64)

        def stream(s: int):
            for xb, yb in batches(x[:256], y[:256], 16, s):
                yield torch.from_numpy(xb), torch.from_numpy(yb)

        def model():
            return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(),
                                       torch.nn.Linear(16, 3))

        val = (torch.from_numpy(x[256:]), torch.from_numpy(y[256:]))
        return TorchRun(model, _ce, stream, val, "adam", lr, steps, schedule, seed)


FORKS, JS, R, INTERVAL = [80, 96], [8, 16], 10, 8
LABELS = ["oracle", *fd.CANDIDATES, "line10@zero_m"]


@pytest.fixture(scope="module")
def records():
    """One seed of the harness on the tiny task: two forks, J in {8, 16}, R = 10."""
    torch.set_num_threads(1)
    return fw.measure_seed(TinyTask(), 0.01, 1, FORKS, JS, R, LABELS, interval=INTERVAL)


def _plain_val(steps: int) -> float:
    """Validation loss of an independent plain run after ``steps`` steps."""
    run = TinyTask().build(seed=1, lr=0.01, steps=steps)
    it = run.batches()
    for _ in range(steps):
        run.plain_step(next(it))
    return run.validate()[0]


def _linear_ctx(n: int = 50, J: int = 100) -> tuple[fd.ForkContext, np.ndarray]:
    """A fork on an exactly linear trajectory ``a + b t`` whose average lags by ``lag``."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=n), rng.normal(size=n) * 1e-3
    lag, clock = 19.0, 400
    times = np.arange(40.0, 401.0, 40.0)
    snaps = a + np.outer(times - lag, b)
    ctx = fd.ForkContext(a + b * clock, a + b * (clock - lag), snaps, times, clock, lag,
                         rng.normal(size=n), np.zeros(n), b.copy(),
                         probe=lambda th: float(th @ th))
    return ctx, b * J


class TestOracle:
    def test_cosine_and_length_ratio_are_one(self, records):
        """The oracle's forecast is the true EMA displacement: cosine 1, length ratio 1."""
        for r in records:
            assert r["cands"]["oracle"]["cos"] == pytest.approx(1.0, abs=1e-9)
            assert r["cands"]["oracle"]["len"] == pytest.approx(1.0, abs=1e-9)

    def test_line_is_not_the_oracle(self, records):
        """A forecast that is not the true displacement has a cosine below 1."""
        assert max(r["cands"]["line10"]["cos"] for r in records) < 0.999


class TestProtocol:
    def test_nojump_is_the_plain_loop_at_fork_plus_r(self, records):
        """No jump = R steps from the fork on the following batches = the plain loop."""
        for F in FORKS:
            r = next(r for r in records if r["fork"] == F)
            assert r["nojump"] == pytest.approx(_plain_val(F + R), rel=1e-6)

    def test_truth_is_the_plain_loop_at_fork_plus_j_plus_r(self, records):
        """Truth = J true steps then R recovery steps continuing the same batch stream."""
        r = next(r for r in records if r["fork"] == FORKS[0] and r["J"] == JS[-1])
        assert r["truth"] == pytest.approx(_plain_val(FORKS[0] + JS[-1] + R), rel=1e-6)

    def test_every_candidate_loss_is_finite(self, records):
        """Each candidate's recovery ends at a finite loss; only 'probed' spends probes."""
        for r in records:
            for label, c in r["cands"].items():
                assert np.isfinite(c["loss"]) and np.isfinite(c["ema_loss"]), label
                assert (c["probe_forwards"] > 0) == (label == "probed"), label


class TestCandidates:
    @pytest.mark.parametrize("name", list(fd.CANDIDATES))
    def test_finite_and_right_shape(self, name):
        """Each candidate returns a finite float vector shaped like theta."""
        ctx, _ = _linear_ctx()
        rng = np.random.default_rng(5)
        ctx.snaps = ctx.snaps + 1e-4 * rng.normal(size=ctx.snaps.shape)
        ctx.v = rng.random(ctx.theta.size)
        fn, fixed = fd.CANDIDATES[name]
        d = fn(ctx, 200, **fixed)
        assert d.shape == ctx.theta.shape and np.all(np.isfinite(d))

    @pytest.mark.parametrize("name", ["line10", "consistent", "snr", "curvature", "power",
                                      "slow_subspace", "consistent_power"])
    def test_linear_trajectory_gives_the_true_drift(self, name):
        """On an exactly linear trajectory every line-based drift is the true move b J."""
        ctx, true = _linear_ctx(J=100)
        fn, fixed = fd.CANDIDATES[name]
        hyper = {"slow_subspace": {"k": 1}, "consistent_power": {"scale": 1.0}}.get(name, {})
        np.testing.assert_allclose(fn(ctx, 100, **{**fixed, **hyper}), true, atol=1e-9)

    def test_ema_point_is_the_average(self):
        """Jumping to the EMA point moves theta exactly onto the average."""
        ctx, _ = _linear_ctx()
        np.testing.assert_allclose(ctx.theta + fd.ema_point(ctx, 100), ctx.ema)


class TestGain:
    def test_constructed_case(self):
        """Ratio of sums: (0.5 + 1.0) / (1 + 1) = 0.75, not the mean of ratios."""
        nj, cand, tr = np.array([2.0, 3.0]), np.array([1.5, 2.0]), np.array([1.0, 2.0])
        assert fw.gain(nj, cand, tr) == pytest.approx(0.75)

    def test_bootstrap_of_identical_forks_is_a_point(self):
        """Identical fork points leave no spread: the interval is the gain itself."""
        nj, cand, tr = np.full(6, 2.0), np.full(6, 1.5), np.full(6, 1.0)
        assert fw.bootstrap(nj, cand, tr) == pytest.approx((0.5, 0.5))

    def test_cos_len(self):
        """Twice the true move: cosine 1, length 2; the opposite move: cosine -1."""
        t = np.array([1.0, -2.0, 0.5])
        assert fw.cos_len(2 * t, t) == pytest.approx((1.0, 2.0))
        assert fw.cos_len(-t, t) == pytest.approx((-1.0, 1.0))


class TestCli:
    @pytest.mark.parametrize("argv, message", [
        (["--workload", "nope"], "unknown workload 'nope'; this harness runs torch workloads"),
        (["--workload", "numpy-mlp-digits"], "unknown workload 'numpy-mlp-digits'"),
        (["--candidates", "line10,foo"], "unknown candidate 'foo'; known: oracle, ema_point"),
        (["--js", "100,0"], "every horizon J must be >= 1 (got --js [100, 0])"),
        (["--js=-5"], "every horizon J must be >= 1"),
        (["--optimizer", "rmsprop"], "runs with sgd, adam, not 'rmsprop'"),
    ])
    def test_refuses_bad_input(self, argv, message, capsys):
        """Bad input exits with status 2 and a message naming the value."""
        with pytest.raises(SystemExit) as e:
            fw.parse_args(argv)
        assert e.value.code == 2
        assert message in capsys.readouterr().err

    def test_spec_round_trip(self):
        """A label carries the candidate, its tuned hyperparameters and the moment variant."""
        assert fd.parse_label("power[p=0.6]@zero_m") == ("power", {"p": 0.6}, True)
        assert fd.parse_label("slow_subspace[k=2]") == ("slow_subspace", {"k": 2}, False)
