#!/usr/bin/env bash
# Benchmark of the swarm on this machine (issue 5): recovery time after a killed (SIGKILL) and a
# frozen (SIGSTOP) peer, and the throughput of concurrent clients over 2 replicas vs. 1, with
# `swarm serve` processes on one DHT on loopback and a TinyLlama-1.1B-shaped synthetic model
# (Q8_0 matrices, seeded random weights, the Llama-2 SPM vocabulary). Builds the targets
# (Release), makes the model if missing, runs bench/swarm_bench.cpp, prints JSON lines and a
# summary table; the lines are also kept in BUILD_DIR/bench-results/.
#
# Usage: scripts/bench-swarm.sh [BUILD_DIR]   (default: build-release)
# Environment: TYPE (q8_0), THREADS (1 per peer), BACKEND (cpu), REPS (4), HISTORY (100),
#   CLIENTS (8), WINDOW (20 s), PARTS (recovery,clients), JOBS (2), EXTRA (more swarm_bench flags).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${1:-build-release}"
type="${TYPE:-q8_0}"
models_dir="${repo_root}/models"        # git-ignored
results_dir="${build_dir}/bench-results"   # inside the (git-ignored) build folder
model="${models_dir}/tinyllama-1.1b-${type}.gguf"
vocab="${repo_root}/../shared/tokenizer-vectors/ggml-vocab-llama-spm.gguf"

if [[ ! -f "${build_dir}/CMakeCache.txt" ]]; then
  cmake -S "$repo_root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSWARM_CUDA=OFF
fi
cmake --build "$build_dir" --target swarm swarm_bench -j "${JOBS:-2}"
swarm="${build_dir}/src/cli/swarm"
swarm_bench="${build_dir}/bench/swarm_bench"

mkdir -p "$models_dir" "$results_dir"
if [[ ! -f "$model" ]]; then
  vocab_flag=()
  [[ -f "$vocab" ]] && vocab_flag=(--vocab "$vocab")
  "$swarm" make-model --preset tinyllama-1.1b --type "$type" --seed 1 "${vocab_flag[@]}" -o "$model"
fi

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="${results_dir}/swarm-${stamp}.jsonl"
{
  echo "{\"bench\":\"swarm\",\"setup\":\"machine\",\"nproc\":$(nproc),\"cpu\":\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')\",\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"commit\":\"$(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo unknown)\"}"
  # shellcheck disable=SC2086
  "$swarm_bench" --swarm "$swarm" -m "$model" --spans 0:6,6:11,11:17,17:22 --replicas 2 \
    --history "${HISTORY:-100}" --reps "${REPS:-4}" --signals kill,stop \
    --clients "${CLIENTS:-8}" --window-s "${WINDOW:-20}" -t "${THREADS:-1}" \
    --backend "${BACKEND:-cpu}" --parts "${PARTS:-recovery,clients}" --log-dir "$results_dir" \
    ${EXTRA:-}
  echo "{\"bench\":\"swarm\",\"setup\":\"machine-after\",\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
} | tee "$out"
echo "bench-swarm: results in ${out}" >&2
