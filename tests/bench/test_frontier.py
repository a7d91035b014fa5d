"""The compute-equivalent frontier: the baseline's cost for a loss, and a method's speed-up."""

from __future__ import annotations

import numpy as np
import pytest

from hpcore.bench.frontier import from_runs


class TestFromRuns:
    def test_keeps_the_lower_envelope_sorted_by_cost(self):
        """Points are sorted by cost; one no better than a cheaper one is dropped."""
        f = from_runs([400, 100, 200, 300], [0.3, 1.0, 0.5, 0.6])
        np.testing.assert_array_equal(f.cost, [100, 200, 400])
        np.testing.assert_array_equal(f.loss, [1.0, 0.5, 0.3])

    def test_non_finite_points_are_left_out(self):
        """A diverged run (nan or inf loss) is no point of the frontier."""
        f = from_runs([100, 200, 300], [1.0, float("nan"), 0.5])
        np.testing.assert_array_equal(f.cost, [100, 300])

    def test_bad_shapes_are_refused(self):
        """costs and losses must pair up."""
        with pytest.raises(ValueError, match="must be 1-D of one length"):
            from_runs([1, 2], [1.0])


class TestFrontier:
    def test_cost_for_interpolates_between_points(self):
        """A loss between two points costs the interpolated budget."""
        f = from_runs([100, 200], [1.0, 0.5])
        assert f.cost_for(0.75) == pytest.approx(150.0)
        assert f.cost_for(0.5) == pytest.approx(200.0)

    def test_a_loss_beyond_every_budget_has_no_cost(self):
        """Below the best baseline point the frontier cannot price it."""
        f = from_runs([100, 200], [1.0, 0.5])
        assert f.cost_for(0.4) is None and f.speedup(0.4, 100.0) is None

    def test_speedup_is_the_baselines_cost_over_the_methods(self):
        """A method at the loss the baseline needs 200 for, spending 100: 2x; worse: < 1."""
        f = from_runs([100, 200, 400], [1.0, 0.5, 0.25])
        assert f.speedup(0.5, 100.0) == pytest.approx(2.0)
        assert f.speedup(1.0, 200.0) == pytest.approx(0.5)
