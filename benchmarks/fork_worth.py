"""Fork measurement of jump worth: how much of J skipped steps a forecast still delivers
after R recovery steps (issue 19; write-up and commands in ``benchmarks/FORKS.md``).

Usage: ``python benchmarks/fork_worth.py --workload torch-mlp-mnist --optimizer sgd --seeds 3,4``
(``--tune`` on a seed that is not reported first; ``--show FILE`` reprints a result).
The plain loop keeps an EMA of the parameters (decay 0.95) and a ring of 10 snapshots, one
per 40 steps. At each fork F, model, optimizer and stream position are saved; for each J:
truth = the plain loop itself measured R steps after F + J; no jump = R steps from F;
candidate = theta + D, then the same R steps. ``gain = (L_nojump - L_cand) / (L_nojump -
L_truth)``, pooled as a ratio of sums over forks and seeds, bootstrap over forks. Cosine and
length ratio are against the true EMA displacement ``EMA(F + J) - EMA(F)`` (the oracle).
Counts and losses only: nothing reads a clock.
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fork_directions import CANDIDATES, GRIDS, ForkContext, forecast, labels, parse_label

DECAY = 0.95  # per-step decay of the parameter average
INTERVAL = 40  # steps between snapshots
RING = 10  # snapshots kept
STEP_DECAY = 0.99  # decay of the per-step-change average (update_drift)
GSQ_DECAY = 0.999  # decay of the gradient-square EMA kept for SGD (curvature)
SMOOTH, EVAL_GAP = 5, 10  # evaluation points averaged at the end of a recovery, steps apart
PROBE_BATCHES = 4  # recent training batches the probed candidate evaluates on
OUT_DIR = Path(__file__).resolve().parent / "results-forks"
# The rates, but SGD at 0.01: at 0.1 the MNIST MLP's validation loss rises through the
# fork range (0.28 at step 200 to 0.9 at 3,800, seed 3), so there is no drift to keep.
WORKLOAD_LR = {("torch-mlp-mnist", "sgd"): 0.01, ("torch-mlp-mnist", "adam"): 1e-3,
               ("torch-chartf-long", "adamw"): 3e-3}
PRIMARY = "loss"  # the metric tuning decides on and the write-up leads with


def gain(nojump: np.ndarray, cand: np.ndarray, truth: np.ndarray) -> float:
    """Pooled gain, a ratio of sums: share of the true steps' improvement a jump keeps."""
    den = float(np.sum(np.asarray(nojump) - np.asarray(truth)))
    return float(np.sum(np.asarray(nojump) - np.asarray(cand))) / den if den else float("nan")


def bootstrap(nojump: np.ndarray, cand: np.ndarray, truth: np.ndarray, reps: int = 2000,
              seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of :func:`gain` over fork points drawn with replacement."""
    idx = np.random.default_rng(seed).integers(0, len(nojump), size=(reps, len(nojump)))
    num, den = (nojump - cand)[idx].sum(1), (nojump - truth)[idx].sum(1)
    g = num[den != 0] / den[den != 0]
    return float(np.percentile(g, 2.5)), float(np.percentile(g, 97.5))


def cos_len(d: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """Cosine of ``d`` with ``true`` and the length ratio ``|d| / |true|``."""
    nd, nt = float(np.linalg.norm(d)), float(np.linalg.norm(true))
    return float(d @ true) / (nd * nt + 1e-300), nd / (nt + 1e-300)


class Stream:
    """A batch iterator that can be looked ahead (:meth:`peek`) without being consumed."""

    def __init__(self, it: Any) -> None:
        self.it, self.buf = it, collections.deque()

    def next(self) -> Any:
        """The next batch (from the look-ahead buffer first)."""
        return self.buf.popleft() if self.buf else next(self.it)

    def peek(self, n: int) -> list[Any]:
        """The next ``n`` batches, left in the stream."""
        self.buf.extend(next(self.it) for _ in range(n - len(self.buf)))
        return list(self.buf)[:n]


def _flat(tensors: list[Any]) -> np.ndarray:
    """The tensors as one float64 vector (parameter order)."""
    import torch

    return torch.cat([t.detach().reshape(-1) for t in tensors]).double().numpy()


def moments(run: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Flat first moment (``exp_avg`` or the momentum buffer) and Adam's ``exp_avg_sq``."""
    st = [run.opt.state[p] for p in run.model.parameters()]
    if "exp_avg" in st[0]:
        return _flat([s["exp_avg"] for s in st]), _flat([s["exp_avg_sq"] for s in st])
    return _flat([s["momentum_buffer"] for s in st]), None


def save(run: Any) -> tuple[dict, dict]:
    """Copies of the model and optimizer state."""
    return ({k: v.detach().clone() for k, v in run.model.state_dict().items()},
            copy.deepcopy(run.opt.state_dict()))


def load(run: Any, state: tuple[dict, dict]) -> None:
    """Restore a :func:`save` (copied again, so the saved state is never stepped)."""
    run.model.load_state_dict(state[0])
    run.opt.load_state_dict(copy.deepcopy(state[1]))


class Recovery:
    """Measures one recovery: the mean validation loss at its last ``SMOOTH`` evaluation
    points (``EVAL_GAP`` steps apart) and the loss of an average (decay ``DECAY``) restarted
    at its first point; both smooth the iterate noise the loss of one point carries."""

    def __init__(self, run: Any, R: int) -> None:
        self.run, self.R, self.i, self.losses = run, R, 0, []
        self.at = {R - EVAL_GAP * k for k in range(SMOOTH) if R - EVAL_GAP * k > 0}
        self.ema = run.get_flat().astype(np.float64)

    def step(self) -> None:
        """Call after each recovery step."""
        self.i += 1
        self.ema += (1 - DECAY) * (self.run.get_flat() - self.ema)
        if self.i in self.at:
            self.losses.append(self.run.validate()[0])

    def result(self) -> tuple[float, float]:
        """``(smoothed loss, loss of the recovery's average)``; the parameters are kept."""
        here = self.run.get_flat()
        self.run.set_flat(self.ema)
        ema_loss = self.run.validate()[0]
        self.run.set_flat(here)
        return float(np.mean(self.losses)), ema_loss


def recover(run: Any, state: tuple, theta: np.ndarray | None, batches: list, zero_m: bool,
            ) -> tuple[float, float, float]:
    """From ``state``, set ``theta`` (if any), optionally zero the first moment (Adam's
    ``exp_avg`` or SGD's momentum buffer), run the batches: validation loss right after the
    jump, then :meth:`Recovery.result`."""
    load(run, state)
    if theta is not None:
        run.set_flat(theta)
    for s in (run.opt.state[q] for q in run.model.parameters() if zero_m):
        (s["exp_avg"] if "exp_avg" in s else s["momentum_buffer"]).zero_()  # the jump variant
    l0 = run.validate()[0]
    rec = Recovery(run, len(batches))
    for b in batches:
        run.plain_step(b)
        rec.step()
    return (l0, *rec.result())


def make_probe(run: Any, batches: list) -> Any:
    """``theta -> mean training loss`` on ``batches`` (forward only; leaves theta changed)."""
    import torch

    def probe(theta: np.ndarray) -> float:
        run.set_flat(theta)
        with torch.no_grad():
            return float(np.mean([float(run.loss_fn(run.model, b)) for b in batches]))

    return probe


def measure_seed(task: Any, lr: float, seed: int, forks: list[int], js: list[int], R: int,
                 labels: list[str], interval: int = INTERVAL) -> list[dict[str, Any]]:
    """Run the plain loop of one seed and every fork measurement; one record per (F, J)."""
    import torch

    total = max(forks) + max(js) + R
    run = task.build(seed=seed, lr=lr, steps=total, schedule="constant")
    stream = Stream(run.batches())
    theta = run.get_flat().astype(np.float64)
    ema, step_avg, gsq = theta.copy(), np.zeros_like(theta), np.zeros_like(theta)
    ring: collections.deque = collections.deque(maxlen=RING)
    recent: collections.deque = collections.deque(maxlen=PROBE_BATCHES)
    pending: dict[int, dict[str, Any]] = {}
    records: list[dict[str, Any]] = []  # one per (fork, J), written when its last truth is in
    for t in range(1, total + 1):
        recent.append(stream.next())
        run.plain_step(recent[-1])
        new = run.get_flat().astype(np.float64)
        grad = _flat([torch.zeros_like(q) if q.grad is None else q.grad
                      for q in run.model.parameters()])
        step_avg += (1 - STEP_DECAY) * (new - theta - step_avg)
        gsq += (1 - GSQ_DECAY) * (grad * grad - gsq)
        ema += (1 - DECAY) * (new - ema)
        theta = new
        if t % interval == 0:
            ring.append((t, ema.copy()))
        if t in forks:
            if len(ring) < RING:
                msg = f"fork {t} has {len(ring)} snapshots; forks need >= {RING * interval} steps"
                raise ValueError(msg)
            m, v = moments(run)
            ctx = ForkContext(theta.copy(), ema.copy(), np.stack([s for _, s in ring]),
                              np.array([float(s) for s, _ in ring]), t, DECAY / (1 - DECAY),
                              m, v if v is not None else gsq.copy() / (1 - GSQ_DECAY ** t),
                              step_avg.copy())
            pending[t] = {"state": save(run), "ctx": ctx, "batches": stream.peek(R),
                          "probe_batches": list(recent), "ema_at": {}, "truth": {}, "rec": {},
                          "fork_loss": run.validate()[0]}
        for F, p in list(pending.items()):
            d = t - F
            for J, rec in p["rec"].items():
                if d - J <= R:
                    rec.step()
                if d - J == R:
                    p["truth"][J] = rec.result()
            if d in js:
                p["ema_at"][d] = ema.copy()
                p["rec"][d] = Recovery(run, R)
            if d == max(js):
                main = save(run)
                p["results"] = _evaluate(run, p, js, labels)
                load(run, main)
            if d == max(js) + R:
                records += [{"seed": seed, "fork": F, "J": J, "fork_loss": p["fork_loss"],
                             "truth": p["truth"][J][0], "truth_ema": p["truth"][J][1],
                             **p["results"][J]} for J in js]
                del pending[F]
    return records


def _evaluate(run: Any, p: dict[str, Any], js: list[int], labels: list[str]) -> dict:
    """No-jump and every candidate's recovery from one saved fork, for each J."""
    ctx: ForkContext = p["ctx"]
    _, nojump, nojump_ema = recover(run, p["state"], None, p["batches"], False)
    out: dict[int, dict[str, Any]] = {}
    for J in js:
        true_d = p["ema_at"][J] - ctx.ema
        cands: dict[str, dict[str, float]] = {}
        for label in labels:
            ctx.probe = make_probe(run, p["probe_batches"])
            ctx.probe_calls = 0
            d = forecast(label, ctx, J, true_d)
            c, ratio = cos_len(d, true_d)
            cdrift, _ = cos_len(d - (ctx.ema - ctx.theta), true_d)
            l0, l1, l2 = recover(run, p["state"], ctx.theta + d, p["batches"],
                                 parse_label(label)[2])
            cands[label] = {"loss": l1, "ema_loss": l2, "jump_loss": l0, "cos": c, "len": ratio,
                            "cos_drift": cdrift, "probe_forwards": ctx.probe_calls * len(p["probe_batches"])}
        out[J] = {"nojump": nojump, "nojump_ema": nojump_ema, "cands": cands}
    return out


def summarise(records: list[dict[str, Any]], labels: list[str], js: list[int],
              metric: str = "loss") -> dict:
    """Pooled gain [95% interval], mean cosine and length ratio per candidate and J, on
    ``metric``: ``"loss"`` (smoothed iterate loss) or ``"ema_loss"`` (recovery average)."""
    sfx = "" if metric == "loss" else "_ema"
    out: dict[str, dict[str, Any]] = {label: {} for label in labels}
    for J in js:
        rs = [r for r in records if r["J"] == J]
        nj, tr = (np.array([r[k + sfx] for r in rs]) for k in ("nojump", "truth"))
        for label in labels:
            c = [r["cands"][label] for r in rs]
            cd = np.array([x[metric] for x in c])
            out[label][str(J)] = {
                "gain": gain(nj, cd, tr), "ci": list(bootstrap(nj, cd, tr)), "forks": len(rs),
                **{k: float(np.mean([x[k] for x in c])) for k in ("cos", "len", "cos_drift")},
                "nojump_minus_truth": float(np.mean(nj - tr))}
    return out


def print_table(title: str, summary: dict, js: list[int]) -> None:
    """One line per candidate: gain [interval] cos len, for each J."""
    print(f"\n{title}\n  {'candidate':32s}" + "".join(f"{f'J={J} gain [95%]':>24s}   cos   len"
                                                   for J in js))
    for label, row in summary.items():
        cells = (row[str(J)] for J in js)
        print(f"  {label:32s}" + "".join(f"{c['gain']:8.2f} [{c['ci'][0]:5.2f},{c['ci'][1]:5.2f}]"
                                         f"{c['cos']:6.2f}{c['len']:6.2f}" for c in cells))


def _ints(text: str, what: str) -> list[int]:
    """``"1,2"`` or ``"start:stop:step"`` (stop included) as integers, or exit saying so."""
    try:
        if ":" in text:
            a, b, s = (int(x) for x in text.split(":"))
            return list(range(a, b + 1, s))
        return [int(x) for x in text.split(",") if x]
    except ValueError:
        msg = f"{what} must be integers like '100,200' or 'start:stop:step' (got {text!r})"
        raise SystemExit(msg) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line; a bad value exits with a message saying what to do."""
    from hpcore.bench.workloads import WORKLOADS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, default, text in (
        ("--workload", "torch-mlp-mnist", "a torch workload"), ("--optimizer", "sgd", ""),
        ("--seeds", "3,4", ""), ("--js", "100,200,400", "horizons J"),
        ("--forks", "600:3400:200", "fork steps, a list or start:stop:step"),
        ("--candidates", ",".join(CANDIDATES), ""), ("--out", str(OUT_DIR), ""),
        ("--zero-m", "line10,oracle", "labels also run with the first moment zeroed"),
    ):
        ap.add_argument(flag, default=default, help=text)
    ap.add_argument("--lr", type=float, default=None, help="default: WORKLOAD_LR")
    ap.add_argument("--recovery", type=int, default=100, help="recovery steps R")
    ap.add_argument("--tune", action="store_true", help="tune GRIDS (J=200 unless --js)")
    a = ap.parse_args(argv)
    if a.workload not in WORKLOADS or WORKLOADS[a.workload].framework != "torch":
        torch_names = [n for n, w in WORKLOADS.items() if w.framework == "torch"]
        ap.error(f"unknown workload {a.workload!r}; this harness runs torch workloads: "
                 f"{', '.join(torch_names)}")
    if a.optimizer not in WORKLOADS[a.workload].lr_grids:
        ap.error(f"workload {a.workload!r} runs with "
                 f"{', '.join(WORKLOADS[a.workload].lr_grids)}, not {a.optimizer!r}")
    a.seeds, a.forks = _ints(a.seeds, "--seeds"), _ints(a.forks, "--forks")
    a.js = _ints("200" if a.tune and a.js == "100,200,400" else a.js, "--js")
    if not a.js or min(a.js) <= 0:
        ap.error(f"every horizon J must be >= 1 (got --js {a.js})")
    if a.recovery < 1:
        ap.error(f"--recovery must be >= 1 (got {a.recovery})")
    a.candidates, a.zero_m = (list(filter(None, x.split(","))) for x in (a.candidates, a.zero_m))
    for c in (c for c in a.candidates + a.zero_m if c not in ["oracle", *CANDIDATES]):
        ap.error(f"unknown candidate {c!r}; known: oracle, {', '.join(CANDIDATES)}")
    a.lr = a.lr if a.lr is not None else WORKLOAD_LR.get((a.workload, a.optimizer))
    if a.lr is None:
        ap.error(f"no default rate for {a.workload} {a.optimizer}; pass --lr")
    return a


def paired(records: list[dict[str, Any]], a: str, b: str, J: int, metric: str = "loss",
           reps: int = 2000) -> tuple[float, float, float]:
    """Gain of label ``a`` minus gain of ``b`` at ``J`` with a paired bootstrap interval."""
    rs = [r for r in records if r["J"] == J]
    sfx = "" if metric == "loss" else "_ema"
    nj, tr = (np.array([r[k + sfx] for r in rs]) for k in ("nojump", "truth"))
    ca, cb = (np.array([r["cands"][x][metric] for r in rs]) for x in (a, b))
    idx = np.random.default_rng(0).integers(0, len(rs), size=(reps, len(rs)))
    d = ((cb - ca)[idx].sum(1)) / (nj - tr)[idx].sum(1)
    return float(np.sum(cb - ca) / np.sum(nj - tr)), *np.percentile(d, [2.5, 97.5]).tolist()


def show(result: dict[str, Any]) -> None:
    """Print a result's tables (both metrics) and the first-moment comparisons."""
    a, labels, records = result["args"], result["labels"], result["records"]
    mode = "tune" if a["tune"] else "report"
    for m, sm in result["summary"].items():
        print_table(f"{mode} {a['workload']} {a['optimizer']} lr {a['lr']:g} seeds {a['seeds']} "
                    f"forks {a['forks'][0]}..{a['forks'][-1]} ({len(a['forks'])}) "
                    f"R {a['recovery']} [{m}]", sm, a["js"])
    for z in (x for x in labels if x.endswith("@zero_m")):
        base = z.removesuffix("@zero_m")
        for J in a["js"]:
            g, lo, hi = paired(records, z, base, J)
            print(f"  {z} minus {base}, J={J}: {g:+.3f} [{lo:+.3f}, {hi:+.3f}] (loss)")


def main(argv: list[str] | None = None) -> None:
    """Run the measurement (or ``--show`` a saved one), print the tables, write the JSON."""
    import torch

    torch.set_num_threads(1)
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--show"]:
        show(json.loads(Path(argv[1]).read_text()))
        return
    a = parse_args(argv)
    from hpcore.bench.workloads import get_task

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tuned_path = out / f"tuned-{a.workload}-{a.optimizer}.json"
    tuned = {} if a.tune or not tuned_path.exists() else json.loads(tuned_path.read_text())
    if not a.tune and not tuned:
        print(f"note: {tuned_path} not found; untuned DEFAULTS used", flush=True)
    labels_ = labels(a.candidates, tuned, a.tune, a.zero_m)
    records = []
    for seed in a.seeds:
        records += measure_seed(get_task(a.workload, a.optimizer), a.lr, seed, a.forks, a.js,
                                a.recovery, labels_)
        print(f"seed {seed}: {len(records)} records", flush=True)
    summaries = {m: summarise(records, labels_, a.js, m) for m in ("loss", "ema_loss")}
    result = {"args": vars(a), "labels": labels_, "tuned": tuned, "primary": PRIMARY,
              "summary": summaries, "records": records}
    name = f"{'tune' if a.tune else 'report'}-{a.workload}-{a.optimizer}-s{'_'.join(map(str, a.seeds))}"
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    show(result)
    if a.tune:
        best: dict[str, tuple[dict[str, float], float]] = {}
        for label in labels_:
            cname, hyper, _ = parse_label(label)
            g = summaries[PRIMARY][label][str(a.js[0])]["gain"]
            if cname in GRIDS and (cname not in best or g > best[cname][1]):
                best[cname] = (hyper, g)
        old = json.loads(tuned_path.read_text()) if tuned_path.exists() else {}
        tuned_path.write_text(json.dumps({**old, **{c: h for c, (h, _) in best.items()}}, indent=1))
        print(f"tuned: {json.dumps({c: h for c, (h, _) in best.items()})}")
    print(f"wrote {out / name}.json")


if __name__ == "__main__":
    main()
