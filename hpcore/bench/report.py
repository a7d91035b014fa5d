"""Summary table, results JSON and the plot of a time-to-target run (``hpcore bench``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from hpcore.bench.curves import prefix_points
from hpcore.bench.frontier import from_runs
from hpcore.bench.runner import Curve, engine_seconds, overhead_pct, smoothed
from hpcore.config import HybridTrainerConfig

__all__ = ["at_wall", "compute_equivalent", "figure", "frontier_points", "jump_backward",
           "plot", "summary_rows", "table", "write_json"]


def at_wall(curve: Curve, seconds: float, what: str = "val_loss") -> float:
    """Validation loss (or ``what="val_acc"``) of ``curve`` at wall-clock ``seconds``
    (the last point not after it)."""
    i = int(np.searchsorted(curve.wall, seconds, side="right")) - 1
    return float(getattr(curve, what)[max(i, 0)])


def summary_rows(baseline: Curve, hybrid: Curve, ttt: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per run: final quality (equal steps, equal wall-clock), cost, time-to-target,
    what the engine did and its time per step as a share of a baseline step
    (:func:`~hpcore.bench.runner.overhead_pct`: the wall clock beyond the run's backward
    passes priced at the baseline's mean step time; 0 for the baseline by construction)."""
    wall_cap = min(baseline.wall[-1], hybrid.wall[-1])
    rows = []
    for c in (baseline, hybrid):
        s = c.statistics or {}
        steps = max(int(c.steps[-1]), 1)
        is_base = c is baseline
        row = {
            "run": c.label,
            "val_loss": float(c.val_loss[-1]),
            "val_acc": float(c.val_acc[-1]),
            "val_loss_at_equal_wall": at_wall(c, wall_cap),
            "val_acc_at_equal_wall": at_wall(c, wall_cap, "val_acc"),
            "wall_s": float(c.wall[-1]),
            "backward_passes": int(c.backward[-1]),
            "wall_to_target_s": ttt["baseline_wall_s"] if is_base else ttt["method_wall_s"],
            "backward_to_target": ttt["baseline_backward"] if is_base else ttt["method_backward"],
            "predicted_pct": 100.0 * s.get("predicted_steps", 0) / steps,
            "rollbacks": s.get("rollbacks", 0),
            "engine_s": engine_seconds(baseline, c),
            "overhead_pct": overhead_pct(baseline, c),
            "steps": steps,
            "jumps": s.get("jumps", 0),
            "jumps_kept": s.get("jumps_accepted", 0),
            "floor_credit": s.get("floor_credit"),
        }
        if c.config is not None:
            row.update(_jump_needs(c.config))
        rows.append(row)
    return rows


def _jump_needs(config: HybridTrainerConfig) -> dict[str, int]:
    """What the controller needs before a first jump, in steps (DESIGN 4): a history of
    ``window`` snapshots ``snapshot_interval`` observed steps apart after the warm-up, then
    room for the shortest jump and its Correct phase; ``worst_case``: what a rollback of it
    costs the floor guard's ledger (its Correct steps; no probe runs in the benchmark)."""
    history = config.warmup_steps + getattr(config.predictor, "window", 2) * config.snapshot_interval
    shortest = min(config.check_interval, config.max_predict_steps)
    return {"first_jump_needs": history + shortest + config.correct_steps,
            "history_steps": history, "worst_case": config.correct_steps}


def table(rows: list[dict[str, Any]], ttt: dict[str, Any]) -> str:
    """A plain-text table for the terminal, with the time-to-target verdict under it."""
    head = ["run", "val loss", "val acc", "loss@eq wall", "acc@eq wall", "wall s", "backward",
            "to target s", "bwd to target", "predicted %", "rollbacks", "engine %/step"]
    keys = ["run", "val_loss", "val_acc", "val_loss_at_equal_wall", "val_acc_at_equal_wall",
            "wall_s", "backward_passes", "wall_to_target_s", "backward_to_target",
            "predicted_pct", "rollbacks", "overhead_pct"]

    def fmt(k: str, v: Any) -> str:
        if v is None:
            return "not reached"
        if k in ("predicted_pct", "overhead_pct"):
            return f"{v:.1f}"
        if k == "backward_to_target":
            return f"{v:.0f}"
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"
        return str(v)

    cells = [head] + [[fmt(k, r[k]) for k in keys] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    window = ttt.get("window", 1)
    mean = f", mean of its last {window} evaluations" if window > 1 else ""
    lines.append(f"target (baseline final val loss{mean}): {ttt['target_val_loss']:.4f}")
    if ttt["wall_speedup"] is None:
        lines.append("time-to-target: the hybrid did NOT reach the target within the step budget "
                     "(it loses here)")
    else:
        speed = ttt["wall_speedup"]
        verdict = "faster" if speed > 1 else "SLOWER"
        lines.append(f"time-to-target: {speed:.2f}x wall-clock ({verdict} than the tuned baseline), "
                     f"{ttt['backward_speedup']:.2f}x backward passes")
    hyb = rows[-1]
    lines.append(f"engine time per step: {hyb['overhead_pct']:.1f}% of a baseline step "
                 f"({hyb['engine_s']:.3f} s in all: the hybrid's wall clock less its "
                 f"{hyb['backward_passes']} backward passes at the baseline's mean step time, "
                 "measured side by side)")
    lines.append(what_the_engine_did(hyb))
    return "\n".join(lines)


def what_the_engine_did(row: dict[str, Any]) -> str:
    """One line on the hybrid run's jumps: how many, kept, rolled back, the predicted share;
    with no jump, why where the row shows it (too short a run, the floor guard's credit)."""
    credit = row["floor_credit"]
    ledger = "" if credit is None else f"; the floor guard's credit ended at {credit:.0f} steps"
    if row["jumps"] == 0:
        why = ""
        needs = row.get("first_jump_needs")
        if needs is not None and row["steps"] < needs:
            why = (f" (a first jump needs {needs} steps: {row['history_steps']} of warm-up and "
                   "history, then the shortest jump and its Correct phase)")
        elif credit is not None and "worst_case" in row and credit < row["worst_case"]:
            why = (f" (the floor guard's credit never covered a jump's worst case of "
                   f"{row['worst_case']} steps)")
        return f"hybrid: no jump in {row['steps']} steps{why}{ledger}"
    rolled = row["jumps"] - row["jumps_kept"]
    jumps = f"{row['jumps']} jump" + ("s" if row["jumps"] > 1 else "")
    return (f"hybrid: {jumps} ({row['jumps_kept']} kept, {rolled} rolled back), "
            f"{row['predicted_pct']:.1f}% of {row['steps']} steps predicted{ledger}")


def frontier_points(baseline: Curve, window: int) -> dict[str, list[float]]:
    """The baseline's validation points past the start as ``(backward passes, seconds,
    loss averaged over window points)`` lists: under a constant rate each is the end of a
    shorter budget's run, so together they give the frontier (:mod:`hpcore.bench.frontier`)."""
    return prefix_points(baseline, window, 1)


def compute_equivalent(baseline: Curve, hybrid: Curve, schedule: str, window: int) -> dict[str, Any]:
    """The hybrid's final loss placed on the baseline's frontier (DESIGN section 9), in
    backward passes and in seconds. Under a constant rate the baseline's own curve is the
    frontier (a shorter budget's run is its prefix; run it past the hybrid's budget for the
    frontier to reach beyond it); an annealed schedule needs baselines at several budgets,
    which the main job does not run, so it reports none."""
    loss = float(smoothed(hybrid, window)[-1])
    out: dict[str, Any] = {"hybrid_final_loss": loss, "backward_speedup": None,
                           "wall_speedup": None}
    if schedule != "constant":
        out["summary"] = (f"compute-equivalent: not computed under a {schedule} schedule (it "
                          "needs baseline runs at several budgets)")
        return out
    points = frontier_points(baseline, window)
    for name, own in (("backward", hybrid.backward[-1]), ("wall", hybrid.wall[-1])):
        f = from_runs(points[name], points["loss"])
        out[f"baseline_{name}_needed"] = f.cost_for(loss)
        out[f"{name}_speedup"] = f.speedup(loss, float(own))
    b, w = out["backward_speedup"], out["wall_speedup"]
    if b is None:
        out["summary"] = (f"compute-equivalent: the hybrid's final loss {loss:.4f} is below every "
                          f"point of the baseline's curve (more than its "
                          f"{baseline.backward[-1]:.0f} backward passes)")
    else:
        out["summary"] = (f"compute-equivalent: the baseline reaches the hybrid's final loss "
                          f"{loss:.4f} after {out['baseline_backward_needed']:.0f} backward passes "
                          f"and {out['baseline_wall_needed']:.3f} s: {b:.2f}x in backward passes, "
                          f"{w:.2f}x in seconds")
    return out


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Results as JSON (curves as lists) for a later run to compare with."""
    def conv(o: Any) -> Any:
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, np.generic):
            return o.item()
        raise TypeError(type(o).__name__)

    path.write_text(json.dumps(payload, indent=2, default=conv))
    return path


def jump_backward(spans: list[tuple[int, int]]) -> list[int]:
    """Backward passes taken before each predicted span ``(first, last)`` began: the steps
    before it less the predicted ones (a predicted step adds no backward pass)."""
    out, predicted = [], 0
    for a, b in spans:
        out.append(a - 1 - predicted)
        predicted += b - a + 1
    return out


def plot(path: Path, baseline: Curve, hybrid: Curve, title: str, *,
         equivalent: dict[str, Any] | None = None, window: int = 1) -> Path:
    """Validation loss against backward passes and against seconds, written to ``path``
    (:func:`figure`)."""
    plt = _pyplot()
    fig = figure(baseline, hybrid, title, equivalent=equivalent, window=window)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def figure(baseline: Curve, hybrid: Curve, title: str, *,
           equivalent: dict[str, Any] | None = None, window: int = 1) -> Any:
    """The plot as a matplotlib figure: two panels, validation loss (averaged over ``window``
    points) against backward passes and against seconds (validation excluded), log scale.

    The baseline is drawn to its end; with ``equivalent`` (:func:`compute_equivalent`'s
    result) a dotted line marks the hybrid's final loss and, where the baseline's frontier
    reaches it, a marker the compute-equivalent point. Predicted spans are shaded on the
    seconds panel (through the hybrid's (step, seconds) points) and marked as thin bands on
    the backward-pass panel where each jump happened (:func:`jump_backward`)."""
    fig, (ax_b, ax_w) = _pyplot().subplots(1, 2, figsize=(12, 4.5))
    frontier = equivalent is not None and "baseline_backward_needed" in equivalent
    for c, colour in ((baseline, "tab:blue"), (hybrid, "tab:orange")):
        label = "baseline (frontier)" if c is baseline and frontier else c.label
        loss = smoothed(c, window)
        ax_b.plot(c.backward, loss, color=colour, label=label)
        ax_w.plot(c.wall, loss, color=colour, label=label)
    _mark_spans(ax_b, ax_w, hybrid)
    if equivalent is not None:
        _mark_equivalent(ax_b, ax_w, equivalent)
    ylabel = "validation loss" + (f" (mean of {window} evaluations)" if window > 1 else "")
    for ax, xlabel in ((ax_b, "backward passes"), (ax_w, "seconds (validation excluded)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_yscale("log")
        ax.legend(fontsize="small")
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    return fig


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only: no display is needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mark_spans(ax_b: Any, ax_w: Any, hybrid: Curve) -> None:
    """Predicted spans: shaded on the seconds panel, thin bands on the backward-pass one."""
    for i, ((a, b), at) in enumerate(zip(hybrid.predict_spans, jump_backward(hybrid.predict_spans),
                                         strict=True)):
        label = "predicted steps" if i == 0 else None
        ax_b.axvline(at, color="tab:orange", alpha=0.3, lw=1.5, label=label)
        wa, wb = np.interp([a - 1, b], hybrid.steps, hybrid.wall)
        ax_w.axvspan(wa, wb, color="tab:orange", alpha=0.15, lw=0, label=label)


def _mark_equivalent(ax_b: Any, ax_w: Any, equivalent: dict[str, Any]) -> None:
    """The hybrid's final loss as a dotted line; a marker where the frontier reaches it."""
    loss = equivalent["hybrid_final_loss"]
    for ax, key in ((ax_b, "baseline_backward_needed"), (ax_w, "baseline_wall_needed")):
        ax.axhline(loss, color="grey", ls=":", lw=1, label="hybrid's final loss")
        x = equivalent.get(key)
        if x is not None:
            ax.plot([x], [loss], "o", color="black", ms=6, label="compute-equivalent")
