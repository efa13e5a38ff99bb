#!/usr/bin/env bash
# What CI runs: the format check, a clang build that checks the lock annotations and fuzzes every
# parser briefly, and the whole test suite under AddressSanitizer + UBSan; warnings are errors in
# both builds.
# Usage: scripts/test.sh [ctest arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --deps-only
jobs=$(nproc)

# 1. Every tracked C++/CUDA file as .clang-format writes it.
scripts/format.sh --check

# 2. Clang: -Wthread-safety (added by CMakeLists.txt for Clang) checks ABSL_GUARDED_BY and the
#    other lock annotations, which GCC ignores, over the `swarm` target (every module; tests and
#    benchmarks hold no lock annotations). It compiles in the fuzz build's configuration (ASan +
#    UBSan + coverage, -O1, no CUDA), which also builds the libFuzzer targets; each then runs for
#    15 s on its committed corpus (scripts/fuzz.sh, docs/FUZZING.md).
FUZZ_BUILD_TARGETS=swarm scripts/fuzz.sh 15

# 3. GCC with AddressSanitizer + UBSan: build everything (the layering check runs first, as in
#    every build) and run every test.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSWARM_SANITIZE=ON \
  -DSWARM_WERROR=ON
cmake --build build-asan -j "$jobs"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir build-asan --output-on-failure -j "$jobs" "$@"
