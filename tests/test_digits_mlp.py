"""End to end: a NumPy MLP on scikit-learn's digits, hybrid against plain.

The default config less its floor guard (the runner tells it the step budget as
``total_steps``): the guard's slack over 1,500 steps affords about one jump, and this test
is about what jumps do to accuracy.
"""

from __future__ import annotations

import logging

import pytest
import structlog

from hpcore import HybridTrainerConfig
from hpcore.bench.runner import digits_mlp, run_curve, time_to_target

pytest.importorskip("sklearn", reason="the digits data ships with scikit-learn")

STEPS = 1500


@pytest.fixture(autouse=True)
def quiet_trainer():
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    yield
    structlog.reset_defaults()


@pytest.mark.slow
@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.05), ("adam", 1e-3)], ids=["sgd-momentum", "adam"])
@pytest.mark.parametrize("seed", [0, 1, 2], ids=lambda s: f"seed{s}")
def test_default_config_matches_plain_accuracy(optimizer, lr, seed):
    """Same step budget: accuracy within 1 point of the plain loop, backward passes skipped."""
    work = digits_mlp(seed, optimizer)
    base = run_curve(work, lr=lr, steps=STEPS, seed=seed)
    hyb = run_curve(work, lr=lr, steps=STEPS, seed=seed, config=HybridTrainerConfig(floor=None))
    stats = hyb.statistics
    ttt = time_to_target(base, hyb)
    skipped = 1 - stats["backward_passes"] / stats["total_steps"]
    print(
        f"\n{work.name} seed {seed}: acc plain {base.val_acc[-1]:.4f} hybrid {hyb.val_acc[-1]:.4f}; "
        f"val loss plain {base.val_loss[-1]:.4f} hybrid {hyb.val_loss[-1]:.4f}; "
        f"backward skipped {skipped:.1%}; jumps {stats['jumps_accepted']}/{stats['jumps']}; "
        f"time-to-target ratio (wall) {ttt['wall_speedup']}, (backward) {ttt['backward_speedup']}"
    )
    assert hyb.val_acc[-1] >= base.val_acc[-1] - 0.01
    assert stats["predicted_steps"] > 0
    assert stats["backward_passes"] < stats["total_steps"]
