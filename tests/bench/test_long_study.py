"""The long-run study: baselines at several budgets, the hybrid trainer placed on them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hpcore import HybridTrainerConfig, LinearConfig
from hpcore.bench.frontier import from_runs
from hpcore.bench.long_study import BUDGETS, markdown_rows, seed_study, summarise
from hpcore.bench.workloads import get_task

TASK = get_task("numpy-mlp-digits", "adam")
# A config that jumps within 200 steps, so that the study places a hybrid that predicted.
FAST = HybridTrainerConfig(
    warmup_steps=0, history_size=4, snapshot_interval=5, full_steps=20, correct_steps=10,
    max_predict_steps=20, check_interval=10, floor=None, anneal_share=None,
    predictor=LinearConfig(window=4),
)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_a_seed_places_the_hybrid_on_the_baselines_frontier(schedule):
    """Constant: one baseline run to the longest budget gives the points (its prefix); an
    annealed schedule: one run a budget. The speed-ups are the frontier's cost for the
    hybrid's final loss over the hybrid's own cost."""
    steps = 200
    r = seed_study(TASK, schedule=schedule, steps=steps, seed=3, lr=3e-3, config=FAST,
                   eval_every=25)
    front = r["frontier"]
    if schedule == "constant":
        assert max(front["backward"]) == pytest.approx(max(BUDGETS) * steps)
    else:
        assert sorted(front["backward"]) == [round(b * steps) for b in BUDGETS]
    assert r["predicted_pct"] > 0 and r["backward_passes"] < steps
    f = from_runs(front["backward"], front["loss"])
    expect = f.speedup(r["final_val_loss"], r["backward_passes"])
    assert r["backward_speedup"] == expect
    assert r["beyond_frontier"] == (f.cost_for(r["final_val_loss"]) is None)
    assert math.isfinite(r["final_val_loss"]) and np.isfinite(front["wall"]).all()


def test_summary_keeps_beyond_the_frontier_apart_and_the_table_says_it():
    """A seed beyond every budget counts as infinitely fast in the median and reads
    'beyond'; losses are medians with their range."""
    seeds = [{"backward_speedup": s, "wall_speedup": w, "final_loss_vs_baseline_pct": f,
              "predicted_pct": 20.0, "jumps": 3, "kept": 2, "rollbacks": 1}
             for s, w, f in ((1.2, 1.1, -1.0), (None, 1.3, -2.0), (0.9, 0.8, 0.5))]
    s = summarise(seeds)
    assert s["backward_speedup"] == (1.2, 0.9, None)
    assert s["wall_speedup"] == (1.1, 0.8, 1.3)
    assert s["kept"] == 6 and s["rollbacks"] == 3
    text = markdown_rows([{"task": "t", "schedule": "wsd", "lr": 1e-3, "steps": 10,
                           "summary": s}])
    assert "1.20x (0.90x-beyond)" in text and "-1.0% (-2.0 to +0.5)" in text
