"""Numba CUDA kernels type-check and lower for a real GPU target (sm_80), without a GPU.

The simulator runs kernels as Python, so it cannot tell whether Numba's CUDA target accepts
them. Here every CUDA twin runs once through its public function under ``use("cuda")`` with
its launches intercepted: each launch compiles the kernel (and the ``@numba.njit`` helpers it
calls, retargeted as device functions) to NVVM IR for compute capability 8.0 with the exact
argument types of that launch. Nothing executes; turning the IR into PTX needs libNVVM, which
this check does not ask for.

Not collected by the main run: test_cuda_twins.py runs it in a subprocess without the
simulator.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from hpcore import kernels
from hpcore.kernels import linucb, nowcast, residual

if numba.config.ENABLE_CUDASIM:
    pytest.skip("the lowering check needs the real CUDA target, not the simulator", allow_module_level=True)

try:
    from numba import cuda, types
    from numba.cuda import dispatcher as cuda_dispatcher
    from numba.cuda.compiler import compile_cuda
except Exception as exc:  # pragma: no cover - numba without a CUDA target
    pytest.skip(f"numba's CUDA target cannot be imported: {exc}", allow_module_level=True)

CC = (8, 0)
LOWERED: list[str] = []


class _Device:
    compute_capability = CC


class _Lower:
    """Stands in for a compiled kernel: ``k[blocks, threads](*args)`` compiles, runs nothing."""

    def __init__(self, fn):
        self.fn = fn

    def __getitem__(self, config):
        return self

    def __call__(self, *args):
        self.fn.__globals__["cuda"] = cuda
        argtypes = tuple(numba.typeof(a) for a in args)
        cres = compile_cuda(self.fn, types.void, argtypes, debug=False, lineinfo=False, cc=CC)
        assert "nvptx64" in cres.library.get_llvm_str()
        LOWERED.append(self.fn.__name__)


@pytest.fixture(autouse=True)
def _intercept(monkeypatch):
    # Device helpers ask the current device for its compute capability; there is none here.
    monkeypatch.setattr(cuda_dispatcher, "get_current_device", lambda: _Device())
    for module in (nowcast, linucb, residual):
        monkeypatch.setattr(module, "cuda_kernel", _Lower)
        module._cuda_kernels.cache_clear()
    yield
    for module in (nowcast, linucb, residual):
        module._cuda_kernels.cache_clear()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_every_cuda_kernel_lowers(dtype):
    """All CUDA kernels of the three families compile for sm_80 with the launch's types."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 5)).astype(dtype)
    with kernels.use("cuda"):
        kernels.mlp_forward(x, nowcast.init_mlp(5, 3, rng))
        kernels.mlp_backward(x, [1, 2], [0.5, -1.0], nowcast.init_mlp(5, 3, rng))
        kernels.gru_forward(x, nowcast.init_gru(3, rng))
        kernels.gru_backward(x, [1, 2], [0.5, -1.0], nowcast.init_gru(3, rng), None, 2)
        kernels.categorical_sample(x, x)
        a_inv, b = np.stack([np.eye(3)] * 4), np.zeros((4, 3))
        kernels.linucb_scores(a_inv, b, np.ones(3), 1.0)
        kernels.linucb_update(a_inv, b, 1, np.ones(3), 1.0)
        w = kernels.residual_weights(x[0], x, 0.5)
        kernels.residual_correct(w, x)
    expected = {fn.__name__ for m in (nowcast, linucb, residual) for fn in m.CUDA_KERNELS.values()}
    assert set(LOWERED) >= expected
