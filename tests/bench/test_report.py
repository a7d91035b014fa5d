"""The main job's report: the baseline's frontier points, the compute-equivalent and the plot."""

from __future__ import annotations

import numpy as np
import pytest

from hpcore.bench.report import compute_equivalent, figure, frontier_points, jump_backward, plot
from hpcore.bench.runner import Curve

pytest.importorskip("matplotlib", reason="the plot needs matplotlib (bench extra)")


def _curve(label, steps, backward, loss, spans=()):
    steps = np.asarray(steps, float)
    return Curve(label, steps, steps / 100.0, np.asarray(backward, float),
                 np.asarray(loss, float), np.zeros(len(steps)), list(spans), None)


# The baseline run on to 300 steps; the hybrid at its budget of 200, 50 steps predicted.
BASE = _curve("baseline", [0, 50, 100, 150, 200, 250, 300], [0, 50, 100, 150, 200, 250, 300],
              [4.0, 2.0, 1.6, 1.4, 1.3, 1.2, 1.1])
HYB = _curve("hybrid", [0, 50, 100, 150, 200], [0, 50, 70, 120, 150],
             [4.0, 2.0, 1.5, 1.3, 1.2], spans=[(61, 80), (151, 160), (171, 190)])


def test_jump_backward_counts_the_full_steps_before_each_span():
    """A predicted step adds no backward pass: each jump sits at its start less the
    predicted steps before it."""
    assert jump_backward([(61, 80), (151, 160), (171, 190)]) == [60, 130, 140]
    assert jump_backward([]) == []


def test_frontier_points_are_the_baselines_smoothed_points_past_the_start():
    points = frontier_points(BASE, 2)
    assert points["backward"] == [50.0, 100.0, 150.0, 200.0, 250.0, 300.0]
    assert points["wall"] == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert points["loss"] == pytest.approx([3.0, 1.8, 1.5, 1.35, 1.25, 1.15])


class TestComputeEquivalent:
    def test_places_the_hybrid_on_the_baselines_whole_curve(self):
        """The hybrid's 1.2 at 150 backward passes: the baseline needs 250 (past the
        hybrid's budget of 200, on the part run on beyond it)."""
        eq = compute_equivalent(BASE, HYB, "constant", 1)
        assert eq["baseline_backward_needed"] == pytest.approx(250.0)
        assert eq["backward_speedup"] == pytest.approx(250.0 / 150.0)
        assert eq["wall_speedup"] == pytest.approx(2.5 / 2.0)

    def test_below_the_whole_frontier_says_how_far_it_reached(self):
        better = _curve("hybrid", [0, 100, 200], [0, 80, 150], [4.0, 1.5, 1.0])
        eq = compute_equivalent(BASE, better, "constant", 1)
        assert eq["backward_speedup"] is None
        assert "below every point of the baseline's curve (more than its 300 backward" in eq["summary"]

    def test_annealed_schedule_reports_none(self):
        eq = compute_equivalent(BASE, HYB, "wsd", 1)
        assert eq["backward_speedup"] is None and "not computed under a wsd schedule" in eq["summary"]


class TestFigure:
    def _fig(self, schedule="constant"):
        eq = compute_equivalent(BASE, HYB, schedule, 1)
        return figure(BASE, HYB, "title", equivalent=eq)

    def test_two_log_panels_against_backward_passes_and_seconds(self):
        fig = self._fig()
        ax_b, ax_w = fig.axes
        assert ax_b.get_xlabel() == "backward passes" and ax_w.get_xlabel().startswith("seconds")
        assert ax_b.get_yscale() == ax_w.get_yscale() == "log"
        base = ax_b.get_lines()[0]
        assert base.get_label() == "baseline (frontier)"
        assert base.get_xdata()[-1] == 300.0  # drawn to its end, past the hybrid's budget

    def test_jumps_as_bands_on_backward_passes_and_spans_shaded_on_seconds(self):
        ax_b, ax_w = self._fig().axes
        vertical = [ln.get_xdata()[0] for ln in ax_b.get_lines()
                    if len(ln.get_xdata()) == 2 and ln.get_xdata()[0] == ln.get_xdata()[1]]
        assert vertical == [60, 130, 140]
        assert len(ax_w.patches) == 3  # one shaded span each

    def test_the_compute_equivalent_point_is_marked_on_the_final_loss_line(self):
        for ax, x in zip(self._fig().axes, (250.0, 2.5), strict=True):
            labels = {ln.get_label(): ln for ln in ax.get_lines()}
            assert labels["hybrid's final loss"].get_ydata()[0] == pytest.approx(1.2)
            marker = labels["compute-equivalent"]
            assert marker.get_xdata()[0] == pytest.approx(x)
            assert marker.get_ydata()[0] == pytest.approx(1.2)

    def test_no_frontier_no_marker_under_an_annealed_schedule(self):
        ax_b, _ = self._fig("cosine").axes
        labels = [ln.get_label() for ln in ax_b.get_lines()]
        assert "baseline" in labels and "baseline (frontier)" not in labels
        assert "compute-equivalent" not in labels and "hybrid's final loss" in labels


def test_plot_writes_a_png(tmp_path):
    """The old call (no compute-equivalent) still works and writes the file."""
    path = plot(tmp_path / "p.png", BASE, HYB, "title")
    assert path.stat().st_size > 0
