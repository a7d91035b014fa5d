"""The baseline's frontier for one seed and a method placed on it (hpcore.bench.equivalent)."""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest

from hpcore.bench.equivalent import (
    BUDGETS,
    WINDOW,
    baseline_frontier,
    extra_baseline_steps,
    fmt_interval,
    frontier_steps,
    interval,
    place,
)
from hpcore.bench.frontier import from_runs
from hpcore.bench.runner import Curve, run_curve
from hpcore.bench.workloads import get_task

TASK = get_task("numpy-softmax-breastcancer", "sgd")


def curve(steps, loss, backward=None, wall=None):
    """A hand-made validation curve (backward passes = steps unless given)."""
    steps = np.asarray(steps, float)
    backward = steps if backward is None else np.asarray(backward, float)
    wall = steps / 100 if wall is None else np.asarray(wall, float)
    return Curve("x", steps, wall, backward, np.asarray(loss, float), np.full(len(steps), 0.5),
                 [], None)


# A constant-rate baseline to 1.5 x 60 steps, a point every 15.
LONG = curve([0, 15, 30, 45, 60, 75, 90], [3.0, 2.0, 1.6, 1.3, 1.0, 0.9, 0.85])


class TestSteps:
    def test_constant_runs_one_baseline_on_to_the_longest_budget(self):
        assert frontier_steps("constant", 60) == 90
        assert extra_baseline_steps("constant", 60) == 30
        assert frontier_steps("constant", 60, budgets=(0.5, 2.0)) == 120

    def test_annealed_runs_each_other_budget_alone(self):
        """0.6, 0.8, 1.25 and 1.5 x 60: 36 + 48 + 75 + 90 steps beyond the run at 60."""
        assert frontier_steps("cosine", 60) == 60
        assert extra_baseline_steps("cosine", 60) == 36 + 48 + 75 + 90
        assert extra_baseline_steps("wsd", 100, budgets=(0.5, 1.0)) == 50


class TestBaselineFrontier:
    def test_constant_rate_points_are_the_runs_points_past_the_window(self):
        """Points from index WINDOW on, each loss averaged over the WINDOW up to it; the two
        frontiers are those points' envelopes."""
        front = baseline_frontier(TASK, schedule="constant", steps=60, seed=0, lr=0.1,
                                  baseline=LONG)
        assert WINDOW == 3
        assert front.points["backward"] == [45.0, 60.0, 75.0, 90.0]
        assert front.points["wall"] == [0.45, 0.6, 0.75, 0.9]
        assert front.points["loss"] == pytest.approx(
            [(2.0 + 1.6 + 1.3) / 3, (1.6 + 1.3 + 1.0) / 3, (1.3 + 1.0 + 0.9) / 3,
             (1.0 + 0.9 + 0.85) / 3])
        np.testing.assert_array_equal(front.backward.cost, [45, 60, 75, 90])
        np.testing.assert_array_equal(front.wall.cost, [0.45, 0.6, 0.75, 0.9])

    def test_a_run_with_few_validation_points_keeps_its_last(self):
        """50 steps, a point every 50: points at 0, 50 and 75 only, none past the window."""
        short = curve([0, 50, 75], [3.0, 2.0, 1.0])
        front = baseline_frontier(TASK, schedule="constant", steps=50, seed=0, lr=0.1,
                                  baseline=short)
        assert front.points["backward"] == [75.0]
        assert front.points["loss"] == pytest.approx([2.0])

    def test_a_constant_rate_baseline_short_of_the_longest_budget_is_refused(self):
        with pytest.raises(ValueError, match="needs the baseline run to 90 steps \\(got 60\\)"):
            baseline_frontier(TASK, schedule="constant", steps=60, seed=0, lr=0.1,
                              baseline=curve([0, 30, 60], [3.0, 2.0, 1.0]))

    def test_an_annealed_schedule_runs_the_other_budgets_and_keeps_the_given_one(self):
        """One run per budget, each its own schedule, its last point; the run at T is the one
        given (its last loss, set by hand here, is the point), and the bar hears every step."""
        pytest.importorskip("sklearn", reason="breast-cancer ships with scikit-learn")
        kw = {"lr": 0.1, "seed": 1, "schedule": "cosine", "eval_every": 10}
        given = run_curve(TASK, steps=40, **kw)
        given = attrs.evolve(given, val_loss=np.append(given.val_loss[:-1], 0.123))
        ticks = []
        front = baseline_frontier(TASK, schedule="cosine", steps=40, seed=1, lr=0.1,
                                  baseline=given, eval_every=10, on_step=ticks.append)
        assert front.points["backward"] == [24.0, 32.0, 40.0, 50.0, 60.0]
        assert len(ticks) == extra_baseline_steps("cosine", 40) == 24 + 32 + 50 + 60
        assert front.points["loss"][2] == 0.123
        alone = run_curve(TASK, steps=24, **kw)  # the 0.6 x T run, annealed over 24 steps
        assert front.points["loss"][0] == float(alone.val_loss[-1])
        assert list(alone.steps) == [0, 10, 20, 24]
        f = from_runs(front.points["backward"], front.points["loss"])
        np.testing.assert_array_equal(front.backward.cost, f.cost)
        assert len(BUDGETS) == len(front.points["wall"])


class TestPlace:
    FRONT = baseline_frontier(TASK, schedule="constant", steps=60, seed=0, lr=0.1, baseline=LONG)

    def test_constant_rate_reads_the_method_at_the_budget_averaged(self):
        """A method run on past T is read at T: its 3-point mean there, its cost there."""
        m = curve([0, 15, 30, 45, 60, 75], [3.0, 1.8, 1.5, 1.2, 1.2, 0.5],
                  backward=[0, 15, 20, 25, 30, 45])
        p = place(self.FRONT, m, "constant", at=60)
        assert p.loss == pytest.approx(1.3) and p.backward == 30.0 and p.wall == 0.6
        need = self.FRONT.backward.cost_for(1.3)
        assert need == pytest.approx(60.0)  # the baseline's mean at 60 is (1.6+1.3+1.0)/3 = 1.3
        assert p.backward_speedup == pytest.approx(2.0) and not p.beyond
        assert p.wall_speedup == pytest.approx(1.0)

    def test_annealed_reads_the_last_point_and_beyond_is_none(self):
        m = curve([0, 30, 60], [3.0, 2.0, 0.5])
        p = place(self.FRONT, m, "cosine", at=60)
        assert p.loss == 0.5 and p.beyond
        assert p.backward_speedup is None and p.wall_speedup is None

    def test_a_diverged_run_reads_zero_not_beyond(self):
        m = curve([0, 30, 60], [3.0, math.inf, math.inf])
        p = place(self.FRONT, m, "cosine", at=60)
        assert (p.backward_speedup, p.wall_speedup, p.beyond) == (0.0, 0.0, False)


class TestInterval:
    def test_beyond_counts_as_infinity_and_reads_beyond(self):
        assert interval([1.2, None, 0.9]) == (1.2, 0.9, None)
        assert interval([None, None]) == (None, None, None)
        assert interval([2.0, 1.0]) == (1.5, 1.0, 2.0)
        assert fmt_interval((1.2, 0.9, None)) == "1.20x (0.90x-beyond)"
