"""The suite's compute-equivalent headline: per-seed numbers, medians, the table, the step count."""

from __future__ import annotations

import pytest

from hpcore.bench.suite import SUITE_METHODS, markdown_table, run_suite, summarise, total_steps
from hpcore.bench.workloads import WORKLOADS


def seed(backward, wall, beyond=False):
    """A seed's record as the suite keeps it (time-to-target parts held fixed)."""
    return {"equivalent_backward_speedup": backward, "equivalent_wall_speedup": wall,
            "beyond_frontier": beyond, "reached": True, "wall_speedup": 1.0,
            "backward_speedup": 1.0, "final_loss_vs_baseline_pct": 0.0, "predicted_pct": 0.0,
            "rollbacks": 0, "overhead_pct": 0.0}


class TestSummary:
    def test_median_and_range_with_beyond_as_infinity(self):
        s = summarise([seed(1.2, 1.1), seed(None, 1.3, beyond=True), seed(0.9, 0.8)])
        assert s["equivalent_backward_speedup"] == (1.2, 0.9, None)
        assert s["equivalent_wall_speedup"] == (1.1, 0.8, 1.3)
        assert s["beyond_frontier"] == 1


class TestTable:
    def _row(self, method, backward, wall):
        s = summarise([seed(backward, wall)])
        return {"workload": "w", "optimizer": "sgd", "schedule": "cosine", "method": method,
                "lr": 0.1, "steps": 100, "summary": s, "verdict": "v"}

    def test_the_compute_equivalent_columns_come_first_after_the_configuration(self):
        text = markdown_table({"results": [self._row("hybrid", 1.5, 0.8),
                                           self._row("control", None, 1.0)]})
        lines = text.splitlines()
        head = [c.strip() for c in lines[0].strip("|").split("|")]
        assert head[:7] == ["workload", "optimizer", "schedule", "method",
                            "compute-equivalent, backward passes",
                            "compute-equivalent, wall-clock", "time-to-target, wall"]
        assert lines[2].startswith("| w | sgd | cosine | hybrid | 1.50x (1.50x-1.50x) | "
                                   "0.80x (0.80x-0.80x) | 1.00x |")
        assert lines[3].startswith("| w | sgd | cosine | control | beyond (beyond-beyond) | ")
        assert ("the hybrid trainer's median is at or above 1x in backward passes in 1 of 1 "
                "configurations and in wall-clock in 0 of 1") in text


class TestTotalSteps:
    def test_counts_the_frontiers_baseline_steps(self):
        """Per seed and schedule: constant runs the baseline on to 1.5 T, cosine runs it alone
        at 0.6, 0.8, 1.25 and 1.5 T."""
        grid = len(WORKLOADS["numpy-softmax-breastcancer"].lr_grids["sgd"])
        n = total_steps(["numpy-softmax-breastcancer"], seeds=2, steps=60,
                        schedules=("constant", "cosine"), optimizers=("sgd",))
        plain = 2 * (grid + 2 * (1 + len(SUITE_METHODS))) * 60
        assert n == plain + 2 * 30 + 2 * (36 + 48 + 75 + 90)

    def test_is_every_step_the_suite_takes_but_the_methods_past_the_budget(self):
        """A tiny suite: the steps it reports are the count plus each constant-rate method's
        steps past the budget (it goes on towards the target), none under cosine."""
        pytest.importorskip("sklearn", reason="breast-cancer ships with scikit-learn")
        ticks = []
        kw = {"seeds": 1, "steps": 60, "schedules": ("constant", "cosine"),
              "optimizers": ("sgd",)}
        suite = run_suite(["numpy-softmax-breastcancer"], on_step=ticks.append, **kw)
        over = {"constant": 0, "cosine": 0}
        for r in suite["results"]:
            over[r["schedule"]] += sum(p["steps_run"] - 60 for p in r["per_seed"])
        assert over["cosine"] == 0 and len(suite["results"]) == 2 * len(SUITE_METHODS)
        assert len(ticks) == total_steps(["numpy-softmax-breastcancer"], **kw) + over["constant"]
