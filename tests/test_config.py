"""HybridTrainerConfig and its parts: defaults, builder, validation messages."""

from __future__ import annotations

import attrs
import pytest

from hpcore import HybridTrainerConfig
from hpcore.config import CheckpointConfig, DivergenceConfig, LinearConfig, MLPConfig, RSSMConfig


class TestHybridTrainerConfig:
    def test_builder_matches_keywords(self):
        """The fluent builder and keyword construction give equal configs."""
        built = HybridTrainerConfig.builder().warmup_steps(200).max_predict_steps(60).build()
        assert built == HybridTrainerConfig(warmup_steps=200, max_predict_steps=60)

    def test_builder_unknown_field(self):
        """A misspelt field name is refused with the list of fields."""
        with pytest.raises(AttributeError, match="has no field 'warmup'"):
            HybridTrainerConfig.builder().warmup(3)

    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("max_predict_steps", 0, "'max_predict_steps' must be >= 1 (got 0)"),
            ("warmup_steps", -1, "'warmup_steps' must be >= 0 (got -1)"),
            ("full_steps", 2.5, "'full_steps' must be an int >= 1 (got 2.5)"),
            ("confidence_threshold", 1.5, "'confidence_threshold' must be in [0.0, 1.0] (got 1.5)"),
            ("snapshot_ema", 1.0, "'snapshot_ema' must be in [0.0, 1.0) (got 1.0)"),
            ("history_size", 1, "'history_size' must be >= 2 (got 1)"),
            ("divergence_threshold", 0.0, "'divergence_threshold' must be in (0.0, 1000000000.0]"),
            ("collect_metrics", "yes", "'collect_metrics' must be <class 'bool'>"),
        ],
    )
    def test_bad_value_names_field_and_range(self, field, value, message):
        """A value out of range fails at construction, naming the field and the rule."""
        with pytest.raises((ValueError, TypeError)) as info:
            HybridTrainerConfig(**{field: value})
        assert message in str(info.value)

    def test_window_larger_than_history(self):
        """The predictor's window cannot exceed the snapshot ring."""
        with pytest.raises(ValueError, match=r"'predictor.window' must be <= 'history_size'"):
            HybridTrainerConfig(history_size=4, predictor=LinearConfig(window=6))

    def test_frozen_and_evolve(self):
        """Configs are frozen; attrs.evolve validates the new value."""
        cfg = HybridTrainerConfig()
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            cfg.warmup_steps = 3
        with pytest.raises(ValueError, match="'correct_steps' must be >= 1"):
            attrs.evolve(cfg, correct_steps=0)

    def test_sub_configs(self):
        """Predictor, divergence and checkpoint configs validate their own fields."""
        assert isinstance(HybridTrainerConfig().predictor, LinearConfig)
        with pytest.raises(ValueError, match="'predictor' must be a LinearConfig"):
            HybridTrainerConfig(predictor="linear")
        with pytest.raises(ValueError, match="'stochastic_dim' must be a multiple"):
            RSSMConfig(stochastic_dim=10, num_categoricals=4)
        with pytest.raises(ValueError, match="'hidden_dim' must be >= 1"):
            MLPConfig(hidden_dim=0)
        with pytest.raises(ValueError, match="'baseline_decay' must be in"):
            DivergenceConfig(baseline_decay=1.0)
        with pytest.raises(ValueError, match=r"'probe_cost' must be in \[0.0, 1000000.0\] \(got -1\)"):
            HybridTrainerConfig(probe_cost=-1)
        with pytest.raises(ValueError, match="'keep_last_n' must be >= 1"):
            CheckpointConfig(keep_last_n=0)
