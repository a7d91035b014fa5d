"""Shared fixtures: a quadratic problem whose batches name the point they pull towards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


class Quadratic:
    """``loss(p, c) = 0.5 * ||p - c||^2`` per batch ``c``; counts every call."""

    def __init__(self) -> None:
        self.grad_calls = 0
        self.loss_calls = 0  # forward-only losses: probes included

    def loss_and_grad(self, p: np.ndarray, c):
        self.grad_calls += 1
        if c is None:  # a poisoned batch
            return float("nan"), np.full_like(p, np.nan)
        r = p.astype(np.float64) - c
        return 0.5 * float(r @ r), r.astype(np.float32)

    def loss(self, p: np.ndarray, c) -> float:
        self.loss_calls += 1
        r = p.astype(np.float64) - c
        return 0.5 * float(r @ r)

    def probe(self, p: np.ndarray, c):
        """A trainer's probe: the zero-argument forward-only loss at ``c`` of the live
        parameters ``p`` (the array the trainer moves in place)."""
        return lambda: self.loss(p, c)


@pytest.fixture
def quadratic() -> Quadratic:
    return Quadratic()


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(marker: str) -> str:
    """The first ```python block after ``marker`` in the README."""
    text = README.read_text()
    assert marker in text, f"README lost its {marker} marker"
    after = text.split(marker, 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture
def run_readme_block(tmp_path):
    """Run a README quick start exactly as written, in a fresh interpreter; its stdout."""

    def run(marker: str) -> str:
        script = tmp_path / "quickstart.py"
        script.write_text(readme_block(marker))
        # One thread: on a small shared CI box oversubscribed OpenMP threads spin for seconds.
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                             cwd=tmp_path, timeout=300, env=env)
        assert out.returncode == 0, out.stderr
        return out.stdout

    return run


@pytest.fixture(name="readme_block")
def readme_block_fixture():
    """:func:`readme_block` as a fixture."""
    return readme_block
