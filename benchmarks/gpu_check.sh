#!/usr/bin/env bash
# GPU check for issue #7: one prepared script for a machine with a CUDA GPU. It installs nothing.
#
#   benchmarks/gpu_check.sh            # real GPU: pytest -m gpu, then the GPU benchmark (1024^2 to 8192^2)
#   GPU_CHECK_SMOKE=1 benchmarks/gpu_check.sh
#                                      # tiny sizes; with NUMBA_ENABLE_CUDASIM=1 it runs without a GPU
#
# Steps (all output also goes to benchmarks/results/gpu-check-<stamp>.log):
#   1. the machine: nvidia-smi (when present), Numba's view of CUDA;
#   2. `python -m pytest -m gpu tests/test_gpu.py`: real CUDA results bit-identical to cpu (skipped without a GPU);
#   3. `python -m benchmarks --gpu`: cuda and its limit kernel at 1024^2-8192^2 on the full model, cpu at
#      1024^2 and 4096^2 (all threads) for the ratio, written as benchmarks/results/gpu-<stamp>.{json,md,png}.
# Environment: PYTHON (default .venv/bin/python, else python3), GPU_CHECK_OUT (default benchmarks/results),
# GPU_CHECK_SMOKE=1 (tiny sizes, allowed without a GPU under the simulator).
# Lent H100/H200 machines (2026-11): no mesa or tomli-w there, and their numba-cuda 0.30.4 fails on NumPy 2.5
# (np.row_stack removed): carry mesa, tomli-w and numpy 2.4.x as wheels on PYTHONPATH (benchmarks/README.md).
# Exit status: 0 all passed; 1 the gpu tests failed; 2 the benchmark failed; 3 no usable GPU (and not smoke).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
OUT=${GPU_CHECK_OUT:-benchmarks/results}
STAMP=$(date -u +%Y%m%d-%H%M%S)
SMOKE=${GPU_CHECK_SMOKE:-0}
mkdir -p "$OUT"
LOG="$OUT/gpu-check-$STAMP.log"

say() { echo "$@" | tee -a "$LOG"; }

say "# gpu_check $STAMP (smoke=$SMOKE) in $(pwd), python $PY"
if command -v nvidia-smi > /dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | tee -a "$LOG"
fi
"$PY" - <<'PY' 2>&1 | tee -a "$LOG"
import numba
from numba import config
from kernels import cuda as kcuda
print(f"numba {numba.__version__}, simulator {bool(config.ENABLE_CUDASIM)}, real GPU usable {kcuda.usable()}")
PY
USABLE=$("$PY" -c "from kernels import cuda; print(int(cuda.usable()))" 2>/dev/null || echo 0)
if [ "$USABLE" != 1 ] && [ "$SMOKE" != 1 ]; then
    say "no usable CUDA GPU: nothing to check (GPU_CHECK_SMOKE=1 with NUMBA_ENABLE_CUDASIM=1 tests the script)"
    exit 3
fi

say "## pytest -m gpu"
"$PY" -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee -a "$LOG"
TESTS=${PIPESTATUS[0]}
say "pytest exit status $TESTS"

say "## python -m benchmarks --gpu"
if [ "$SMOKE" = 1 ]; then ARGS=(--gpu --smoke --name "gpu-smoke-$STAMP"); else ARGS=(--gpu --name "gpu-$STAMP"); fi
"$PY" -m benchmarks "${ARGS[@]}" --out "$OUT" 2>&1 | tee -a "$LOG"
BENCH=${PIPESTATUS[0]}
say "benchmark exit status $BENCH"

if [ "$TESTS" != 0 ]; then exit 1; fi
if [ "$BENCH" != 0 ]; then exit 2; fi
say "gpu_check passed; results in $OUT (log $LOG)"
