"""Shared fixtures: a quadratic problem whose batches name the point they pull towards."""

from __future__ import annotations

import numpy as np
import pytest


class Quadratic:
    """``loss(p, c) = 0.5 * ||p - c||^2`` per batch ``c``; counts every call."""

    def __init__(self) -> None:
        self.grad_calls = 0
        self.loss_calls = 0

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


@pytest.fixture
def quadratic() -> Quadratic:
    return Quadratic()
