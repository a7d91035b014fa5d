"""hpcore: predict some optimizer steps instead of computing them (hybrid-predict-trainer).

The engine is framework-agnostic; ``hpcore.adapters.numpy``, ``.torch`` and ``.jax`` connect
it to a training loop.
"""

from hpcore import optim
from hpcore.config import (
    CheckpointConfig,
    DivergenceConfig,
    HybridTrainerConfig,
    LinearConfig,
    MLPConfig,
    RSSMConfig,
)
from hpcore.divergence import DivergenceEvent, Level
from hpcore.engine import HybridEngine, JumpRecord
from hpcore.port import FullStepOutput, TrainingPort
from hpcore.types import Phase, StepResult, TrainingStatistics

__version__ = "0.1.0"

__all__ = [
    "CheckpointConfig",
    "DivergenceConfig",
    "DivergenceEvent",
    "FullStepOutput",
    "HybridEngine",
    "HybridTrainerConfig",
    "JumpRecord",
    "LinearConfig",
    "Level",
    "MLPConfig",
    "Phase",
    "RSSMConfig",
    "StepResult",
    "TrainingPort",
    "TrainingStatistics",
    "optim",
]
