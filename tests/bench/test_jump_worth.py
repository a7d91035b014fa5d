"""``benchmarks/jump_worth.py``: its measure at equal backward passes and its judge patch."""

from __future__ import annotations

import importlib.util
import math
from itertools import islice
from pathlib import Path

import attrs
import numpy as np
import pytest

from hpcore import HybridTrainerConfig, LinearConfig, Phase
from hpcore.bench.runner import Curve
from hpcore.bench.workloads import get_task
from hpcore.controller import Controller, Observation, StepKind

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


def _judgements(config: HybridTrainerConfig, bump: float) -> list[str]:
    """Drive the pure controller over a falling loss (Correct-phase losses raised by
    ``bump``) and collect every judgement it gives."""
    controller = Controller(config, min_snapshots=config.predictor.window)
    s, judged = controller.init(), []
    for i in range(600):
        a = s.action
        if a.kind is StepKind.PREDICTED:
            s, a = controller.update(s, Observation(StepKind.PREDICTED))
        else:
            loss = 2.0 - 0.001 * i + 0.01 * (-1) ** i + (bump if s.phase is Phase.CORRECT else 0.0)
            s, a = controller.update(s, Observation(StepKind.FULL, loss=loss,
                                                    snapshot=a.observe and a.snapshot))
        if a.forecast:
            if a.judge:
                judged.append(a.judge)
            s, a = controller.update(s, Observation(StepKind.FORECAST, confidence=1.0))
        if a.judge:
            judged.append(a.judge)
    return judged


CONFIG = HybridTrainerConfig(floor=None, full_steps=30, correct_steps=10, max_predict_steps=20,
                             check_interval=5, snapshot_interval=2, history_size=4,
                             predictor=LinearConfig(window=4))


class TestJudgeKeepsEveryJump:
    def test_a_jump_the_judge_rolls_back_is_kept_inside_the_context(self):
        """Correct-phase losses far above the trend: the judge rolls every jump back; inside
        the context the same jumps are kept; outside it the judge is the controller's own."""
        original = Controller._judge
        judged = _judgements(CONFIG, bump=0.5)
        assert judged and set(judged) == {"rollback"}
        with jump_worth.judge_keeps_every_jump():
            assert Controller._judge is not original
            kept = _judgements(CONFIG, bump=0.5)
        assert Controller._judge is original
        assert kept and set(kept) == {"keep"}
        assert _judgements(CONFIG, bump=0.5) == judged

    def test_the_workload_runs_with_it(self):
        """The NumPy digits run under the patch: every jump judged on a finite loss is kept."""
        task = get_task("numpy-mlp-digits", "sgd")
        config = attrs.evolve(CONFIG, confidence_threshold=0.0, warmup_steps=20)
        with jump_worth.judge_keeps_every_jump():
            run = task.build(seed=0, lr=0.02, steps=300)
            trainer = run.make_hybrid(attrs.evolve(config, total_steps=300))
            for batch in islice(run.batches(), 300):
                trainer.step(batch)
        jumps = trainer.jumps
        assert jumps and not any(j.rolled_back for j in jumps if math.isfinite(j.loss_after))
