"""Property tests: random loss sequences with NaN/Inf bursts never leave a non-finite state;
jumps resume after a rollback."""

from __future__ import annotations

import logging

import attrs
import numpy as np
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcore import HybridTrainerConfig, LinearConfig
from hpcore.adapters.numpy import HybridTrainer
from hpcore.optim import SGD, Adam

KINDS = st.sampled_from(["ok"] * 6 + ["nan", "inf", "huge_grad", "nan_grad"])
CFG = HybridTrainerConfig(
    warmup_steps=5, full_steps=8, max_predict_steps=12, correct_steps=4, history_size=3,
    snapshot_interval=2, check_interval=3, predictor=LinearConfig(window=3), floor=None,
)


@pytest.fixture(autouse=True)
def quiet():
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    yield
    structlog.reset_defaults()


class Scripted:
    """A quadratic whose loss and gradient misbehave on the steps the script says."""

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.calls = 0

    def _kind(self) -> str:
        kind = self.script[self.calls % len(self.script)]
        self.calls += 1
        return kind

    def loss_and_grad(self, p, c):
        kind = self._kind()
        r = p.astype(np.float64) - c
        loss, grad = 0.5 * float(r @ r), r.astype(np.float32)
        if kind == "nan":
            return float("nan"), grad
        if kind == "inf":
            return float("inf"), grad
        if kind == "huge_grad":  # finite, but the update overflows float32
            return loss, np.full_like(grad, 3e38)
        if kind == "nan_grad":
            grad[0] = np.nan
        return loss, grad

    def probe(self, p) -> float:
        """A forward-only loss on a fixed probe point, misbehaving as the script says."""
        kind = self._kind()
        if kind in ("nan", "inf"):
            return float(kind)
        r = p.astype(np.float64) - 3.0
        return 0.5 * float(r @ r)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=st.lists(KINDS, min_size=1, max_size=40), adam=st.booleans(),
       steps=st.integers(20, 150), guarded=st.booleans(), probed=st.booleans())
def test_no_accepted_state_is_non_finite(script, adam, steps, guarded, probed):
    """Whatever the losses, gradients and probe losses do, jumping or held back by a floor
    guard whose slack affords no jump: a non-finite loss or gradient never reaches the
    parameters, and after every observed or predicted step they are finite (an update that
    overflows in the optimizer itself, as in the plain loop, is rolled back at the next
    observed step)."""
    problem = Scripted(script)
    opt = Adam(0.05) if adam else SGD(0.05, momentum=0.9)
    cfg = attrs.evolve(CFG, floor=0.95, total_steps=steps) if guarded else CFG
    params = np.zeros(6, np.float32)
    probe = (lambda: problem.probe(params)) if probed else None
    overflow_possible = "huge_grad" in script
    with np.errstate(all="ignore"):
        trainer = HybridTrainer(params, problem.loss_and_grad, opt, cfg, probe=probe)
        for i in range(steps):
            observed = trainer.statistics().observed_steps
            r = trainer.step(np.full(6, 3.0) + 0.01 * i)
            finite = bool(np.all(np.isfinite(params)))
            if not overflow_possible:
                assert finite, f"non-finite after step {i}"
            if r.was_predicted or trainer.statistics().observed_steps > observed:
                assert finite, f"non-finite after observed or predicted step {i}"
    s = trainer.statistics()
    assert sum(s.phase_steps.values()) == s.total_steps == steps
    assert s.backward_passes + s.predicted_steps == steps


def test_jumps_resume_after_a_rolled_back_jump():
    """A rolled-back jump sits out its back-off, then the trainer jumps again (the history
    is observed again in time for the next chance to jump)."""
    problem = Scripted(["ok"])
    trainer = HybridTrainer(np.zeros(6, np.float32), problem.loss_and_grad,
                            SGD(0.05, momentum=0.9), CFG)
    for i in range(300):
        trainer.step(np.full(6, 3.0) + 0.01 * i)
    assert trainer.jumps[0].rolled_back  # judged against a trend fitted on the steep start
    assert len(trainer.jumps) >= 2, trainer.statistics()
