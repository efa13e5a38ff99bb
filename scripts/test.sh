#!/usr/bin/env bash
# What CI runs: the format check, a clang build that checks the lock annotations, a short run of
# every fuzz target, and the whole test suite under AddressSanitizer + UBSan; warnings are errors
# in every build.
# Usage: scripts/test.sh [ctest arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --deps-only
jobs=$(nproc)

# 1. Every tracked C++/CUDA file as .clang-format writes it.
scripts/format.sh --check

# 2. Clang, compile only: -Wthread-safety (added by CMakeLists.txt for Clang) checks ABSL_GUARDED_BY
#    and the other lock annotations, which GCC ignores. The `swarm` target compiles every module
#    (tests and benchmarks hold no lock annotations); Debug (-O0) compiles fastest; no CUDA, whose
#    nvcc drives GCC.
cmake -S . -B build-clang -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSWARM_CUDA=OFF -DSWARM_WERROR=ON \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
cmake --build build-clang -j "$jobs" --target swarm

# 3. The libFuzzer targets (clang, ASan + UBSan, build-fuzz/), each for 15 s on its committed
#    corpus (scripts/fuzz.sh, docs/FUZZING.md). A build of its own: instrumenting every module to
#    share step 2's build would cost more than the few modules the fuzz targets compile.
scripts/fuzz.sh 15

# 4. GCC with AddressSanitizer + UBSan: build everything (the layering check runs first, as in
#    every build) and run every test.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSWARM_SANITIZE=ON \
  -DSWARM_WERROR=ON
cmake --build build-asan -j "$jobs"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir build-asan --output-on-failure -j "$jobs" "$@"
