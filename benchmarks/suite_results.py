"""Copy a finished suite run into benchmarks/RESULTS.md and the README's benchmarks section.

Usage (after ``hpcore bench --suite --out benchmarks/results`` and, for the longer budgets,
``hpcore bench --suite --workloads torch-mlp-mnist,torch-cnn-mnist --steps 2000 --out
benchmarks/results-long``)::

    python benchmarks/suite_results.py [benchmarks/results [benchmarks/results-long]]

Numbers come only from the run's ``suite.md`` (written by ``hpcore bench --suite``); nothing
here computes or edits a number.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- section:benchmarks -->", "<!-- section:end -->"
MACHINE = "2-core CPU VM, no GPU"

INTRO = """\
`hpcore bench --suite` measures time-to-target (DESIGN section 9): for each workload, optimizer
(SGD with momentum 0.9, Adam) and schedule (constant, cosine), the plain loop's learning rate
is tuned by a sweep on seed 0 at the full step budget; then, for each of 3 seeds, the tuned
baseline, the hybrid trainer (default `HybridTrainerConfig()`, told the budget as
`total_steps`), Lookahead (k=5, alpha=0.5), raw-update extrapolation (the engine with
`snapshot_interval=1, snapshot_ema=None, LinearConfig(window=2), history_size=2`: DESIGN 5's
floor) and a control (the baseline itself with its batches one step out of line: the metric's
noise floor) run from the same initial point, side by side (one validation interval of each in
turn, in an order shuffled every round, so that the VM's speed drifting during a run slows all
of them alike and no run always follows the same one; past the budget the methods still short
of the target go on together). Step budgets are small so that the whole suite fits in minutes
on a 2-core CPU: 600 steps (MNIST MLP), 400 (MNIST CNN, Shakespeare transformer), 800 (JAX
digits MLP), 1,000 (NumPy breast-cancer softmax regression). A first jump needs 400 observed
steps of history (10 snapshots 40 steps apart) and room for the jump and its 50 Correct steps
before the budget ends; the default floor guard (`floor=0.95`) then lets it start only when 5%
of the budget covers a rollback of those 50 Correct steps: budgets under 1,000 steps do not, so
there the hybrid trainer never jumps and its rows measure the wrapper's cost alone (the
predicted column shows where it did jump). Engine overhead is measured by the benchmark (the
library reads no clock): a run's wall-clock less its backward passes at the baseline's mean
step time, the runs side by side; the control row shows the noise of that difference. Steps are
not the cost, wall-clock is: with a constant learning rate the other methods may run on up to
1.5x the baseline's budget to reach its final loss (a cosine schedule ends with the budget, so
there they stop at it); "final val loss vs baseline" compares at the baseline's budget.
Validation losses are read as means of 3 consecutive evaluations. The suite rewrites its
`suite.md` and `suite.json` after every configuration (marked partial until the last), so an
interrupted run keeps what it finished.
"""

LONGER = """\
The same suite on the two MNIST workloads with a budget of 2,000 steps for every run: 5% of
it (100 steps) covers two rollbacks of a jump's 50 Correct steps, so the guarded hybrid trainer
may jump (the predicted column shows where it did).
"""


def main(argv: list[str]) -> int:
    results = Path(argv[1]).resolve() if len(argv) > 1 else ROOT / "benchmarks" / "results"
    suite_md = (results / "suite.md").read_text().strip()
    header, _, table = suite_md.partition("\n\n")
    body = (f"{INTRO}\nMachine: {MACHINE}. {header}\n\n{table}\n\n"
            f"Raw numbers (every seed): `{(results / 'suite.json').relative_to(ROOT)}`.\n")
    if len(argv) > 2:
        longer = Path(argv[2]).resolve()
        head_l, _, table_l = (longer / "suite.md").read_text().strip().partition("\n\n")
        body += (f"\n### Longer budgets\n\n{LONGER}\nMachine: {MACHINE}. {head_l}\n\n"
                 f"{table_l}\n\nRaw numbers (every seed): "
                 f"`{(longer / 'suite.json').relative_to(ROOT)}`.\n")
    (ROOT / "benchmarks" / "RESULTS.md").write_text("# Benchmark results\n\n" + body)
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START in text and END in text.split(START, 1)[1]:
        before, rest = text.split(START, 1)
        after = rest.split(END, 1)[1]
        readme.write_text(f"{before}{START}\n## Benchmarks\n\n{body}\n{END}{after}")
        print(f"wrote {ROOT / 'benchmarks' / 'RESULTS.md'} and the README section")
    else:
        print("README has no benchmarks markers; wrote benchmarks/RESULTS.md only")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
