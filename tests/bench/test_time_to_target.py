"""time_to_target and first_reach on hand-made curves."""

from __future__ import annotations

import numpy as np
import pytest

from hpcore.bench.runner import Curve, first_reach, smoothed, time_to_target
from hpcore.bench.suite import markdown_table, seed_result, summarise, verdict


def curve(label, loss, wall, backward, stats=None):
    n = len(loss)
    steps = np.arange(n, dtype=np.float64) * 10
    return Curve(label, steps, np.asarray(wall, float), np.asarray(backward, float),
                 np.asarray(loss, float), np.full(n, 0.5), [], stats)


BASE = curve("baseline", [2.0, 1.0, 0.6, 0.5], [0.0, 1.0, 2.0, 3.0], [0, 10, 20, 30])
# A seed's compute-equivalent numbers, for the suite's summary (here beyond the frontier).
BEYOND = {"equivalent_backward_speedup": None, "equivalent_wall_speedup": None,
          "beyond_frontier": True}


class TestFirstReach:
    def test_first_point_at_or_below(self):
        """The first validation point at or below the target gives (step, wall, backward)."""
        assert first_reach(BASE, 0.6) == (20.0, 2.0, 20.0)

    def test_not_reached(self):
        """None when no point gets there."""
        assert first_reach(BASE, 0.4) is None


class TestTimeToTarget:
    def test_reached(self):
        """The method reaches 0.5 at 1.5 s with 12 backward passes: 2x wall, 2.5x backward."""
        other = curve("hybrid", [2.0, 0.9, 0.5, 0.45], [0.0, 0.75, 1.5, 2.25], [0, 8, 12, 20])
        ttt = time_to_target(BASE, other)
        assert ttt["target_val_loss"] == 0.5
        assert ttt["reached"] is True
        assert ttt["baseline_wall_s"] == 3.0 and ttt["baseline_backward"] == 30.0
        assert ttt["method_wall_s"] == 1.5 and ttt["method_backward"] == 12.0
        assert ttt["wall_speedup"] == pytest.approx(2.0)
        assert ttt["backward_speedup"] == pytest.approx(2.5)

    def test_not_reached(self):
        """A method that ends above the target has no speed-up."""
        other = curve("hybrid", [2.0, 0.9, 0.7, 0.55], [0.0, 0.5, 1.0, 1.5], [0, 5, 10, 15])
        ttt = time_to_target(BASE, other)
        assert ttt["reached"] is False
        assert ttt["wall_speedup"] is None and ttt["backward_speedup"] is None
        assert ttt["method_wall_s"] is None

    def test_baseline_that_dips_below_its_final_loss(self):
        """The baseline's own time is its first visit to its final loss (overfitting)."""
        base = curve("baseline", [2.0, 0.4, 0.45, 0.5], [0.0, 1.0, 2.0, 3.0], [0, 10, 20, 30])
        other = curve("x", [2.0, 0.9, 0.5, 0.5], [0.0, 1.0, 2.0, 3.0], [0, 10, 20, 30])
        ttt = time_to_target(base, other)
        assert ttt["baseline_wall_s"] == 1.0
        assert ttt["wall_speedup"] == pytest.approx(0.5)

    def test_window_averages_target_and_reaching(self):
        """With a window, one lucky evaluation neither sets the target nor meets it."""
        lucky_end = curve("baseline", [2.0, 0.6, 0.6, 0.3], [0.0, 1.0, 2.0, 3.0], [0, 10, 20, 30])
        np.testing.assert_allclose(smoothed(lucky_end, 3), [2.0, 1.3, 3.2 / 3, 0.5])
        steady = curve("x", [2.0, 0.5, 0.5, 0.5], [0.0, 1.0, 2.0, 3.0], [0, 10, 20, 30])
        assert time_to_target(lucky_end, steady)["reached"] is False  # 0.3 is out of reach
        ttt = time_to_target(lucky_end, steady, window=3)
        assert ttt["target_val_loss"] == pytest.approx(0.5)
        assert ttt["reached"] and ttt["method_wall_s"] == 3.0 and ttt["baseline_wall_s"] == 3.0
        one_dip = curve("y", [2.0, 0.2, 0.9, 0.9], [0.0, 1.0, 2.0, 3.0], [0, 10, 20, 30])
        assert time_to_target(lucky_end, one_dip)["reached"] is True  # one point is enough
        assert time_to_target(lucky_end, one_dip, window=3)["reached"] is False

    def test_non_finite_baseline(self):
        """A diverged baseline is refused with advice."""
        base = curve("baseline", [2.0, np.inf], [0.0, 1.0], [0, 10])
        with pytest.raises(ValueError, match="tune its learning rate first"):
            time_to_target(base, base)


class TestEngineTime:
    def test_wall_clock_beyond_the_backward_passes_at_the_baselines_price(self):
        """Engine time is the method's wall clock less its full steps at the baseline's mean
        step time; the baseline against itself reads 0."""
        from hpcore.bench.runner import engine_seconds, overhead_pct, step_seconds

        assert step_seconds(BASE) == pytest.approx(0.1)
        assert engine_seconds(BASE, BASE) == 0.0 and overhead_pct(BASE, BASE) == 0.0
        other = curve("hybrid", [2.0, 1.0, 0.8, 0.6], [0.0, 1.0, 2.0, 3.3], [0, 8, 16, 24])
        # 24 backward passes at 0.1 s are 2.4 s: 0.9 s of engine time over its 30 steps
        assert engine_seconds(BASE, other) == pytest.approx(0.9)
        assert overhead_pct(BASE, other) == pytest.approx(100 * 0.03 / 0.1)

    def test_only_timed_steps_are_priced(self):
        """Steps left out of the wall clock (JAX compiling) are left out of the price too."""
        from hpcore.bench.runner import engine_seconds

        base = Curve("b", BASE.steps, BASE.wall, BASE.backward, BASE.val_loss, BASE.val_acc, [],
                     None, timed_steps=20, timed_backward=20)  # 3 s over 20 timed steps
        other = Curve("h", BASE.steps, np.array([0.0, 1.0, 2.0, 2.0]), BASE.backward,
                      BASE.val_loss, BASE.val_acc, [], {}, timed_steps=28, timed_backward=10)
        assert engine_seconds(base, other) == pytest.approx(2.0 - 10 * 0.15)

    def test_runs_count_the_full_steps_they_timed(self):
        """A hybrid run counts as full steps exactly its backward passes, a plain one every
        step (nothing compiles here, so every step is timed)."""
        from hpcore.bench.runner import CurveRun, run_together
        from hpcore.bench.workloads import get_task
        from hpcore.config import HybridTrainerConfig, LinearConfig

        pytest.importorskip("sklearn", reason="digits ship with scikit-learn")
        quick = HybridTrainerConfig(warmup_steps=10, full_steps=20, max_predict_steps=20,
                                    correct_steps=5, snapshot_interval=2, history_size=4,
                                    predictor=LinearConfig(window=4), confidence_threshold=0.0,
                                    floor=None)
        task = get_task("numpy-mlp-digits", "sgd")
        runs = [CurveRun(task, lr=0.02, steps=150, seed=0, eval_every=25),
                CurveRun(task, lr=0.02, steps=150, seed=0, eval_every=25, config=quick)]
        run_together(runs)
        base, hyb = (r.curve() for r in runs)
        assert base.steps_timed == base.backward_timed == 150
        assert hyb.statistics["predicted_steps"] > 0
        assert hyb.steps_timed == 150
        assert hyb.backward_timed == hyb.statistics["backward_passes"] == int(hyb.backward[-1])
        assert hyb.config.total_steps == 150 and base.config is None


class TestSuiteMaths:
    def test_seed_result(self):
        """Loss difference, predicted share and engine time against the baseline's step time."""
        stats = {"predicted_steps": 15, "rollbacks": 1, "jumps": 2, "jumps_accepted": 1}
        other = curve("hybrid", [2.0, 0.9, 0.5, 0.45], [0.0, 0.75, 1.5, 2.25], [0, 8, 12, 20],
                      stats)
        r = seed_result(BASE, other)
        # both read as 3-point means: (0.9 + 0.5 + 0.45) / 3 against (1.0 + 0.6 + 0.5) / 3
        assert r["final_loss_vs_baseline_pct"] == pytest.approx(100 * (1.85 / 2.1 - 1))
        assert r["predicted_pct"] == pytest.approx(50.0)  # 15 of 30 steps
        # a baseline step is 3 s / 30 = 0.1 s; 20 backward passes at that price are 2 s, so
        # the hybrid's 2.25 s hold 0.25 s of engine time: 0.25 / 30 s per step, 8.3% of a step
        assert r["overhead_pct"] == pytest.approx(100 * (0.25 / 30) / 0.1)
        assert r["rollbacks"] == 1

    def test_not_reached_counts_in_the_median(self):
        """Two of three seeds not reached: the median speed-up is 'not reached' (None)."""
        rows = [{"reached": ok, "wall_speedup": w, "backward_speedup": w,
                 "final_loss_vs_baseline_pct": 1.0, "predicted_pct": 10.0, "rollbacks": 0,
                 "overhead_pct": 5.0, **BEYOND}
                for ok, w in ((True, 3.0), (False, None), (False, None))]
        s = summarise(rows)
        assert s["reached"] == 1 and s["wall_speedup"] is None
        assert verdict(s) == "loses: target not reached"

    def test_slower_is_a_loss(self):
        """A median speed-up below 1 reads as a loss."""
        s = {"wall_speedup": 0.8, "final_loss_vs_baseline_pct": -1.0, "predicted_pct": 20.0}
        assert verdict(s) == "loses: slower"
        assert verdict({**s, "wall_speedup": 1.3}) == "wins"
        assert verdict({**s, "wall_speedup": 1.3, "predicted_pct": 0.0}).startswith("never jumped")


class TestMarkdownSummary:
    def _row(self, method, wall):
        summary = {"wall_speedup": wall, "backward_speedup": wall, "reached": 3 if wall else 0,
                   "seeds": 3, "final_loss_vs_baseline_pct": 0.0, "predicted_pct": 0.0,
                   "rollbacks": 0, "overhead_pct": 1.0,
                   "equivalent_backward_speedup": (1.0, 1.0, 1.0),
                   "equivalent_wall_speedup": (1.0, 1.0, 1.0)}
        return {"workload": "w", "optimizer": "sgd", "schedule": "constant", "method": method,
                "lr": 0.1, "steps": 100, "summary": summary,
                "verdict": verdict(summary, method)}

    def test_control_range_is_over_reached_rows_and_the_floor_is_counted(self):
        """Misses are counted as misses, not as a 0.00x end of the control's range; the
        sentence says how many hybrid and control rows hold the 0.95x floor."""
        rows = [self._row("hybrid", 0.97), self._row("hybrid", 0.9), self._row("hybrid", None),
                self._row("control", 0.9), self._row("control", 1.1),
                self._row("control", None)]
        text = markdown_table({"results": rows})
        assert "at or above the 0.95x floor in 1 of 3" in text
        assert "ranges 0.90-1.10x where it reaches the target and misses it in 1 of 3" in text
        assert "(1 of 3 at or above 0.95x)" in text


class TestOverrun:
    def test_run_goes_past_the_budget_until_the_target(self):
        """run_steps lets a method continue past the budget; stop_at ends it once there."""
        from hpcore.bench.runner import run_curve
        from hpcore.bench.workloads import get_task

        pytest.importorskip("sklearn", reason="digits ship with scikit-learn")
        task = get_task("numpy-mlp-digits", "sgd")
        base = run_curve(task, lr=0.02, steps=100, seed=0, eval_every=25)
        target = float(base.val_loss[-1])
        slow = run_curve(task, lr=0.005, steps=100, seed=0, eval_every=25, run_steps=1000,
                         stop_at=target)
        assert slow.steps[-1] > 100  # the slower run needed more than the budget
        assert slow.val_loss[-1] <= target and slow.steps[-1] < 1000
        assert np.all(slow.val_loss[:-1][slow.steps[:-1] >= 100] > target)

    def test_equal_step_loss_is_read_at_the_budget(self):
        """seed_result compares final losses at the baseline's budget, not at the overrun."""
        base = curve("baseline", [2.0, 1.0], [0.0, 1.0], [0, 100])
        base = Curve("baseline", np.array([0.0, 100.0]), base.wall, base.backward, base.val_loss,
                     base.val_acc, [], None)
        other = Curve("hybrid", np.array([0.0, 100.0, 150.0]), np.array([0.0, 0.5, 0.8]),
                      np.array([0.0, 60.0, 90.0]), np.array([2.0, 1.2, 0.9]),
                      np.array([0.1, 0.5, 0.6]), [], {"predicted_steps": 50})
        r = seed_result(base, other)
        # 2-point means at the budget: (2.0 + 1.2) / 2 against (2.0 + 1.0) / 2
        assert r["final_val_loss"] == pytest.approx(1.6)
        assert r["final_loss_vs_baseline_pct"] == pytest.approx(100 * (1.6 / 1.5 - 1))
        assert r["reached"] and r["wall_speedup"] == pytest.approx(1.0 / 0.8)


class TestControl:
    def test_control_is_the_baseline_one_batch_out_of_line(self):
        """Same start, every step a backward pass, a different path: the data order alone."""
        from hpcore.bench.runner import run_curve
        from hpcore.bench.workloads import get_task

        pytest.importorskip("sklearn", reason="breast-cancer ships with scikit-learn")
        task = get_task("numpy-softmax-breastcancer", "sgd")
        base = run_curve(task, lr=0.03, steps=100, seed=0, eval_every=50)
        again = run_curve(task, lr=0.03, steps=100, seed=0, eval_every=50)
        control = run_curve(task, lr=0.03, steps=100, seed=0, eval_every=50, method="control")
        np.testing.assert_array_equal(again.val_loss, base.val_loss)  # runs are deterministic
        assert control.val_loss[0] == base.val_loss[0]
        assert control.val_loss[-1] != base.val_loss[-1]
        np.testing.assert_array_equal(control.backward, control.steps)
        summary = summarise([{**seed_result(base, control), **BEYOND}])
        assert verdict(summary, "control").startswith("noise")


class TestSideBySide:
    def test_runs_taken_together_are_the_runs_taken_alone(self):
        """run_together interleaves runs one validation interval at a time, each once per
        round in a shuffled order (the order of the steps shows it), and changes nothing but
        their timing."""
        from hpcore.bench.runner import CurveRun, run_curve, run_together
        from hpcore.bench.workloads import get_task

        pytest.importorskip("sklearn", reason="breast-cancer ships with scikit-learn")
        task = get_task("numpy-softmax-breastcancer", "sgd")
        order: list[tuple[str, int]] = []
        runs = [CurveRun(task, lr=0.03, steps=100, seed=0, eval_every=25, method=m,
                         on_step=lambda i, m=m: order.append((m, i)))
                for m in ("baseline", "control")]
        run_together(runs)
        assert all(r.done for r in runs)
        blocks = [order[k][0] for k in range(0, len(order), 25)]
        rounds = [tuple(blocks[k:k + 2]) for k in range(0, 8, 2)]
        assert all(sorted(r) == ["baseline", "control"] for r in rounds)
        assert len(set(rounds)) == 2  # both orders occur
        for r in runs:
            alone = run_curve(task, lr=0.03, steps=100, seed=0, eval_every=25, method=r.method)
            together = r.curve()
            np.testing.assert_array_equal(together.steps, alone.steps)
            np.testing.assert_array_equal(together.val_loss, alone.val_loss)
            assert np.all(np.diff(together.wall) > 0)

    def test_a_target_set_at_the_budget_stops_a_run_that_is_there(self):
        """The suite takes the methods side by side to the budget, then tells them the
        baseline's target: a run already there stops, one that is not goes on to it."""
        from hpcore.bench.runner import CurveRun, run_together
        from hpcore.bench.workloads import get_task

        pytest.importorskip("sklearn", reason="digits ship with scikit-learn")
        task = get_task("numpy-mlp-digits", "sgd")
        base = CurveRun(task, lr=0.02, steps=100, seed=0, eval_every=25)
        slow = CurveRun(task, lr=0.005, steps=100, seed=0, eval_every=25, run_steps=1000)
        same = CurveRun(task, lr=0.02, steps=100, seed=0, eval_every=25, run_steps=1000)
        run_together([base, slow, same], until=100)
        assert base.done and not slow.done and not same.done
        target = float(base.curve().val_loss[-1])
        for r in (slow, same):
            r.set_target(target)
        assert same.done and same.i == 100
        run_together([slow, same])
        assert slow.done and 100 < slow.i < 1000
        assert slow.curve().val_loss[-1] <= target


def test_a_step_in_which_jax_compiled_is_left_out_of_the_wall_clock(monkeypatch):
    """JIT warm-up is a one-off cost: a step during which JAX reported compilation is left
    out of the wall clock whole, its first call's set-up beyond the reported compile time
    included (here a step that sleeps 50 ms and reports 1 ms of compilation)."""
    import time

    from hpcore.bench import runner
    from hpcore.bench.workloads import get_task

    pytest.importorskip("sklearn", reason="breast-cancer ships with scikit-learn")
    clock = [0.0]
    monkeypatch.setattr(runner, "compile_seconds", lambda: clock[0])
    run = runner.CurveRun(get_task("numpy-softmax-breastcancer", "sgd"), lr=0.03, steps=20,
                          seed=0, eval_every=10)
    plain = run._step

    def step(batch):
        if run.i == 3:
            time.sleep(0.05)
            clock[0] += 0.001
        return plain(batch)

    run._step = step
    run.advance(20)
    assert run.done
    assert 0.0 < run.wall < 0.02


class TestTruncated:
    def test_cuts_points_spans_and_timed_counts_at_the_step(self):
        """Points after the step go, a span across it ends there, one after it goes; the
        untimed steps (JAX's compilation) are counted before the cut."""
        from hpcore.bench.runner import truncated

        c = Curve("hybrid", np.array([0.0, 10.0, 20.0, 30.0]), np.array([0.0, 1.0, 2.0, 3.0]),
                  np.array([0.0, 9.0, 15.0, 25.0]), np.array([2.0, 1.0, 0.8, 0.7]),
                  np.array([0.1, 0.5, 0.6, 0.7]), [(3, 3), (14, 18), (28, 30)],
                  {"jumps": 3}, None, 29, 24)
        cut = truncated(c, 25)  # the last point at or before 25 is step 20
        np.testing.assert_array_equal(cut.steps, [0.0, 10.0, 20.0])
        np.testing.assert_array_equal(cut.val_loss, [2.0, 1.0, 0.8])
        assert cut.wall[-1] == 2.0 and cut.backward[-1] == 15.0
        assert cut.predict_spans == [(3, 3), (14, 18)]
        assert (cut.timed_steps, cut.timed_backward) == (19, 14)  # one untimed step, before
        assert cut.statistics == {"jumps": 3}  # the whole run's
        assert truncated(c, 20).predict_spans == [(3, 3), (14, 18)]
        assert truncated(c, 16).predict_spans == [(3, 3), (14, 16)]

    def test_a_step_at_or_past_the_end_keeps_the_curve(self):
        from hpcore.bench.runner import truncated

        assert truncated(BASE, 30) is BASE and truncated(BASE, 1000) is BASE
        assert truncated(BASE, 0).steps.tolist() == [0.0]

    def test_negative_step_is_refused(self):
        from hpcore.bench.runner import truncated

        with pytest.raises(ValueError, match="negative step \\(got -1\\)"):
            truncated(BASE, -1)

    def test_a_run_past_its_budget_cut_at_it_is_the_run_at_it(self):
        """A baseline run on to 150 steps, cut at its budget of 100, is the 100-step run
        (same points, same losses); its engine-time inputs count 100 steps."""
        from hpcore.bench.runner import run_curve, truncated
        from hpcore.bench.workloads import get_task

        pytest.importorskip("sklearn", reason="breast-cancer ships with scikit-learn")
        task = get_task("numpy-softmax-breastcancer", "sgd")
        at = run_curve(task, lr=0.03, steps=100, seed=0, eval_every=25)
        long = run_curve(task, lr=0.03, steps=100, seed=0, eval_every=25, run_steps=150)
        cut = truncated(long, 100)
        assert long.steps[-1] == 150
        np.testing.assert_array_equal(cut.steps, at.steps)
        np.testing.assert_array_equal(cut.backward, at.backward)
        np.testing.assert_array_equal(cut.val_loss, at.val_loss)
        assert cut.steps_timed == 100 and cut.backward_timed == 100
