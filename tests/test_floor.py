"""The floor guard's ledger, in full steps (DESIGN section 4), and the loss trend it prices with."""

from __future__ import annotations

import pytest

from hpcore import HybridTrainerConfig
from hpcore.floor import FloorState, credit, record
from hpcore.trend import TrendState, add, fit, relevel


class TestCredit:
    def test_slack_grows_with_the_steps_taken(self):
        """Without a run length the slack is ``1 - floor`` of the steps so far."""
        assert credit(FloorState(), 0.95, 0, None) == 0.0
        assert credit(FloorState(), 0.95, 2000, None) == pytest.approx(100.0)

    def test_a_known_run_length_gives_its_whole_slack_at_once(self):
        """With ``total_steps`` the slack is the whole run's from the first step."""
        assert credit(FloorState(), 0.9, 0, 1000) == pytest.approx(100.0)
        assert credit(FloorState(), 0.9, 1500, 1000) == pytest.approx(150.0)

    def test_gains_add_and_costs_subtract(self):
        """Kept jumps' gains add to the credit; probes and rollbacks are paid from it."""
        s = record(record(FloorState(), gained=12.5), spent=40.0)
        assert s == FloorState(gained=12.5, spent=40.0)
        assert credit(s, 0.95, 1000, None) == pytest.approx(50.0 + 12.5 - 40.0)

    def test_gains_count_at_the_lower_bound_of_their_sum(self):
        """Four jumps each 40 +- 30 steps: their sum, 160 +- 60, counts as 40 (160 - 2 x 60),
        where per-jump lower bounds would have summed to -80."""
        s = FloorState()
        for _ in range(4):
            s = record(s, gained=40.0, gained_se=30.0)
        assert s.variance == pytest.approx(3600.0)
        assert credit(s, 0.95, 0, 1000) == pytest.approx(50.0 + 160.0 - 120.0)

    def test_kept_jumps_never_drain_the_slack(self):
        """Kept jumps whose pooled estimate is negative (within the judge's noise) add
        nothing and take nothing: only probes and rollbacks are paid from the slack."""
        s = record(record(FloorState(), gained=-40.0, gained_se=30.0), spent=10.0)
        assert credit(s, 0.95, 0, 1000) == pytest.approx(50.0 - 10.0)

    def test_a_floor_of_one_is_refused(self):
        """floor must leave some slack (< 1): 1.0 would never let a jump act."""
        with pytest.raises(ValueError, match=r"'floor' must be in \[0.0, 1.0\) \(got 1.0\)"):
            HybridTrainerConfig(floor=1.0)


class TestTrend:
    def test_a_line_is_fitted_exactly(self):
        """Points on a line give its slope, zero noise and a significant slope."""
        s = TrendState(window=10)
        for t in range(10):
            s = add(s, t, 5.0 - 0.5 * t)
        f = fit(s)
        assert f.slope == pytest.approx(-0.5) and f.noise == pytest.approx(0.0, abs=1e-9)
        assert f.significant and f.value(12) == pytest.approx(-1.0)

    def test_the_window_keeps_the_newest_points(self):
        """Past ``window`` the oldest point leaves."""
        s = TrendState(window=3)
        for t in range(5):
            s = add(s, t, float(t))
        assert s.steps == (2.0, 3.0, 4.0)

    def test_noise_is_not_progress(self):
        """An alternating loss has no significant slope; fewer than 3 points give no fit."""
        s = TrendState(window=50)
        assert fit(add(add(s, 0, 1.0), 1, 2.0)) is None
        for t in range(40):
            s = add(s, t, 1.0 + (0.1 if t % 2 else -0.1))
        assert not fit(s).significant

    def test_relevel_moves_every_point(self):
        """A kept jump re-levels the stored losses; the slope stays."""
        s = TrendState(window=5)
        for t in range(5):
            s = add(s, t, 10.0 - t)
        moved = relevel(s, -2.0)
        assert fit(moved).slope == pytest.approx(fit(s).slope)
        assert fit(moved).level == pytest.approx(fit(s).level - 2.0)
