#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang with ASan + UBSan, in build-fuzz/) and runs each for
# SECONDS (default 60) on its corpus: the committed seeds (fuzz/corpus/TARGET, read only) plus
# what the fuzzer finds (build-fuzz/fuzz-corpus/TARGET). Prints the executions per target and in
# all; exits non-zero on the first crash, leaving the input in build-fuzz/fuzz-artifacts/.
# Usage: scripts/fuzz.sh [--no-build] [SECONDS]
# Environment: FUZZ_TARGETS="fuzz_gguf fuzz_tokenizer" runs only those.
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
if [[ "${1:-}" == "--no-build" ]]; then
  build=0
  shift
fi
seconds="${1:-60}"
dir=build-fuzz
all_targets=(fuzz_wire_message fuzz_activations fuzz_gguf fuzz_tokenizer fuzz_peer_record
  fuzz_openai_request fuzz_chat_template fuzz_http_request fuzz_manifest)
read -r -a targets <<<"${FUZZ_TARGETS:-${all_targets[*]}}"

if ((build)); then
  launcher=()
  if command -v ccache >/dev/null; then
    launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  fi
  # -O1: fast enough to fuzz, quick to compile; Debug keeps assertions on.
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSWARM_CUDA=OFF -DSWARM_WERROR=ON \
    -DSWARM_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_C_FLAGS_DEBUG="-O1 -gline-tables-only" -DCMAKE_CXX_FLAGS_DEBUG="-O1 -gline-tables-only" \
    "${launcher[@]}" >/dev/null
  cmake --build "$dir" -j "$(nproc)" --target swarm_fuzzers
fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
mkdir -p "$dir/fuzz-artifacts" "$dir/fuzz-logs"
total=0
status=0
printf '%-22s %14s %10s\n' target executions exec/s
for t in "${targets[@]}"; do
  work="$dir/fuzz-corpus/$t"
  mkdir -p "$work"
  args=(-max_total_time="$seconds" -timeout=25 -rss_limit_mb=2560 -print_final_stats=1
    -artifact_prefix="$dir/fuzz-artifacts/$t-")
  [[ -f "fuzz/dict/$t.dict" ]] && args+=(-dict="fuzz/dict/$t.dict")
  log="$dir/fuzz-logs/$t.log"
  rc=0
  "$dir/fuzz/$t" "${args[@]}" "$work" "fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  printf '%-22s %14s %10s\n' "$t" "${execs:-?}" "${rate:-?}"
  total=$((total + ${execs:-0}))
  if ((rc != 0)); then
    echo "fuzz: $t failed (exit $rc); its log: $log" >&2
    grep -E '^(==[0-9]+==ERROR|SUMMARY|artifact_prefix|Test unit written|fuzz property)' "$log" >&2 || tail -20 "$log" >&2
    status=1
    break
  fi
done
printf '%-22s %14s\n' total "$total"
exit "$status"
