"""The frameworks are optional: hpcore imports without them, the adapters name their extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

BLOCK = "import sys\nfor name in ('torch', 'jax', 'optax'):\n    sys.modules[name] = None\n"
MESSAGES = {
    "torch": 'hpcore.adapters.torch needs PyTorch; install it with '
             'pip install "hybrid-predict-trainer[torch]"',
    "jax": 'hpcore.adapters.jax needs JAX and optax; install them with '
           'pip install "hybrid-predict-trainer[jax]"',
}


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

    def test_numpy_run_trains_and_checkpoints(self, tmp_path):
        """A NumPy run takes steps, saves and loads a checkpoint with no framework there."""
        code = (
            "import numpy as np\n"
            "from hpcore.adapters.numpy import HybridTrainer\n"
            "from hpcore.optim import SGD\n"
            "p = np.zeros(3, np.float32)\n"
            "t = HybridTrainer(p, lambda p, b: (float(p @ p), 2 * p - b), SGD(0.1))\n"
            "for _ in range(5):\n"
            "    t.step(np.ones(3, np.float32))\n"
            "path = t.save_checkpoint('c.npz')\n"
            "u = HybridTrainer(np.zeros(3, np.float32), lambda p, b: (0.0, p), SGD(0.1))\n"
            "u.load_checkpoint(path)\n"
            "print(u.current_step, bool(np.array_equal(u.params, p)), sys.modules['torch'])\n"
        )
        assert run(code, tmp_path).split() == ["5", "True", "None"]  # torch still blocked

    @pytest.mark.parametrize("framework", ["torch", "jax"])
    def test_adapter_names_its_extra(self, framework, tmp_path):
        """Importing an adapter without its framework says which extra to install."""
        code = (
            f"try:\n    import hpcore.adapters.{framework}\n"
            "except ImportError as e:\n    print(e)\n"
        )
        assert run(code, tmp_path).strip() == MESSAGES[framework]
