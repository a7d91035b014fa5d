"""Summary table, results JSON and the plot of a time-to-target run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from hpcore.bench.runner import Curve

__all__ = ["at_wall", "plot", "summary_rows", "table", "write_json"]


def at_wall(curve: Curve, seconds: float) -> float:
    """Validation loss of ``curve`` at wall-clock ``seconds`` (last point not after it)."""
    i = int(np.searchsorted(curve.wall, seconds, side="right")) - 1
    return float(curve.val_loss[max(i, 0)])


def summary_rows(baseline: Curve, hybrid: Curve, ttt: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per run: final quality, cost, time-to-target and what the engine did."""
    wall_cap = min(baseline.wall[-1], hybrid.wall[-1])
    rows = []
    for c in (baseline, hybrid):
        s = c.statistics or {}
        reach = ttt["baseline_wall_s"] if c is baseline else ttt["hybrid_wall_s"]
        rows.append({
            "run": c.label,
            "val_loss": float(c.val_loss[-1]),
            "val_acc": float(c.val_acc[-1]),
            "val_loss_at_equal_wall": at_wall(c, wall_cap),
            "wall_s": float(c.wall[-1]),
            "backward_passes": int(c.backward[-1]),
            "wall_to_target_s": reach,
            "predicted_pct": 100.0 * s.get("predicted_steps", 0) / max(int(c.steps[-1]), 1),
            "rollbacks": s.get("rollbacks", 0),
        })
    return rows


def table(rows: list[dict[str, Any]], ttt: dict[str, Any]) -> str:
    """A plain-text table for the terminal."""
    head = ["run", "val loss", "val acc", "loss@equal wall", "wall s", "backward", "to target s",
            "predicted %", "rollbacks"]
    keys = ["run", "val_loss", "val_acc", "val_loss_at_equal_wall", "wall_s", "backward_passes",
            "wall_to_target_s", "predicted_pct", "rollbacks"]

    def fmt(v: Any) -> str:
        if v is None:
            return "not reached"
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"
        return str(v)

    cells = [head] + [[fmt(r[k]) for k in keys] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    speed = ttt["wall_speedup"]
    lines.append("")
    lines.append(f"target (baseline final val loss): {ttt['target_val_loss']:.4f}")
    if speed is None:
        lines.append("hybrid did not reach the target within the step budget")
    else:
        verdict = "faster" if speed > 1 else "slower"
        lines.append(f"time-to-target: {speed:.2f}x wall-clock ({verdict} than the tuned baseline), "
                     f"{ttt['backward_speedup']:.2f}x backward passes")
    return "\n".join(lines)


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
        ax_s.axvspan(a, b, color="tab:orange", alpha=0.15, lw=0,
                     label="predicted steps" if i == 0 else None)
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
