"""``benchmarks/jump_worth.py``: its measure at equal backward passes and its judge patch."""

from __future__ import annotations

import importlib.util
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from hpcore import HybridTrainerConfig
from hpcore.bench.runner import Curve
from hpcore.bench.workloads import get_task
from hpcore.engine import HybridEngine

pytest.importorskip("sklearn", reason="the digits data ship with scikit-learn")

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "jump_worth.py"
_spec = importlib.util.spec_from_file_location("jump_worth", _PATH)
jump_worth = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(jump_worth)


def curve(steps, backward, loss) -> Curve:
    n = len(steps)
    return Curve("c", np.asarray(steps, float), np.zeros(n), np.asarray(backward, float),
                 np.asarray(loss, float), np.zeros(n), [], None)


class TestAtEqualBackward:
    BASE = curve([0, 100, 200, 300, 400], [0, 100, 200, 300, 400], [2.0, 1.6, 1.2, 1.0, 0.9])

    def test_a_run_on_the_baselines_curve_reads_zero(self):
        # Window 3: the run's last three losses average 1.2 after 300 backward passes...
        run = curve([0, 100, 200, 300, 400], [0, 100, 200, 250, 300], [2.0, 1.4, 1.3, 1.2, 1.1])
        # ...and the baseline's running mean at step 300 is (1.6 + 1.2 + 1.0) / 3.
        ref = (1.6 + 1.2 + 1.0) / 3
        assert jump_worth.at_equal_backward(self.BASE, run) == pytest.approx(
            100 * ((1.3 + 1.2 + 1.1) / 3 / ref - 1))

    def test_interpolates_between_evaluations(self):
        run = curve([0, 100, 400], [0, 100, 250], [1.0, 1.0, 1.0])  # mean 1.0 after 250
        base_mean = jump_worth.smoothed(self.BASE, 3)
        ref = (base_mean[2] + base_mean[3]) / 2
        assert jump_worth.at_equal_backward(self.BASE, run) == pytest.approx(100 * (1 / ref - 1))


def test_the_judge_patch_keeps_judged_jumps_and_is_undone():
    """Inside the context every judged jump is kept (no rollback), outside the engine's own
    judge is back."""
    original = HybridEngine._finish_jump
    run = get_task("numpy-mlp-digits", "sgd").build(seed=0, lr=1e-3, steps=400)
    data = run.batches()

    # The judge rolls back a jump whose probe loss did not fall: make every one look so.
    config = HybridTrainerConfig(floor=None, warmup_steps=20, full_steps=30, correct_steps=5,
                                 max_predict_steps=10)
    with jump_worth.judge_keeps_every_jump():
        assert HybridEngine._finish_jump is not original
        trainer = run.make_hybrid(config)
        engine = trainer.engine
        real_probe = HybridEngine._probe_loss
        engine._probe_loss = lambda: real_probe(engine) + (
            1.0 if engine.phase.value == "correct" else 0.0)
        for batch in islice(data, 400):
            trainer.step(batch)
        judged = [j for j in engine.jump_records if j.reason == "judged"]
    assert HybridEngine._finish_jump is original
    assert judged and not any(j.rolled_back for j in judged)
