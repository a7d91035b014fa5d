"""hpcore: predict some optimizer steps instead of computing them (hybrid-predict-trainer).

The core is framework-agnostic; ``hpcore.adapters.torch``, ``.jax`` and ``.numpy`` wrap a
user's optimizer in it.
"""

from hpcore import optim
from hpcore.checkpoint import CheckpointError
from hpcore.config import (
    CheckpointConfig,
    DivergenceConfig,
    HybridTrainerConfig,
    LinearConfig,
    MLPConfig,
    RSSMConfig,
)
from hpcore.divergence import DivergenceEvent, Level
from hpcore.types import Phase, StepResult, TrainingStatistics

__version__ = "0.2.0"

__all__ = [
    "CheckpointConfig",
    "CheckpointError",
    "DivergenceConfig",
    "DivergenceEvent",
    "HybridTrainerConfig",
    "LinearConfig",
    "Level",
    "MLPConfig",
    "Phase",
    "RSSMConfig",
    "StepResult",
    "TrainingStatistics",
    "optim",
]
