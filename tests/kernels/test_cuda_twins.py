"""Numba CUDA twins: run under the CUDA simulator and lowered for a GPU target, in subprocesses.

The simulator must be switched on before numba is first imported, and this process already
imported numba for the CPU twins, so the cases live in files of their own that a fresh
interpreter runs (cudasim_cases.py, cuda_lowering_cases.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _pytest(case_file: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    full_env.update(env)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / case_file)]
    return subprocess.run([*cmd, *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=600)


def _count(word: str, output: str) -> int:
    found = re.search(rf"(\d+) {word}", output)
    return int(found.group(1)) if found else 0


class TestCudaSimulator:
    """The Numba CUDA twins agree with the references when the simulator runs them."""

    def test_all_cases_pass(self):
        """Every simulator case passes, none is skipped."""
        run = _pytest("cudasim_cases.py", {"NUMBA_ENABLE_CUDASIM": "1"})
        out = run.stdout + run.stderr
        assert run.returncode == 0, out[-4000:]
        assert _count("passed", out) == 45, out[-2000:]
        assert _count("skipped", out) == 0, out[-2000:]

    def test_a_broken_kernel_fails(self):
        """With the MLP helper sabotaged, the MLP forward cases fail: the kernels really run."""
        run = _pytest(
            "cudasim_cases.py",
            {"NUMBA_ENABLE_CUDASIM": "1", "HPCORE_CUDASIM_SABOTAGE": "1"},
            "-k",
            "mlp_forward",
        )
        out = run.stdout + run.stderr
        assert run.returncode == 1, out[-4000:]
        assert _count("failed", out) >= 4, out[-2000:]


class TestCudaLowering:
    """The same kernels compile for Numba's real CUDA target (no GPU needed to lower)."""

    def test_kernels_lower_to_nvvm_ir(self):
        """Every CUDA kernel types and lowers for sm_80 with its launch argument types."""
        run = _pytest("cuda_lowering_cases.py", {})
        out = run.stdout + run.stderr
        assert run.returncode == 0, out[-4000:]
        assert _count("passed", out) == 2, out[-2000:]
