#!/usr/bin/env bash
# One device call: the real-GPU CUDA tests, then benchmarks/simulate_cuda.py.
# Run from the repository root on a machine with an NVIDIA GPU; logs go to $OUT (or ./gpu-out).
# Each step has its own time limit so that one stuck step still leaves the others' output.
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
unset NUMBA_ENABLE_CUDASIM
# numba-cuda 0.30.4 imports np.row_stack, which numpy 2.5 removed: wheels carried in .whl
# (a numpy < 2.5) are installed to a private prefix first.
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
T_TESTS=${T_TESTS:-200}; T_BENCH=${T_BENCH:-150}; T_CACHE=${T_CACHE:-90}
{
  date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv
  python3 -c "import sys, numpy, numba, numba_cuda, sympy; print(sys.version.split()[0], 'numpy', numpy.__version__, 'numba', numba.__version__, 'numba-cuda', numba_cuda.__version__, 'sympy', sympy.__version__)"
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" 2>&1 | tail -1
} 2>&1 | tee "$OUT/env.txt"
echo "== real-GPU CUDA tests"
VANISHCALC_TEST_REAL_GPU=1 timeout "$T_TESTS" python3 -m pytest -q -rfE -p no:cacheprovider \
  ${GPU_TESTS:-tests/sim/test_cuda.py tests/sim/test_cuda_composed.py} 2>&1 | tee "$OUT/tests.log" | tail -60
echo "== benchmarks/simulate_cuda.py"
for dt in float32 float64; do
  timeout "$T_BENCH" python3 benchmarks/simulate_cuda.py --dtype $dt ${BENCH_ARGS:-} 2>&1 | tee -a "$OUT/bench.log"
done
# The disk cache (issue 12.3): two new processes sharing one empty NUMBA_CACHE_DIR (the tests
# above filled the in-tree cache, so a plain rerun would not show a cold start).  The first
# should report misses and take seconds, the second hits only and a fast first call.
echo "== kernel disk cache: cold process, then warm process"
CACHE_DIR=$(mktemp -d)
for run in cold warm; do
  echo "-- $run"
  NUMBA_CACHE_DIR=$CACHE_DIR timeout "$T_CACHE" python3 benchmarks/simulate_cuda.py --dtype float32 --quick --repeat 1 2>&1 | tee -a "$OUT/bench.log" | grep -E "first call|disk cache|compiling|narrow"
done
ls -R "$CACHE_DIR" | head -20 > "$OUT/cache_files.txt"
echo "== done"; date -u
