#!/usr/bin/env bash
# The native core under AddressSanitizer and UndefinedBehaviorSanitizer, and its threads under
# ThreadSanitizer. A hostile blob that makes a decoder read a few bytes past a buffer, or shift by
# 32, usually does not crash: the plain test run cannot see it, a sanitized one fails on it.
#  1. tools/tsan_driver.cpp runs every multithreaded path on 2 threads under TSan.
#  2. ebgc._core is built with ASan + UBSan into build/sanitize (CMake directly; the installed ebgc
#     is left alone), and the test modules that drive the core run against it: once with the AVX2
#     loops, once on the portable paths; the grid modules run the device codec's per-lane bodies
#     (the host runners) under the sanitizers too. Extra arguments go to pytest.
#
#   pip install ".[test]" pybind11 cmake && bash tools/sanitize.sh
#
# Needs a GCC or Clang that ships the sanitizer runtimes (libasan, libubsan, libtsan). CUDA is not
# built.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
cxx=${CXX:-g++}
build=build/sanitize
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"

asan=$("$cxx" -print-file-name=libasan.so)
ubsan=$("$cxx" -print-file-name=libubsan.so)
tsan=$("$cxx" -print-file-name=libtsan.so)
for lib in "$asan" "$ubsan" "$tsan"; do
  [ -e "$lib" ] || { echo "sanitize.sh: $cxx has no $lib runtime" >&2; exit 2; }
done

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEBGC_CUDA=OFF \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_CXX_FLAGS="$flags" \
  -DCMAKE_MODULE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DPython_EXECUTABLE="$(command -v "$python")" -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" >/dev/null
cmake --build "$build" --target _core -j "$(nproc)"

# Threads: a C++ driver (Python cannot run under TSan unless it was built for it).
"$cxx" -std=c++17 -O1 -g -fsanitize=thread -Icsrc/include tools/tsan_driver.cpp -o "$build/tsan_driver" -pthread
TSAN_OPTIONS=halt_on_error=1 "$build/tsan_driver"

# The pure-Python package beside the sanitized module, first on the path.
pkg=$build/pkg
rm -rf "$pkg"
mkdir -p "$pkg"
cp -r python/ebgc "$pkg/"
rm -f "$pkg"/ebgc/_core*.so
cp "$build"/_core*.so "$pkg/ebgc/"

# Python is not built with the sanitizers, so their runtimes must be loaded first. Leaks are not
# checked: the interpreter keeps its own allocations to the end on purpose.
export LD_PRELOAD="$asan $ubsan"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export PYTHONMALLOC=malloc  # every bytes object its own allocation, with red zones around it
export PYTHONPATH="$PWD/$pkg${PYTHONPATH:+:$PYTHONPATH}"
# An editable install reaches ebgc through its own import finder, ahead of PYTHONPATH: drop it.
exec "$python" - "$PWD/$pkg" "$@" <<'PY'
import sys

sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("_editable_skbc_")]
import ebgc._core

pkg, args = sys.argv[1], sys.argv[2:]
if not ebgc._core.__file__.startswith(pkg):
    sys.exit(f"sanitize.sh: imported {ebgc._core.__file__}, not the sanitized build")
import pytest

def run(modules):
    return pytest.main(["-p", "no:cacheprovider", "-q", "--capture=sys"] + [f"tests/test_{m}.py" for m in modules] + args)


# All modules with the AVX2 paths the CPU has, then the decoders again on their portable paths:
# the sanitizer sees scalar loads but not the AVX2 loops' gathers, and both are bounded by the
# same checks.
# (tests/test_fuzz.py runs its inputs in children with an address-space cap, which ASan's shadow
# memory cannot live under: the hostile and decode-guard modules drive the same parsers here.)
status = run(["hostile", "decode_guard", "stages", "fixtures", "args", "bound", "roundtrip", "lowrank", "stream",
              "budget", "narrow", "oracle", "byte_identity", "grid", "grid_message", "grid_bitpack"])
if status == 0 and ebgc._core._vector_paths(False):
    status = run(["hostile", "decode_guard", "lowrank", "stream"])
sys.exit(status)
PY
