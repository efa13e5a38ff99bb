#!/usr/bin/env bash
# Speculative decoding through a chain of peers behind emulated WAN links, against plain decoding
# in the same run: PEERS `swarm serve` processes splitting the model's blocks evenly, each behind a
# `swarm link-emulator` (every transit pays the one-way latency: client to the first peer, peer to
# peer, last peer back to the client), and `swarm generate --temp 0` through them, plain, with
# `--draft lookup`, with the target as its own draft (acceptance 1: the mechanism's ceiling) and
# with a quantized copy of the target as draft. Prints tokens/s, the ratio to plain, what the
# speculative run reports (acceptance, tokens per traversal, chunks in flight) and whether its text
# equals the plain text (greedy: it must).
#
# Usage: scripts/bench-spec.sh [BUILD_DIR]   (default: build; needs the target swarm)
# Environment: MODEL (default ../shared/models/stories260K.gguf), PEERS (4), LATENCIES ("50 10"),
#   BANDWIDTH (100, Mbit/s), TOKENS (200), PROMPT ("", BOS alone), QTYPE (q8_0: the draft copy),
#   MODES ("plain lookup self quantized"), EXTRA (more flags for every `swarm generate`),
#   QUANTIZED (a ready draft file for the quantized mode instead of MODEL quantized to QTYPE:
#   `swarm quantize` needs F32/F16 matrices; for a synthetic model, `swarm make-model` with the
#   same shape and seed and another --type is the same weights quantized).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${1:-build}"
swarm="${build_dir}/src/cli/swarm"
model="${MODEL:-${repo_root}/../shared/models/stories260K.gguf}"
n_peers="${PEERS:-4}"
tokens="${TOKENS:-200}"
bandwidth="${BANDWIDTH:-100}"
qtype="${QTYPE:-q8_0}"
read -r -a latencies <<< "${LATENCIES:-50 10}"
read -r -a modes <<< "${MODES:-plain lookup self quantized}"
read -r -a extra <<< "${EXTRA:-}"

[[ -x "$swarm" ]] || { echo "bench-spec: $swarm is missing; build it: cmake --build ${build_dir} --target swarm" >&2; exit 1; }
[[ -f "$model" ]] || { echo "bench-spec: no model at $model (set MODEL)" >&2; exit 1; }

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The first line of FILE once it is there (a process's ready or listening line), within 60 s.
first_line() {
  local file="$1"
  for _ in $(seq 600); do
    if [[ -s "$file" ]] && head -n1 "$file" | grep -q .; then head -n1 "$file"; return 0; fi
    sleep 0.1
  done
  echo "bench-spec: nothing printed to $file in 60 s" >&2
  return 1
}

n_layer="$("$swarm" inspect "$model" 2>/dev/null | awk '$1 == "blocks" { print $2; exit }' || true)"
[[ -n "$n_layer" ]] || { echo "bench-spec: cannot read the block count of $model" >&2; exit 1; }
(( n_peers >= 1 && n_peers <= n_layer )) || { echo "bench-spec: PEERS must be in 1..$n_layer" >&2; exit 2; }

quantized="${QUANTIZED:-${work}/draft-${qtype}.gguf}"
if [[ -z "${QUANTIZED:-}" && " ${modes[*]} " == *" quantized "* ]]; then
  "$swarm" quantize -q "$model" "$quantized" "$qtype" >/dev/null
fi

# The peers, once for every latency (the emulators change, the peers stay).
max_length=$((tokens + 64))
peer_addresses=()
for ((i = 0; i < n_peers; i++)); do
  first=$((i * n_layer / n_peers)); last=$(((i + 1) * n_layer / n_peers))
  "$swarm" serve -m "$model" --blocks "${first}:${last}" --listen tcp://127.0.0.1:0 --no-dht \
    --max-length "$max_length" > "${work}/peer${i}.out" 2> "${work}/peer${i}.log" &
  pids+=($!)
done
for ((i = 0; i < n_peers; i++)); do
  line="$(first_line "${work}/peer${i}.out")"
  peer_addresses+=("$(awk '{print $3}' <<< "$line")")
done

echo "bench-spec: $(basename "$model"), ${n_peers} peers, ${bandwidth} Mbit/s links, ${tokens} tokens, greedy" >&2
printf '%-8s %-10s %10s %8s %-60s %s\n' "latency" "mode" "tokens/s" "ratio" "speculative" "text"
for latency in "${latencies[@]}"; do
  link_pids=()
  endpoints=()
  for ((i = 0; i < n_peers; i++)); do
    "$swarm" link-emulator --target "${peer_addresses[$i]}" --latency-ms "$latency" \
      --bandwidth-mbit "$bandwidth" > "${work}/link${i}.out" 2> "${work}/link${i}.log" &
    link_pids+=($!)
    pids+=($!)
  done
  for ((i = 0; i < n_peers; i++)); do
    endpoints+=("$(awk '{print $1}' <<< "$(first_line "${work}/link${i}.out")")")
  done
  chain="$(IFS=,; echo "${endpoints[*]}")"
  plain_rate=""
  for mode in "${modes[@]}"; do
    flags=()
    case "$mode" in
      plain) ;;
      lookup) flags=(--draft lookup) ;;
      self) flags=(--draft-model "$model") ;;
      quantized) flags=(--draft-model "$quantized") ;;
      *) echo "bench-spec: unknown mode $mode" >&2; exit 2 ;;
    esac
    out="${work}/${latency}-${mode}.txt"
    err="${work}/${latency}-${mode}.err"
    if ! "$swarm" generate -m "$model" --peers "$chain" -p "${PROMPT:-}" -n "$tokens" --temp 0 \
        "${flags[@]}" "${extra[@]}" > "$out" 2> "$err"; then
      printf '%-8s %-10s %10s %8s %-60s %s\n' "${latency}ms" "$mode" "failed" "-" \
        "$(tail -n1 "$err" | cut -c1-60)" "-"
      continue
    fi
    rate="$(grep -oE 'generation: [0-9]+ tokens, [0-9.]+ tokens/s' "$err" | grep -oE '[0-9.]+ tokens/s' | grep -oE '^[0-9.]+' || echo 0)"
    [[ "$mode" == plain ]] && plain_rate="$rate"
    ratio="-"
    [[ -n "$plain_rate" ]] && ratio="$(awk -v a="$rate" -v b="$plain_rate" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')"
    spec="$(grep -m1 '^speculative:' "$err" | sed 's/^speculative: //' || true)"
    same="-"
    if [[ "$mode" != plain && -f "${work}/${latency}-plain.txt" ]]; then
      if cmp -s "$out" "${work}/${latency}-plain.txt"; then same="identical"; else same="DIFFERS"; fi
    fi
    printf '%-8s %-10s %10s %8s %-60s %s\n' "${latency}ms" "$mode" "$rate" "$ratio" "${spec:--}" "$same"
  done
  for pid in "${link_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
done
