#!/usr/bin/env bash
# One batched GPU session (the lent GPU machine has no internet and a short lease; keep the default
# steps under 8 minutes): build ebgc with its CUDA backend, run the CUDA tests (device blobs equal
# to the host runner's, device streams decoded on both sides), the torch tests with their CUDA DDP
# cases, then `ebgc bench --gpu` (fast mode, ratio mode, a stream on the device, whole messages).
# Usage: bench/gpu_session.sh TRACE.npz... ; results and logs go to $OUT (default ./bench/out/gpu).
# Steps can be chosen with EBGC_GPU_STEPS (default "build cuda torch bench"; "suite" runs the rest
# of the suite (xdist); "profile" adds an
# Nsight Compute per-kernel table of one compress + decompress of the first trace, "detail" the
# stall reasons of the fused encode kernel, "sass" its per-instruction counts; build with
# CMAKE_ARGS=-DCMAKE_CUDA_FLAGS=-lineinfo).
set -uo pipefail
OUT=${OUT:-bench/out/gpu}
mkdir -p "$OUT"
STEPS=${EBGC_GPU_STEPS:-build cuda torch bench}
# "sanitize": compute-sanitizer over the CUDA tests selected by SANITIZE_TESTS (a pytest -k expression)
SANITIZE_TESTS=${SANITIZE_TESTS:-not bound_property}
export PYTHONUNBUFFERED=1 CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-16}
has() { [[ " $STEPS " == *" $1 "* ]]; }
step() { echo; echo "=== $* ($(date -u +%T))"; }

step machine
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
python3 -V; nvcc --version | tail -n 2; nproc

if has build; then
  step build
  SECONDS=0
  python3 -m pip install --no-build-isolation --no-deps -q -e . > "$OUT/build.log" 2>&1 ||
    { tail -n 60 "$OUT/build.log"; exit 1; }
  echo "built in ${SECONDS}s"
  python3 -c "import ebgc; print('ebgc', ebgc.__version__, 'HAS_CUDA', ebgc.HAS_CUDA)"
fi

if has cuda; then
  step tests/test_cuda.py
  timeout 300 python3 -m pytest tests/test_cuda.py -q -p no:cacheprovider --maxfail=40 \
    2>&1 | tee "$OUT/test_cuda.log" | tail -n 80
fi

if has torch; then
  step tests/test_torch.py
  timeout 300 python3 -m pytest tests/test_torch.py -q -p no:cacheprovider 2>&1 | tee "$OUT/test_torch.log" | tail -n 30
fi

if has bench && (($# > 0)); then
  step "ebgc bench --gpu $*"
  timeout 240 ebgc bench "$@" --gpu --bounds 1e-2 1e-3 --out "$OUT" -q 2>&1 | tail -n 80
fi

if has profile && (($# > 0)); then
  step "ncu profile of one compress + decompress ($1), ratio mode then fast mode"
  m=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,launch__registers_per_thread
  m=$m,sm__warps_active.avg.pct_of_peak_sustained_active,sm__throughput.avg.pct_of_peak_sustained_elapsed
  m=$m,gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed,launch__grid_size
  for coder in auto bitpack; do
  timeout 200 ncu --profile-from-start off --print-units base --csv --page raw --metrics "$m" \
    python3 bench/gpu_profile.py "$1" 256 $coder > "$OUT/ncu-$coder.csv" 2> "$OUT/ncu-$coder.err"
  python3 - "$OUT/ncu-$coder.csv" <<'PY'
import csv, sys
rows = [r for r in csv.DictReader(l for l in open(sys.argv[1]) if l.startswith('"'))][1:]
float = lambda v: __builtins__.float(v.replace(',', ''))
for r in rows:
    print(f"{r['Kernel Name'][:60]:60s} {float(r['gpu__time_duration.sum'])/1e3:9.1f} us"
          f" rd {float(r['dram__bytes_read.sum'])/1e6:8.1f} MB wr {float(r['dram__bytes_write.sum'])/1e6:8.1f} MB"
          f" mem% {r['gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed']:>6s}"
          f" sm% {r['sm__throughput.avg.pct_of_peak_sustained_elapsed']:>6s}"
          f" occ% {r['sm__warps_active.avg.pct_of_peak_sustained_active']:>6s}"
          f" regs {r['launch__registers_per_thread']} grid {r['launch__grid_size']}")
PY
  done
fi

if has detail && (($# > 0)); then
  step "ncu stall detail of the fused encode kernel"
  timeout 240 ncu --profile-from-start off -k regex:bitpack_encode --import-source no \
    --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis \
    --section InstructionStats --metrics "regex:sm__inst_executed_pipe_.*\.avg\.pct_of_peak_sustained_active$" \
    python3 bench/gpu_profile.py "$1" 256 bitpack > "$OUT/ncu_detail.txt" 2>&1
  grep -v "^    ---\|^==PROF==" "$OUT/ncu_detail.txt" | head -n 150
fi

if has sass && (($# > 0)); then
  step "ncu per-SASS-instruction counts of the fused encode kernel"
  timeout 240 ncu --profile-from-start off -k regex:bitpack_encode --import-source no --section SourceCounters \
    --section InstructionStats -o "$OUT/encode" python3 bench/gpu_profile.py "$1" 256 bitpack > "$OUT/sass.err" 2>&1
  ncu -i "$OUT/encode.ncu-rep" --page source --csv --print-source sass > "$OUT/sass.csv" 2>> "$OUT/sass.err"
  tail -n 3 "$OUT/sass.err"; head -c 600 "$OUT/sass.csv"; echo; wc -l "$OUT/sass.csv"
fi

if has sanitize; then
  step "compute-sanitizer memcheck and racecheck over tests/test_cuda.py"
  for tool in memcheck racecheck; do
    timeout 200 compute-sanitizer --tool $tool --error-exitcode 3 --print-limit 20 \
      python3 -m pytest tests/test_cuda.py -q -p no:cacheprovider -x -k "$SANITIZE_TESTS" \
      > "$OUT/sanitize_$tool.log" 2>&1
    echo "$tool: exit $?"; grep -E "ERROR SUMMARY|passed|failed|Invalid|Race" "$OUT/sanitize_$tool.log" | head -n 8
  done
fi

if has suite; then
  step "rest of the suite (xdist)"
  timeout 240 python3 -m pytest -q -p no:cacheprovider -p no:benchmark -n 16 --ignore=tests/test_cuda.py \
    2>&1 | tee "$OUT/suite.log" | tail -n 30
fi
step done
