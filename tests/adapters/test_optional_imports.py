"""The frameworks are optional: hpcore imports without them, the adapters name their extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

BLOCK = "import sys\nfor name in ('torch', 'jax', 'optax'):\n    sys.modules[name] = None\n"


def run(code: str, tmp_path) -> str:
    out = subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


class TestOptionalImports:
    """Importing without torch, jax and optax."""

    def test_core_and_adapters_package_import(self, tmp_path):
        """import hpcore and hpcore.adapters (and the NumPy adapter) need no framework."""
        out = run("import hpcore, hpcore.adapters, hpcore.adapters.numpy\nprint('ok')", tmp_path)
        assert out.strip() == "ok"

    @pytest.mark.parametrize("framework", ["torch", "jax"])
    def test_adapter_names_its_extra(self, framework, tmp_path):
        """Importing an adapter without its framework says which extra to install."""
        code = (
            f"try:\n    import hpcore.adapters.{framework}\n"
            "except ImportError as e:\n    print(e)\n"
        )
        out = run(code, tmp_path)
        assert f'pip install "hybrid-predict-trainer[{framework}]"' in out
