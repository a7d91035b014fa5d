"""``hpcore bench`` end to end on tiny step budgets: table, JSON, PNG, suite Markdown."""

from __future__ import annotations

import json

import pytest

from hpcore import cli
from hpcore.bench import workloads

pytest.importorskip("sklearn", reason="the digits and breast-cancer data ship with scikit-learn")
pytest.importorskip("matplotlib", reason="the plot needs matplotlib (bench extra)")
pytest.importorskip("tqdm", reason="the progress bar needs tqdm (bench extra)")


class TestMainJob:
    def test_numpy_workload_writes_json_and_png(self, tmp_path, capsys):
        """--steps 60 on the NumPy workload: exit 0, a table, a JSON with both curves, a PNG."""
        rc = cli.main(["bench", "--workload", "numpy-mlp-digits", "--steps", "60",
                       "--out", str(tmp_path), "--quiet"])
        assert rc == 0
        out = capsys.readouterr().out
        assert "baseline" in out and "hybrid" in out and "time-to-target" in out
        assert "engine time per step:" in out
        assert "hybrid: no jump in 60 steps (a first jump needs 675 steps: 600 of warm-up" in out
        js = tmp_path / "numpy-mlp-digits-sgd-constant-seed0.json"
        png = tmp_path / "numpy-mlp-digits-sgd-constant-seed0.png"
        assert png.stat().st_size > 0
        payload = json.loads(js.read_text())
        assert set(payload["curves"]) == {"baseline", "hybrid"}
        assert payload["steps"] == 60
        assert float(payload["lr"]) in (0.01, 0.02, 0.05, 0.1, 0.2)  # the sweep picked one
        assert {r["run"] for r in payload["rows"]} == {"baseline", "hybrid"}
        assert "overhead_pct" in payload["rows"][1] and "engine_s" in payload["rows"][1]
        assert payload["rows"][0]["engine_s"] == 0.0  # the baseline against itself
        eq = payload["compute_equivalent"]  # constant rate: the baseline's curve is the frontier
        assert "compute-equivalent:" in out and eq["hybrid_final_loss"] > 0
        assert eq["backward_speedup"] is None or eq["backward_speedup"] > 0

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
         "--schedules takes constant, cosine (got 'linear')"),
        ("numpy-softmax-breastcancer", "--optimizers", "lbfgs",
         "--optimizers takes sgd, adam (got 'lbfgs')"),
        ("torch-chartf-shakespeare", "--optimizers", "sgd",
         "no workload of torch-chartf-shakespeare offers sgd"),
    ])
    def test_bad_filters_are_refused(self, tmp_path, capsys, workload, flag, value, message):
        """An unknown optimizer or schedule, or a filter that leaves nothing, is refused."""
        assert cli.main(["bench", "--suite", "--workloads", workload, flag, value,
                         "--out", str(tmp_path)]) == 2
        assert message in capsys.readouterr().err

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
