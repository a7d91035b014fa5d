"""Summary table, results JSON and the plot of a time-to-target run (``hpcore bench``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from hpcore.bench.runner import Curve

__all__ = ["at_wall", "plot", "summary_rows", "table", "write_json"]


def at_wall(curve: Curve, seconds: float, what: str = "val_loss") -> float:
    """Validation loss (or ``what="val_acc"``) of ``curve`` at wall-clock ``seconds``
    (the last point not after it)."""
    i = int(np.searchsorted(curve.wall, seconds, side="right")) - 1
    return float(getattr(curve, what)[max(i, 0)])


def summary_rows(baseline: Curve, hybrid: Curve, ttt: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per run: final quality (equal steps, equal wall-clock), cost, time-to-target,
    what the engine did and its overhead per step as a share of a baseline step."""
    wall_cap = min(baseline.wall[-1], hybrid.wall[-1])
    base_step_s = float(baseline.wall[-1]) / max(int(baseline.steps[-1]), 1)
    rows = []
    for c in (baseline, hybrid):
        s = c.statistics or {}
        steps = max(int(c.steps[-1]), 1)
        is_base = c is baseline
        rows.append({
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
            "overhead_pct": 100.0 * (c.overhead_s / steps) / max(base_step_s, 1e-12),
            "steps": steps,
            "jumps": s.get("jumps", 0),
            "jumps_kept": s.get("jumps_accepted", 0),
            "dormant_steps": s.get("dormant_steps", 0),
            "floor_credit": s.get("floor_credit"),
        })
    return rows


def table(rows: list[dict[str, Any]], ttt: dict[str, Any]) -> str:
    """A plain-text table for the terminal, with the time-to-target verdict under it."""
    head = ["run", "val loss", "val acc", "loss@eq wall", "acc@eq wall", "wall s", "backward",
            "to target s", "bwd to target", "predicted %", "rollbacks", "overhead %"]
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
    lines.append(f"engine overhead: {hyb['overhead_pct']:.1f}% of a baseline step per step "
                 "(engine_time_s / steps over the baseline's mean step time)")
    lines.append(what_the_engine_did(hyb))
    return "\n".join(lines)


def what_the_engine_did(row: dict[str, Any]) -> str:
    """One line on the hybrid run's jumps and sit-outs, and why it sat out (the floor)."""
    credit = row["floor_credit"]
    ledger = "" if credit is None else f"; the floor guard's credit ended at {credit:.0f} steps"
    dormant = f"dormant (sitting out) {row['dormant_steps']} of {row['steps']} steps"
    if row["jumps"] == 0:
        why = (" (the floor guard found no jump it could afford before the run's end)"
               if credit is not None and
               row["dormant_steps"] == row["steps"] else "")
        return f"hybrid: no jump, {dormant}{why}{ledger}"
    return f"hybrid: {row['jumps']} jumps ({row['jumps_kept']} kept), {dormant}{ledger}"


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


def plot(path: Path, baseline: Curve, hybrid: Curve, title: str) -> Path:
    """Validation loss against wall-clock and against steps, Predict phases shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_w, ax_s) = plt.subplots(1, 2, figsize=(11, 4))
    for c, colour in ((baseline, "tab:blue"), (hybrid, "tab:orange")):
        ax_w.plot(c.wall, c.val_loss, color=colour, label=c.label)
        ax_s.plot(c.steps, c.val_loss, color=colour, label=c.label)
    for i, (a, b) in enumerate(hybrid.predict_spans):
        ax_s.axvspan(a - 1, b, color="tab:orange", alpha=0.15, lw=0,
                     label="predicted steps" if i == 0 else None)
        # the same spans on the wall-clock axis, through the hybrid's (step, wall) points
        wa, wb = np.interp([a - 1, b], hybrid.steps, hybrid.wall)
        ax_w.axvspan(wa, wb, color="tab:orange", alpha=0.15, lw=0)
    target = baseline.val_loss[-1]
    for ax, xlabel in ((ax_w, "wall-clock (s, validation excluded)"), (ax_s, "step")):
        ax.axhline(target, color="grey", ls=":", lw=1, label="target")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation loss")
        ax.set_yscale("log")
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
