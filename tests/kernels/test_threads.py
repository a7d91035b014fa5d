"""Numba's threads follow the framework's, and a kernel call never changes torch's count."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numba
import numpy as np
import pytest
from structlog.testing import capture_logs

from hpcore import kernels
from hpcore.kernels import _threads

N = 1 << 12  # small: ``use("numba")`` runs the parallel twins at any size


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment less every thread setting (OpenMP, MKL, Numba, hpcore), plus ``extra``."""
    drop = ("OMP_", "MKL_", "NUMBA_", "HPCORE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env


def _run(code: str, **env: str) -> dict:
    """Runs ``code`` in a fresh interpreter (its first Numba dispatch included); its JSON line."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_clean_env(**env), check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _jump_kernels() -> None:
    """What a jump runs, on the parallel Numba twins."""
    theta = np.ones(N, np.float32)
    ema, out = np.zeros_like(theta), np.zeros_like(theta)
    with kernels.use("numba"):
        kernels.ema_update(theta, ema, 0.9)
        kernels.lincomb(np.full(2, 0.5), np.stack([theta, ema]), ema, -1.0, out)
        kernels.axpy_path(theta, ema, out, 0.5)


@pytest.fixture
def kept_threads():
    """Numba's and torch's (if imported) thread counts, put back after the test."""
    torch = sys.modules.get("torch")
    before_torch = torch.get_num_threads() if torch is not None else None
    before = kernels.numba_threads()
    yield
    numba.set_num_threads(before)
    if before_torch is not None:
        torch.set_num_threads(before_torch)


FIRST_DISPATCH = """
import json, sys
import numpy as np
{prelude}
from hpcore import kernels
x = np.ones(1 << 19, np.float32)  # NUMBA_MIN_SIZE: the parallel path, which launches threads
with kernels.use("numba"):
    kernels.axpy_path(x, x.copy(), x.copy(), 0.5)
import numba
torch = sys.modules.get("torch")
torch_threads = torch.get_num_threads() if torch else None  # read first: nothing launches here
print(json.dumps({{"torch": torch_threads, "numba": numba.get_num_threads(),
                  "layer": numba.threading_layer(), "torch_imported": torch is not None,
                  "cap": numba.config.NUMBA_NUM_THREADS}}))
"""


# An op of torch's thread pool before the first kernel, as in training: torch's lazy thread
# initialisation would otherwise put its own count back at its next call and hide a change.
TORCH_RAN = "torch.ones(1 << 18).mul_(2.0)\n"


class TestFollowFrameworkThreads:
    """follow_framework_threads: the count it sets, where it reads it, what it refuses."""

    @pytest.mark.parametrize("n", [0, -3])
    def test_a_count_below_one_is_refused_naming_it(self, n):
        """n < 1 is a ValueError that names the value and what to pass instead."""
        msg = f"'n' must be >= 1 (got {n}); pass None to follow the framework's thread count"
        with pytest.raises(ValueError, match=re.escape(msg)):
            kernels.follow_framework_threads(n)

    @pytest.mark.parametrize("n", [1.5, True, "2"], ids=["float", "bool", "str"])
    def test_a_count_that_is_not_an_int_is_refused(self, n):
        """A float, a bool or a string is a TypeError, not a silent rounding."""
        msg = f"'n' must be an int >= 1 or None (got {n!r}); None follows the framework"
        with pytest.raises(TypeError, match=re.escape(msg)):
            kernels.follow_framework_threads(n)

    def test_sets_the_count_clipped_to_numbas_threads(self, kept_threads):
        """The count set is returned, read back by numba_threads, and clipped to NUMBA_NUM_THREADS."""
        assert kernels.follow_framework_threads(1) == 1
        assert kernels.numba_threads() == 1 == numba.get_num_threads()
        cap = numba.config.NUMBA_NUM_THREADS
        assert kernels.follow_framework_threads(cap + 5) == cap

    def test_logs_the_count_and_where_it_came_from(self, kept_threads):
        """One event with the threads set, the source and the threading layer."""
        with capture_logs() as logs:
            kernels.follow_framework_threads(1)
        (event,) = [e for e in logs if e["event"] == "numba_threads_followed"]
        assert (event["threads"], event["source"]) == (1, "argument")
        assert event["layer"] == numba.threading_layer()

    def test_an_integer_policy_replaces_the_framework(self, kept_threads, monkeypatch):
        """HPCORE_NUMBA_THREADS=1 sets one thread when n is None."""
        monkeypatch.setenv(_threads.ENV_VAR, "1")
        assert kernels.follow_framework_threads() == 1

    def test_the_free_policy_changes_nothing(self, kept_threads, monkeypatch):
        """HPCORE_NUMBA_THREADS=free: a call with None leaves Numba's count as it was."""
        kernels.follow_framework_threads(1)
        monkeypatch.setenv(_threads.ENV_VAR, "free")
        assert kernels.follow_framework_threads() == 1 == kernels.numba_threads()

    def test_a_bad_policy_is_refused_naming_it(self, monkeypatch):
        """An unknown HPCORE_NUMBA_THREADS value is a ValueError naming the variable and value."""
        monkeypatch.setenv(_threads.ENV_VAR, "many")
        msg = "HPCORE_NUMBA_THREADS must be 'follow', 'free' or an integer >= 1 (got 'many')"
        with pytest.raises(ValueError, match=re.escape(msg)):
            kernels.follow_framework_threads()

    def test_follows_omp_num_threads_without_torch(self):
        """Without torch imported, a fresh process follows OMP_NUM_THREADS (clean environment)."""
        got = _run(FIRST_DISPATCH.format(prelude=""), OMP_NUM_THREADS="1")
        assert not got["torch_imported"]
        assert got["numba"] == 1

    def test_follows_the_core_count_without_torch_or_omp(self):
        """Nothing set: os.cpu_count(), clipped to NUMBA_NUM_THREADS."""
        got = _run(FIRST_DISPATCH.format(prelude=""))
        assert got["numba"] == min(os.cpu_count() or 1, got["cap"])


class TestTorchThreads:
    """With torch imported: its thread count is never changed by a kernel, and bounds Numba's."""

    @pytest.fixture(autouse=True)
    def _torch(self):
        pytest.importorskip("torch")

    def test_follows_torch(self, kept_threads):
        """n = None reads torch.get_num_threads() and leaves it as it was."""
        import torch

        torch.set_num_threads(1)
        assert kernels.follow_framework_threads() == 1
        assert torch.get_num_threads() == 1

    def test_a_jumps_kernels_keep_torchs_count(self, kept_threads):
        """After a jump's kernels torch's count is unchanged and Numba's is no larger."""
        import torch

        torch.set_num_threads(1)
        kernels.follow_framework_threads()
        _jump_kernels()
        assert torch.get_num_threads() == 1
        assert kernels.numba_threads() <= torch.get_num_threads()

    def test_the_first_numba_dispatch_applies_the_policy(self, kept_threads, monkeypatch):
        """lookup of a Numba twin, first in the process, follows torch without any call."""
        import torch

        monkeypatch.setattr(_threads, "_applied", [False])
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        torch.set_num_threads(1)
        with kernels.use("numba"):
            kernels.lookup("axpy_path", np.ones(N, np.float32))
        assert kernels.numba_threads() == 1
        assert torch.get_num_threads() == 1

    @pytest.mark.parametrize("threads", [1, None], ids=["set-to-1", "default"])
    def test_a_fresh_process_keeps_torchs_count_at_its_first_kernel(self, threads):
        """The thread launch of the first parallel kernel (which sets OpenMP's count to Numba's
        default under the 'omp' layer) leaves torch's count as the user set it."""
        prelude = "import torch\n" + (f"torch.set_num_threads({threads})\n" if threads else "")
        prelude += TORCH_RAN
        expected = threads or _run(prelude + "import json, torch\n"
                                   "print(json.dumps(torch.get_num_threads()))")
        got = _run(FIRST_DISPATCH.format(prelude=prelude))
        assert got["torch"] == expected
        assert got["numba"] == min(expected, got["cap"]) <= got["torch"]

    def test_without_the_policy_numbas_launch_resets_torch(self):
        """The cause kept in view (HPCORE_NUMBA_THREADS=free): under the 'omp' layer, which
        shares torch's OpenMP runtime, Numba's launch sets torch's count to NUMBA_NUM_THREADS."""
        prelude = "import torch\ntorch.set_num_threads(1)\n" + TORCH_RAN
        got = _run(FIRST_DISPATCH.format(prelude=prelude), HPCORE_NUMBA_THREADS="free")
        if got["layer"] != "omp" or got["cap"] < 2:
            pytest.skip(f"Numba's {got['layer']!r} layer with {got['cap']} thread(s) leaves "
                        "OpenMP's count alone: nothing to show")
        assert got["torch"] == got["cap"]


class TestSerialAndParallelBuilds:
    """Numba's disk cache keys a function by name and line, not by its flags: each build of a
    body needs a name of its own, or one build runs the other's machine code."""

    PAIRS = ("ema_update", "ema_update_stats", "lincomb", "axpy_path", "trend_r2", "shift")

    def test_every_serial_build_has_a_name_of_its_own(self):
        from hpcore.kernels import history

        for op in self.PAIRS:
            loop, serial = getattr(history, f"_{op}_loop"), getattr(history, f"_{op}_serial")
            assert loop.py_func.__qualname__ != serial.py_func.__qualname__, op

    def test_a_parallel_build_after_the_serial_one_starts_its_threads(self, tmp_path):
        """In a fresh process with an empty cache: the serial build compiles (and is cached)
        first; the parallel one must still be the parallel code."""
        code = (
            "import json, numpy as np, numba\n"
            "from hpcore.kernels import history as h\n"
            "x = np.ones(1 << 12, np.float32)\n"
            "h._axpy_path_serial(x, x.copy(), x.copy(), np.float32(0.5))\n"
            "h._axpy_path_loop(x, x.copy(), x.copy(), np.float32(0.5))\n"
            "try:\n    layer = numba.threading_layer()\n"
            "except ValueError:\n    layer = None\n"
            "print(json.dumps({'layer': layer, 'cap': numba.config.NUMBA_NUM_THREADS}))\n")
        got = _run(code, NUMBA_CACHE_DIR=str(tmp_path))
        assert got["layer"] is not None, "the parallel build ran the serial machine code"
