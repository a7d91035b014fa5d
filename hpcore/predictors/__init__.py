"""Predictors: map the snapshot window to a forecast displacement (DESIGN section 5)."""

from hpcore.config import LinearConfig, MLPConfig, PredictorConfig, RSSMConfig

from .base import Predictor
from .linear import LinearPredictor, line_weights
from .mlp import MLPPredictor
from .rssm import RSSMPredictor

__all__ = ["LinearPredictor", "MLPPredictor", "Predictor", "RSSMPredictor", "line_weights",
           "make_predictor"]


def make_predictor(config: PredictorConfig) -> Predictor:
    """The predictor a config names: Linear, MLP or RSSM-lite.

    Example:
        >>> type(make_predictor(MLPConfig())).__name__
        'MLPPredictor'
    """
    if isinstance(config, LinearConfig):
        return LinearPredictor(config)
    if isinstance(config, MLPConfig):
        return MLPPredictor(config)
    if isinstance(config, RSSMConfig):
        return RSSMPredictor(config)
    msg = f"no predictor for {type(config).__name__}; use LinearConfig, MLPConfig or RSSMConfig"
    raise TypeError(msg)
