#!/usr/bin/env bash
# Benchmark of chains of peers on this machine: a TinyLlama-1.1B-shaped synthetic model (Q8_0
# matrices, seeded random weights, the Llama-2 SPM vocabulary) through the in-process engine,
# through 2 and 4 `swarm serve` processes on loopback, and through the same peers behind emulated
# WAN links (10 ms and 50 ms one-way, 100 Mbit/s, on every transit). Prints JSON lines (see
# bench/chain_bench.cpp) and a summary table; the lines are also kept in BUILD_DIR/bench-results/.
#
# Usage: scripts/bench-chain.sh [BUILD_DIR]   (default: build; needs targets swarm, chain_bench,
#        codec_chain_bench). Environment: TOKENS (default 32), THREADS (0 = physical cores),
#        TYPE (q8_0), PEERS (2,4), LATENCIES (0,10,50), CODEC (f32), ROUNDS (6),
#        CODEC_TOKENS (50), PIN (1: pin every process's compute threads one per CPU; see
#        bench/chain_bench.cpp), AUTOGROUP_NICE (unset).
#
# On a shared machine whose kernel groups processes by session (sched_autogroup), `nice` does not
# order processes of different sessions: a niced compiler in another session still takes its
# session's full share, and a peer that wakes for its step waits behind it. AUTOGROUP_NICE=-10 runs
# the benchmark in a session of its own at that autogroup nice (negative values need root).
set -euo pipefail

if [[ -n "${AUTOGROUP_NICE:-}" && -z "${SWARM_BENCH_SESSION:-}" ]]; then
  exec setsid -w env SWARM_BENCH_SESSION=1 bash -c \
    'echo "$AUTOGROUP_NICE" > /proc/self/autogroup && exec bash "$0" "$@"' "$0" "$@"
fi

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${1:-build}"
swarm="${build_dir}/src/cli/swarm"
chain_bench="${build_dir}/bench/chain_bench"
codec_bench="${build_dir}/bench/codec_chain_bench"
type="${TYPE:-q8_0}"
models_dir="${repo_root}/models"              # git-ignored
results_dir="${build_dir}/bench-results"         # inside the (git-ignored) build folder
model="${models_dir}/tinyllama-1.1b-${type}.gguf"
vocab="${repo_root}/../shared/tokenizer-vectors/ggml-vocab-llama-spm.gguf"

for binary in "$swarm" "$chain_bench" "$codec_bench"; do
  [[ -x "$binary" ]] || {
    echo "bench-chain: $binary is missing; build it: cmake --build ${build_dir} --target swarm chain_bench codec_chain_bench" >&2
    exit 1
  }
done
mkdir -p "$models_dir" "$results_dir"
if [[ ! -f "$model" ]]; then
  vocab_flag=()
  [[ -f "$vocab" ]] && vocab_flag=(--vocab "$vocab")
  "$swarm" make-model --preset tinyllama-1.1b --type "$type" --seed 1 "${vocab_flag[@]}" -o "$model"
fi

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="${results_dir}/chain-${stamp}.jsonl"
{
  echo "{\"bench\":\"chain\",\"setup\":\"machine\",\"nproc\":$(nproc),\"cpu\":\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')\",\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"autogroup\":\"$(cat /proc/self/autogroup 2>/dev/null || echo none)\",\"commit\":\"$(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo unknown)\"}"
  "$chain_bench" --swarm "$swarm" -m "$model" --peers "${PEERS:-2,4}" \
    --latency-ms "${LATENCIES:-0,10,50}" --bandwidth-mbit 100 -n "${TOKENS:-32}" --warmup 4 \
    --codec "${CODEC:-f32}" -t "${THREADS:-0}" --rounds "${ROUNDS:-6}" --pin-threads "${PIN:-1}"
  # Codecs through a 3-hop chain: stories260K (a trained model, 200 greedy steps) and the
  # TinyLlama-shaped model (its width; random weights, so its agreement means little).
  "$codec_bench"
  "$codec_bench" -m "$model" --split 0:8,8:15,15:22 -n "${CODEC_TOKENS:-50}" \
    --codecs f32,f16,bf16,int8,int8h,f16+zstd,bf16+zstd,int8+zstd
  echo "{\"bench\":\"chain\",\"setup\":\"machine-end\",\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
} | tee "$out"
echo "bench-chain: results in ${out}" >&2
