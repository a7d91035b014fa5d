"""Predictors: map the snapshot window to a forecast displacement (DESIGN section 5)."""

from hpcore.config import LinearConfig, PredictorConfig

from .base import Predictor
from .linear import LinearPredictor, line_weights

__all__ = ["LinearPredictor", "Predictor", "line_weights", "make_predictor"]


def make_predictor(config: PredictorConfig) -> Predictor:
    """The predictor a config names; a config without an implementation is refused here."""
    if isinstance(config, LinearConfig):
        return LinearPredictor(config)
    msg = (
        f"{type(config).__name__} is accepted by the config but the engine does not implement "
        f"it yet; use LinearConfig (the tested default) until the learned predictors land"
    )
    raise NotImplementedError(msg)
