"""Candidate forecast directions for a jump: each maps the snapshot ring, the optimizer's
state and the horizon J to a displacement ``D`` of the parameters (issue 19).

Every candidate is ``fn(ctx, J, **hyper) -> D`` over a :class:`ForkContext`. Most split the
10-snapshot line into its *averaging* part (``theta`` to the line now) and its *drift* part
(the line now to the line at ``now + J``) and change only the drift, because the oracle shows
the worth lies in the slow drift while the line's drift is mostly fast-direction noise
(DESIGN section 2). ``GRIDS`` holds the hyperparameter values tried on the tuning seed;
``DEFAULTS`` the values used where none was tuned. The oracle (the true EMA displacement)
needs the future and lives in ``fork_worth.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from hpcore.predictors.linear import line_weights

__all__ = ["CANDIDATES", "DEFAULTS", "GRIDS", "REFERENCES", "ForkContext", "forecast", "labels",
           "parse_label", "split_line"]

_TINY = 1e-30


@attrs.define
class ForkContext:
    """What a forecast may read at the fork point (no future information).

    Attributes:
        theta: (N,) float64 parameters at the fork.
        ema: (N,) float64 moving average of the parameters (per-step decay ``decay``).
        snaps: (K, N) float64 snapshots of the average, oldest first.
        times: (K,) float64 step of each snapshot.
        clock: steps taken at the fork.
        lag: steps by which the average trails ``theta`` (``decay / (1 - decay)``).
        m: (N,) float64 first moment (Adam ``exp_avg``, SGD momentum buffer).
        v: (N,) float64 second moment (Adam ``exp_avg_sq``; for SGD a gradient-square EMA
            the harness keeps).
        step_avg: (N,) float64 slow EMA (decay 0.99) of the per-step parameter change.
        probe: ``theta -> loss`` on a few recent training batches (forward only), or None.
    """

    theta: np.ndarray
    ema: np.ndarray
    snaps: np.ndarray
    times: np.ndarray
    clock: int
    lag: float
    m: np.ndarray
    v: np.ndarray
    step_avg: np.ndarray
    probe: Callable[[np.ndarray], float] | None = None
    probe_calls: int = 0  # forward passes spent by probing candidates (cost accounting)


def _line_at(ctx: ForkContext, window: int, target: float) -> np.ndarray:
    """The least-squares line through the last ``window`` snapshots at step ``target``,
    with the library's weights (times shifted back by the average's lag)."""
    w = line_weights(ctx.times[-window:] - ctx.lag, float(target))
    return w @ ctx.snaps[-window:]


def _slope(snaps: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Per-coordinate least-squares slope (per step) of ``snaps`` against ``times``."""
    tc = times - times.mean()
    return (tc @ snaps) / float(tc @ tc)


def split_line(ctx: ForkContext, J: int, window: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The line's forecast as ``(averaging, drift)``: theta to the line now, and the line
    now to the line ``J`` steps ahead (so ``averaging + drift`` is the plain line)."""
    now = _line_at(ctx, window, ctx.clock)
    return now - ctx.theta, _line_at(ctx, window, ctx.clock + J) - now


def ema_point(ctx: ForkContext, J: int) -> np.ndarray:
    """Jump to the moving average itself: what averaging alone buys (no drift at all)."""
    return ctx.ema - ctx.theta


def line(ctx: ForkContext, J: int, window: int = 10) -> np.ndarray:
    """The library's Linear forecast: the line through the last ``window`` snapshots at
    ``now + J`` minus theta."""
    return _line_at(ctx, window, ctx.clock + J) - ctx.theta


def consistent(ctx: ForkContext, J: int, scale: float = 1.0) -> np.ndarray:
    """(i) Drift gated per coordinate by how well two disjoint halves of the ring agree.

    With ``s1, s2`` the slopes over the older and newer five snapshots, the gate is
    ``clip(s1 s2 / ((s1^2 + s2^2) / 2), 0, 1)``: 1 where both halves drift alike, 0 where
    they disagree in sign (oscillating, fast coordinates). ``scale`` stretches the gated drift.
    """
    avg, drift = split_line(ctx, J)
    k = ctx.snaps.shape[0] // 2
    s1 = _slope(ctx.snaps[:k], ctx.times[:k])
    s2 = _slope(ctx.snaps[k:], ctx.times[k:])
    gate = np.clip(s1 * s2 / (0.5 * (s1 * s1 + s2 * s2) + _TINY), 0.0, 1.0)
    return avg + scale * gate * drift


def snr(ctx: ForkContext, J: int, c: float = 4.0) -> np.ndarray:
    """(i') Per-coordinate Wiener shrinkage of the drift: ``s^2 / (s^2 + c se^2)`` with
    ``s`` the fitted slope and ``se`` its standard error from the line's residuals (``c``
    makes up for the snapshots' autocorrelation, which the plain standard error ignores)."""
    avg, drift = split_line(ctx, J)
    t = ctx.times - ctx.times.mean()
    s = (t @ ctx.snaps) / float(t @ t)
    resid = ctx.snaps - ctx.snaps.mean(0) - np.outer(t, s)
    se2 = (resid * resid).sum(0) / max(len(t) - 2, 1) / float(t @ t)
    return avg + drift * (s * s) / (s * s + c * se2 + _TINY)


def curvature(ctx: ForkContext, J: int, kappa: float = 10.0) -> np.ndarray:
    """(ii) Drift damped where the curvature proxy (the second moment ``v``, Adam's
    ``exp_avg_sq`` or a gradient-square EMA for SGD) is high: ``1 / (1 + kappa v / mean v)``."""
    avg, drift = split_line(ctx, J)
    return avg + drift / (1.0 + kappa * ctx.v / (float(ctx.v.mean()) + _TINY))


def update_drift(ctx: ForkContext, J: int, scale: float = 0.5) -> np.ndarray:
    """(iii) Averaging, then the mean per-step parameter change (a slow EMA of the updates,
    about 100 steps) extended over ``J`` steps, times ``scale``: the drift read from the
    updates rather than from a line through the snapshots."""
    return ctx.ema - ctx.theta + scale * J * ctx.step_avg


def power(ctx: ForkContext, J: int, p: float = 0.6, tau: float = 100.0) -> np.ndarray:
    """(iv) The line's drift rescaled to sublinear growth: the slope over an effective
    horizon ``tau (J / tau)^p`` instead of ``J`` (the line delivers about all of J = tau = 100;
    the true displacement grows like J^0.6)."""
    avg, drift = split_line(ctx, J)
    return avg + drift * (tau * (J / tau) ** p) / J


def consistent_power(ctx: ForkContext, J: int, scale: float = 2.0, p: float = 0.6,
                     tau: float = 100.0) -> np.ndarray:
    """(i + iv) The consistency-gated drift of :func:`consistent`, stretched by ``scale``
    and grown like ``J^p`` past ``tau``: gated drift overshoots at J = 400 (added after the
    first measurement: the gate helped at J <= 200, the length ratio grew with J)."""
    avg, _ = split_line(ctx, J)
    return avg + (consistent(ctx, J, scale) - avg) * (tau * (J / tau) ** p) / J


def slow_subspace(ctx: ForkContext, J: int, k: int = 2) -> np.ndarray:
    """(iv') The line's drift projected on the top ``k`` right singular vectors of the
    successive snapshot differences: the few directions the average kept moving along."""
    avg, drift = split_line(ctx, J)
    diffs = np.diff(ctx.snaps, axis=0)
    _, _, vt = np.linalg.svd(diffs, full_matrices=False)
    basis = vt[:k]
    return avg + basis.T @ (basis @ drift)


def probed(ctx: ForkContext, J: int, alphas: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5)) -> np.ndarray:
    """(v) Averaging plus ``alpha`` times the consistency-gated drift, ``alpha`` chosen by
    the lowest forward-only probe loss on recent training batches (``len(alphas)`` probes;
    the harness counts their forward passes)."""
    avg, _ = split_line(ctx, J)
    gated = consistent(ctx, J) - avg
    if ctx.probe is None:
        msg = "the 'probed' candidate needs ctx.probe (a forward-only loss), which is None"
        raise ValueError(msg)
    losses = []
    for a in alphas:
        losses.append(ctx.probe(ctx.theta + avg + a * gated))
        ctx.probe_calls += 1
    return avg + alphas[int(np.argmin(losses))] * gated


# name -> (function, fixed keyword arguments)
CANDIDATES: dict[str, tuple[Callable[..., np.ndarray], dict[str, Any]]] = {
    "ema_point": (ema_point, {}),
    "line5": (line, {"window": 5}),
    "line10": (line, {"window": 10}),
    "consistent": (consistent, {}),
    "snr": (snr, {}),
    "curvature": (curvature, {}),
    "update_drift": (update_drift, {}),
    "power": (power, {}),
    "slow_subspace": (slow_subspace, {}),
    "consistent_power": (consistent_power, {}),
    "probed": (probed, {}),
}

# hyperparameter grids tried on the tuning seed (one hyperparameter per candidate)
GRIDS: dict[str, dict[str, tuple[float, ...]]] = {
    "consistent": {"scale": (1.0, 2.0)},
    "snr": {"c": (1.0, 4.0, 16.0)},
    "curvature": {"kappa": (1.0, 10.0, 100.0)},
    "update_drift": {"scale": (0.25, 0.5, 1.0)},
    "power": {"p": (0.4, 0.6, 0.8)},
    "slow_subspace": {"k": (1, 2, 4)},
    "consistent_power": {"scale": (1.5, 2.0, 3.0)},
}

DEFAULTS: dict[str, dict[str, float]] = {
    name: {key: values[len(values) // 2] for key, values in grid.items()}
    for name, grid in GRIDS.items()
}

REFERENCES = ("oracle", "ema_point", "line5", "line10")  # listed first in every table


def parse_label(label: str) -> tuple[str, dict[str, float], bool]:
    """``name[key=value]@zero_m`` -> (candidate name, hyperparameters, zero first moment)."""
    name, _, hyper = label.removesuffix("@zero_m").partition("[")
    pairs = [item.partition("=") for item in filter(None, hyper.rstrip("]").split(","))]
    kwargs = {k: float(v) if "." in v else int(v) for k, _, v in pairs}
    return name, kwargs, label.endswith("@zero_m")


def forecast(label: str, ctx: ForkContext, J: int, true_d: np.ndarray) -> np.ndarray:
    """The displacement a candidate label forecasts (``oracle``: the true EMA move)."""
    name, kwargs, _ = parse_label(label)
    if name == "oracle":
        return true_d
    fn, fixed = CANDIDATES[name]
    return fn(ctx, J, **{**fixed, **kwargs})


def labels(names: list[str], tuned: dict[str, dict[str, float]], tune: bool,
           zero_m: list[str]) -> list[str]:
    """A run's labels: references first; for tuning every GRIDS value, else the tuned (or
    default) hyperparameters, then the ``@zero_m`` variants."""
    def tag(name: str, hyper: dict[str, float]) -> str:
        return name + ("[" + ",".join(f"{k}={v}" for k, v in hyper.items()) + "]" if hyper else "")

    names = [c for c in REFERENCES if c in names or c == "oracle"] + \
        [c for c in names if c not in REFERENCES]
    if tune:
        grid = [tag(c, {k: v}) for c in names for k, vs in GRIDS.get(c, {}).items() for v in vs]
        return [c for c in names if c not in GRIDS] + grid
    return [tag(c, tuned.get(c, DEFAULTS.get(c, {}))) for c in names] + [f"{c}@zero_m" for c in zero_m]
