"""Dispatch: the first call of a JIT twin is timed as start-up, once per twin."""

from __future__ import annotations

import time

import numpy as np
import pytest

from hpcore import kernels
from hpcore.kernels import _dispatch


@pytest.fixture
def fresh_registry(monkeypatch):
    """A private registry, JIT set and settled set for the test's made-up op."""
    monkeypatch.setattr(_dispatch, "_REGISTRY", dict(_dispatch._REGISTRY))
    monkeypatch.setattr(_dispatch, "_JIT_TWINS", set(_dispatch._JIT_TWINS))
    monkeypatch.setattr(_dispatch, "_settled", set())


def test_a_jit_twins_first_call_is_start_up_and_only_the_first(fresh_registry):
    calls = []

    @_dispatch.register("made_up_op", "numba")
    def slow_first(x):
        if not calls:
            time.sleep(0.03)  # as Numba's first call loads the runtime and the cached code
        calls.append(1)
        return x.sum()

    @_dispatch.register("made_up_op", "numpy")
    def reference(x):
        time.sleep(0.03)
        return x.sum()

    x = np.ones(4)
    before = kernels.start_up_seconds()
    with kernels.use("numba"):
        assert _dispatch.dispatch("made_up_op", x)(x) == 4.0
        first = kernels.start_up_seconds() - before
        assert _dispatch.dispatch("made_up_op", x)(x) == 4.0
        assert kernels.start_up_seconds() - before == first
        assert _dispatch.lookup("made_up_op", x) is slow_first  # lookup stays the twin
    assert first >= 0.03
    with kernels.use("numpy"):
        _dispatch.dispatch("made_up_op", x)(x)  # a reference is never start-up
    assert kernels.start_up_seconds() - before == first
