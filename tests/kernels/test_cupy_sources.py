"""CuPy RawKernel sources compile to PTX through NVRTC (no GPU needed) and run where a GPU is.

NVRTC ships in the ``nvidia-cuda-nvrtc-cu12`` wheel beside ``cupy-cuda12x``; CuPy's own
``RawKernel.compile()`` asks the driver first and fails without a GPU, so these tests call
NVRTC directly (DESIGN.md section 7). Without the wheel they skip with the reason.
"""

from __future__ import annotations

import numpy as np
import pytest

from hpcore.kernels import history, stats

SOURCES = {
    "history": (history.HISTORY_CUPY_SOURCE, ["ema_update_stats", "lincomb", "axpy_path", "trend_r2"]),
    "stats": (stats.STATS_CUPY_SOURCE, ["vector_stats"]),
}


@pytest.fixture(scope="module")
def nvrtc():
    """The NVRTC binding of CuPy, or a visible skip saying why it cannot load."""
    try:
        from cupy_backends.cuda.libs import nvrtc as lib
    except Exception as exc:
        pytest.skip(f"NVRTC compile check: cupy_backends.cuda.libs.nvrtc unavailable ({exc})")
    try:
        lib.getVersion()
    except Exception as exc:
        msg = f"NVRTC compile check: libnvrtc does not load ({exc}); needs nvidia-cuda-nvrtc-cu12"
        pytest.skip(msg)
    return lib


def _compile(nvrtc, code: str, options: tuple[str, ...]) -> str:
    prog = nvrtc.createProgram(code, "hpcore_kernels.cu", [], [])
    try:
        try:
            nvrtc.compileProgram(prog, ["--gpu-architecture=compute_80", *options])
        except Exception as exc:
            log = nvrtc.getProgramLog(prog)
            raise AssertionError(f"NVRTC rejected the source:\n{log}") from exc
        ptx = nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)
    return ptx.decode() if isinstance(ptx, bytes) else ptx


class TestNvrtcCompile:
    """Each family's source compiles for both element types and exports its kernels."""

    @pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
    @pytest.mark.parametrize("family", sorted(SOURCES))
    def test_source_compiles_to_ptx(self, nvrtc, family, dtype):
        """PTX comes back with one ``.entry`` per kernel the wrappers launch."""
        source, names = SOURCES[family]
        ptx = _compile(nvrtc, history.cupy_source(source, dtype), history.CUPY_OPTIONS)
        for name in names:
            assert f".entry {name}(" in ptx

    def test_a_broken_source_is_rejected_with_its_log(self, nvrtc):
        """The check can fail: a source with an error raises, showing NVRTC's log."""
        broken = history.cupy_source(history.HISTORY_CUPY_SOURCE, np.float32).replace(
            "prev[i] = theta[i];", "prev[i] = thetaa[i];"
        )
        with pytest.raises(AssertionError, match='identifier "thetaa" is undefined'):
            _compile(nvrtc, broken, history.CUPY_OPTIONS)
