"""Configuration of the hybrid trainer: frozen, validated attrs classes and a builder.

A bad value fails at construction with the field, the rule and the value, for example
``'max_predict_steps' must be >= 1 (got 0)``. Change a config with ``attrs.evolve``.
"""

from __future__ import annotations

from typing import Any

import attrs

__all__ = [
    "CheckpointConfig",
    "DivergenceConfig",
    "HybridTrainerConfig",
    "HybridTrainerConfigBuilder",
    "LinearConfig",
    "MLPConfig",
    "PredictorConfig",
    "RSSMConfig",
    "config_or_default",
]


def _int_at_least(lo: int) -> Any:
    def check(inst: Any, attr: attrs.Attribute, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            msg = f"'{attr.name}' must be an int >= {lo} (got {value!r})"
            raise ValueError(msg)
        if value < lo:
            msg = f"'{attr.name}' must be >= {lo} (got {value})"
            raise ValueError(msg)

    return check


def _float_in(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Any:
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"

    def check(inst: Any, attr: attrs.Attribute, value: Any) -> None:
        ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
        v = float(value) if ok_type else float("nan")
        inside = (
            ok_type
            and (v > lo if lo_open else v >= lo)
            and (v < hi if hi_open else v <= hi)
        )
        if not inside:
            msg = f"'{attr.name}' must be in {left}{lo}, {hi}{right} (got {value!r})"
            raise ValueError(msg)

    return check


def _one_of(*choices: str) -> Any:
    def check(inst: Any, attr: attrs.Attribute, value: Any) -> None:
        if value not in choices:
            msg = f"'{attr.name}' must be one of {', '.join(map(repr, choices))} (got {value!r})"
            raise ValueError(msg)

    return check


def _optional(check: Any) -> Any:
    def opt(inst: Any, attr: attrs.Attribute, value: Any) -> None:
        if value is not None:
            check(inst, attr, value)

    return opt


@attrs.frozen
class LinearConfig:
    """Per-parameter least-squares trend over the snapshot window (DESIGN section 5).

    Attributes:
        window: snapshots the line is fitted on (the most recent ones; at most ``history_size``).
        shrink: factor applied to the extrapolated drift; 1.0 follows the line.
        scale: share of the line's move a jump takes, ``D = scale * (line(t + H) - theta)``.
            Half: the line overshoots (1.1-1.5x the true move's length, ``benchmarks/FORKS.md``)
            and its averaging part costs steps; half gained 1.27-1.38x against the full line's
            1.16-1.44x on four tuning seeds (``benchmarks/RESULTS.md``).
    """

    window: int = attrs.field(default=10, validator=_int_at_least(2))
    shrink: float = attrs.field(default=1.0, validator=_float_in(0.0, 2.0, lo_open=True))
    scale: float = attrs.field(default=0.5, validator=_float_in(0.0, 2.0, lo_open=True))


@attrs.frozen
class MLPConfig:
    """Shared-weight per-parameter MLP nowcaster (DESIGN section 5).

    Attributes:
        hidden_dim: hidden units of the MLP shared by every parameter.
        sample_size: coordinates the MLP is trained on (a random subset, redrawn after each
            jump); the forecast itself runs over all parameters.
        learning_rate: Adam step size of the online training.
        window: snapshots per parameter fed to the network (at most ``history_size``).
        train_steps: Adam steps after each snapshot and after each judged jump.
        batch_size: rows per Adam step, drawn from the replay of sampled coordinates.
        max_lookahead: longest pretraining horizon, in snapshots (earlier window -> the
            snapshot ``k`` intervals later, ``1 <= k <= max_lookahead``).
        replay_size: rows of self-supervised examples kept for training.
        jump_share: share of each training batch drawn from the judged jumps' kept
            displacement (progress that survived the Correct phase) once there are any.
        seed: seeds the initial weights and the sampling.
    """

    hidden_dim: int = attrs.field(default=32, validator=_int_at_least(1))
    sample_size: int = attrs.field(default=4096, validator=_int_at_least(1))
    learning_rate: float = attrs.field(default=1e-3, validator=_float_in(0.0, 1.0, lo_open=True))
    window: int = attrs.field(default=6, validator=_int_at_least(3))
    train_steps: int = attrs.field(default=2, validator=_int_at_least(0))
    batch_size: int = attrs.field(default=512, validator=_int_at_least(1))
    max_lookahead: int = attrs.field(default=10, validator=_int_at_least(1))
    replay_size: int = attrs.field(default=65536, validator=_int_at_least(1))
    jump_share: float = attrs.field(default=0.5, validator=_float_in(0.0, 1.0))
    seed: int = attrs.field(default=0, validator=_int_at_least(0))


@attrs.frozen
class RSSMConfig:
    """GRU + categorical latent ensemble nowcaster, RSSM-lite (DESIGN section 5).

    Attributes:
        deterministic_dim: hidden units of the GRU (the deterministic state).
        stochastic_dim: one-hot units of the categorical latent, in all groups.
        num_categoricals: groups of the latent (``stochastic_dim / num_categoricals`` classes
            each).
        ensemble_size: independently initialised and trained members.
        sample_size: coordinates trained on (see :class:`MLPConfig`).
        learning_rate: Adam step size of the online training.
        window: snapshots per parameter fed to the GRU (at most ``history_size``).
        bptt: steps the truncated back-propagation through time runs over.
        train_steps, batch_size, max_lookahead, replay_size, jump_share, seed: as in
            :class:`MLPConfig`.
        disagreement: a parameter is confident when the members' spread (standard
            deviation) of its forecast is at most this share of their mean forecast; the
            others are left at the averaged point instead of extrapolated.
    """

    deterministic_dim: int = attrs.field(default=16, validator=_int_at_least(1))
    stochastic_dim: int = attrs.field(default=16, validator=_int_at_least(1))
    num_categoricals: int = attrs.field(default=4, validator=_int_at_least(1))
    ensemble_size: int = attrs.field(default=3, validator=_int_at_least(1))
    sample_size: int = attrs.field(default=4096, validator=_int_at_least(1))
    learning_rate: float = attrs.field(default=1e-3, validator=_float_in(0.0, 1.0, lo_open=True))
    window: int = attrs.field(default=6, validator=_int_at_least(3))
    bptt: int = attrs.field(default=4, validator=_int_at_least(1))
    train_steps: int = attrs.field(default=1, validator=_int_at_least(0))
    batch_size: int = attrs.field(default=256, validator=_int_at_least(1))
    max_lookahead: int = attrs.field(default=10, validator=_int_at_least(1))
    replay_size: int = attrs.field(default=65536, validator=_int_at_least(1))
    jump_share: float = attrs.field(default=0.5, validator=_float_in(0.0, 1.0))
    disagreement: float = attrs.field(default=0.5, validator=_float_in(0.0, 1e6, lo_open=True))
    seed: int = attrs.field(default=0, validator=_int_at_least(0))

    def __attrs_post_init__(self) -> None:
        if self.stochastic_dim % self.num_categoricals:
            msg = (
                f"'stochastic_dim' must be a multiple of 'num_categoricals' "
                f"(got {self.stochastic_dim} and {self.num_categoricals})"
            )
            raise ValueError(msg)


PredictorConfig = LinearConfig | MLPConfig | RSSMConfig


@attrs.frozen
class DivergenceConfig:
    """Thresholds of the divergence monitor (DESIGN section 6).

    Attributes:
        critical_zscore: loss z-score on a full step above which the step counts as critical
            (rolled back to the last good state); the warning level is the main config's
            ``divergence_threshold``.
        baseline_decay: decay of the running mean and variance of the full-phase loss (and
            of the log gradient norm).
        min_baseline_steps: full steps observed before the z-score signal is trusted.
        grad_explosion_ratio: gradient norm over its running level that is a warning;
            ``grad_critical_ratio`` the one that is critical.
        grad_vanishing_ratio: gradient norm under its running level that is a caution.
        oscillation_window: full steps over which loss oscillation is measured;
            ``oscillation_fraction`` the share of sign flips of the loss change that counts
            as oscillating (a caution; i.i.d. noise flips about 2/3 of the time).
        gap_zscore: deviations by which a probe loss during a jump may exceed the loss the
            baseline trend predicts for the skipped steps before it is a caution.
        gap_decay: during a jump the confidence is the predictor's times
            ``exp(-gap / (gap_zscore * gap_decay))``: a probe ``gap_zscore * gap_decay``
            deviations above the trend's promise divides it by e. Below
            ``confidence_threshold`` the jump ends at its best checked point.
    """

    critical_zscore: float = attrs.field(default=12.0, validator=_float_in(0.0, 1e9, lo_open=True))
    baseline_decay: float = attrs.field(default=0.98, validator=_float_in(0.0, 1.0, hi_open=True))
    min_baseline_steps: int = attrs.field(default=20, validator=_int_at_least(1))
    grad_explosion_ratio: float = attrs.field(default=10.0, validator=_float_in(1.0, 1e12))
    grad_critical_ratio: float = attrs.field(default=1e3, validator=_float_in(1.0, 1e30))
    grad_vanishing_ratio: float = attrs.field(default=1e-3, validator=_float_in(0.0, 1.0))
    oscillation_window: int = attrs.field(default=20, validator=_int_at_least(3))
    oscillation_fraction: float = attrs.field(default=0.9, validator=_float_in(0.0, 1.0))
    gap_zscore: float = attrs.field(default=3.0, validator=_float_in(0.0, 1e9, lo_open=True))
    gap_decay: float = attrs.field(default=3.0, validator=_float_in(0.0, 1e9, lo_open=True))


    def __attrs_post_init__(self) -> None:
        if self.grad_critical_ratio < self.grad_explosion_ratio:
            msg = (f"'grad_critical_ratio' must be >= 'grad_explosion_ratio' "
                   f"(got {self.grad_critical_ratio} < {self.grad_explosion_ratio})")
            raise ValueError(msg)


@attrs.frozen
class CheckpointConfig:
    """Where and how often a trainer checkpoints itself.

    Attributes:
        save_interval: steps between automatic checkpoints into ``directory`` (0: only
            explicit ``save_checkpoint`` calls).
        keep_last_n: automatic checkpoints kept in ``directory``; older ones are deleted
            (and, when the disk is full, before the new one is written: with 1 the folder then
            holds no complete checkpoint while it writes).
        include_predictor: save the predictor's learned state (without it a resumed run
            re-learns it).
        directory: folder of the automatic checkpoints (``ckpt-<step>.npz``).
    """

    save_interval: int = attrs.field(default=0, validator=_int_at_least(0))
    keep_last_n: int = attrs.field(default=3, validator=_int_at_least(1))
    include_predictor: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    directory: str | None = attrs.field(
        default=None, converter=attrs.converters.optional(str)
    )

    def __attrs_post_init__(self) -> None:
        if self.save_interval > 0 and self.directory is None:
            msg = "'save_interval' > 0 needs a 'directory' to save checkpoints into"
            raise ValueError(msg)


def _predictor_check(inst: Any, attr: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, (LinearConfig, MLPConfig, RSSMConfig)):
        msg = f"'predictor' must be a LinearConfig, MLPConfig or RSSMConfig (got {value!r})"
        raise ValueError(msg)


def _instance(cls: type) -> Any:
    def check(inst: Any, attr: attrs.Attribute, value: Any) -> None:
        if not isinstance(value, cls):
            msg = f"'{attr.name}' must be a {cls.__name__} (got {value!r})"
            raise ValueError(msg)

    return check


@attrs.frozen
class HybridTrainerConfig:
    """Everything the controller decides with (DESIGN section 4); every count is in steps.

    The defaults are the measured cadence of DESIGN section 2: half the move of a line through
    the last 10 EMA snapshots taken 40 steps apart, jumps of up to 100 steps, 150 full steps
    between jumps (100 + 50 Correct), the first jump at step 600 (``benchmarks/RESULTS.md``).

    Attributes:
        warmup_steps: full steps before anything is predicted (the history also has to fill:
            ``window * snapshot_interval`` observed steps before the first jump).
        full_steps: full steps from the end of Correct (or a decision without a jump) to
            the next decision point.
        max_predict_steps: longest Predict phase (the horizon of a jump), in steps.
        correct_steps: full steps after a jump before it is judged.
        confidence_threshold: a jump is taken only when the predictor's confidence reaches it.
        divergence_threshold: loss z-score that counts as a warning (ends a Predict phase).
        history_size: snapshots of the slow trajectory kept in the ring.
        snapshot_interval: observed full steps between two snapshots.
        snapshot_ema: per-step decay of the snapshots' moving average (``None``: raw).
        check_interval: predicted steps between two probe checks (only with a ``probe``).
        rollback_tolerance: relative rise of a probe loss over its pre-jump value that ends
            a Predict phase at its best checked point.
        judge_margin: standard errors by which the judged loss may lie above the judge's
            bar before the jump is rolled back (3 kept more jumps that paid than 2 or 4).
        judge: what a judged jump is rolled back against: ``"origin"`` (default), the loss
            where the jump started (its Correct steps are spent either way), or ``"trend"``,
            where the trend says the run would be without it (which also prices kept jumps).
        optimizer_at_jump: at a landing, ``"keep"`` the optimizer's state, or ``"advance"``
            its step counters by the predicted steps (the moments are kept either way).
        anneal_share: a jump starts only while the learning rate (where the wrapper reads
            one: PyTorch's ``param_groups``, :mod:`hpcore.optim`'s schedules) is at least this
            share of the highest one read: as a schedule anneals, the line extrapolates a
            velocity the falling rate no longer gives (at 0.9, two early jumps under cosine
            cost 0.3-1.0% of final loss). ``None`` jumps whatever the rate.
        collect_metrics: keep a record of every jump for ``export_metrics``.
        seed: seeds the engine's own randomness.
        horizon_policy: ``"doubling"`` (halve and sit out after a rollback, double after
            jumps that paid) or ``"linucb"`` (a bandit with arms no jump and the average).
        bandit_alpha: exploration bonus of the LinUCB policy.
        residual_capacity: judged jumps the residual store keeps to scale each group's
            forecast by how far past jumps went (0, default: off; it cost the half line).
        residual_temperature: softmax temperature of the store's state similarity.
        total_steps: the run's length, when known: no jump that cannot be judged by then,
            no history after the last chance to jump, the whole run's slack from the start.
        floor: share of the plain loop's progress the run must keep (the floor guard,
            :mod:`hpcore.floor`, a ledger in full steps): a jump starts only when ``1 - floor``
            of the steps so far (of ``total_steps`` when known), plus what kept jumps gained,
            less what jumps cost, covers the jump's worst case (its Correct steps and probes
            lost to a rollback). Without ``total_steps`` the first jump waits until
            ``correct_steps / (1 - floor)`` steps (1,000 with the defaults). ``None`` turns
            the guard off.
        probe_cost: what one probe (a forward-only loss) costs the ledger, in full steps.
    """

    warmup_steps: int = attrs.field(default=200, validator=_int_at_least(0))
    full_steps: int = attrs.field(default=100, validator=_int_at_least(1))
    max_predict_steps: int = attrs.field(default=100, validator=_int_at_least(1))
    correct_steps: int = attrs.field(default=50, validator=_int_at_least(1))
    confidence_threshold: float = attrs.field(default=0.3, validator=_float_in(0.0, 1.0))
    divergence_threshold: float = attrs.field(
        default=6.0, validator=_float_in(0.0, 1e9, lo_open=True)
    )
    history_size: int = attrs.field(default=10, validator=_int_at_least(2))
    snapshot_interval: int = attrs.field(default=40, validator=_int_at_least(1))
    snapshot_ema: float | None = attrs.field(
        default=0.95, validator=_optional(_float_in(0.0, 1.0, hi_open=True))
    )
    check_interval: int = attrs.field(default=25, validator=_int_at_least(1))
    rollback_tolerance: float = attrs.field(default=0.5, validator=_float_in(0.0, 1e9))
    judge_margin: float = attrs.field(default=3.0, validator=_float_in(0.0, 100.0, lo_open=True))
    judge: str = attrs.field(default="origin", validator=_one_of("trend", "origin"))
    optimizer_at_jump: str = attrs.field(default="keep", validator=_one_of("keep", "advance"))
    anneal_share: float | None = attrs.field(
        default=0.99, validator=_optional(_float_in(0.0, 1.0, lo_open=True)))
    collect_metrics: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    seed: int = attrs.field(default=0, validator=_int_at_least(0))
    horizon_policy: str = attrs.field(default="doubling", validator=_one_of("linucb", "doubling"))
    bandit_alpha: float = attrs.field(default=0.5, validator=_float_in(0.0, 10.0))
    residual_capacity: int = attrs.field(default=0, validator=_int_at_least(0))
    residual_temperature: float = attrs.field(
        default=0.2, validator=_float_in(0.0, 100.0, lo_open=True)
    )
    total_steps: int | None = attrs.field(default=None, validator=_optional(_int_at_least(1)))
    floor: float | None = attrs.field(default=0.95, validator=_optional(_float_in(0.0, 1.0,
                                                                                  hi_open=True)))
    probe_cost: float = attrs.field(default=0.35, validator=_float_in(0.0, 1e6))
    predictor: PredictorConfig = attrs.field(factory=LinearConfig, validator=_predictor_check)
    divergence: DivergenceConfig = attrs.field(
        factory=DivergenceConfig, validator=_instance(DivergenceConfig)
    )
    checkpoint: CheckpointConfig = attrs.field(
        factory=CheckpointConfig, validator=_instance(CheckpointConfig)
    )

    def __attrs_post_init__(self) -> None:
        window = getattr(self.predictor, "window", 2)
        if window > self.history_size:
            msg = (
                f"'predictor.window' must be <= 'history_size' "
                f"(got {window} > {self.history_size})"
            )
            raise ValueError(msg)

    @staticmethod
    def builder() -> HybridTrainerConfigBuilder:
        """Fluent construction: ``HybridTrainerConfig.builder().warmup_steps(200).build()``."""
        return HybridTrainerConfigBuilder()


class HybridTrainerConfigBuilder:
    """Collects fields one call at a time; :meth:`build` validates them all at once."""

    def __init__(self) -> None:
        self._fields: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in attrs.fields_dict(HybridTrainerConfig):
            known = ", ".join(attrs.fields_dict(HybridTrainerConfig))
            msg = f"HybridTrainerConfig has no field {name!r}; fields are: {known}"
            raise AttributeError(msg)

        def setter(value: Any) -> HybridTrainerConfigBuilder:
            self._fields[name] = value
            return self

        return setter

    def build(self) -> HybridTrainerConfig:
        """The validated config."""
        return HybridTrainerConfig(**self._fields)


def config_or_default(config: Any) -> HybridTrainerConfig:
    """``config``, or the defaults when it is ``None``; anything else is refused."""
    if config is None:
        return HybridTrainerConfig()
    if not isinstance(config, HybridTrainerConfig):
        msg = f"config must be a HybridTrainerConfig (got {type(config).__name__})"
        raise ValueError(msg)
    return config
