#!/usr/bin/env bash
# Chaos run of a DHT swarm on this machine (loopback): starts `swarm serve` peers over overlapping
# spans of the model's blocks (the first peer is the DHT bootstrap node the others and the clients
# join through), runs several `swarm generate` clients over the DHT in parallel (different
# prompts, greedy) for SECONDS, and meanwhile kills (SIGKILL), freezes (SIGSTOP, SIGCONT after a
# while) and restarts peers at random, the bootstrap node included. Every generation's text is
# compared with the in-process text of the same prompt and settings (`swarm generate` without
# peers). Prints a summary and writes it to OUT/summary.txt.
#
# Usage: scripts/chaos.sh [SECONDS] [options]        (SECONDS: default 180)
#   -m MODEL          model GGUF (default ../shared/models/stories260K.gguf, else models/)
#   -b BUILD_DIR      where src/cli/swarm is (default build)
#   --seed N          seed of the fault schedule (default 1): same seed, same faults
#   --spans LIST      one peer per span, comma-separated A:B (default 0:3,2:5,0:2,1:4,3:5);
#                     the first peer is the bootstrap node
#   --clients N       parallel clients (default 3)
#   -n TOKENS         tokens per generation (default 48)
#   --interval A:B    seconds between faults, uniform in [A, B] (default 2:6)
#   --down A:B        seconds a killed peer stays down / a frozen one frozen (default 1:10)
#   --max-down N      peers down or frozen at once, at most (default 2)
#   --out DIR         logs and results (default BUILD_DIR/chaos; emptied first)
# Exit code: 0 when every generation's text equals the in-process text (failed generations are
# reported but do not count), 1 when any differs, 2 on bad usage or a swarm that did not start.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

seconds=180
model=""
build_dir=build
seed=1
spans="0:3,2:5,0:2,1:4,3:5"
n_clients=3
n_predict=48
interval="2:6"
down="1:10"
max_down=2
out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    -m) model="$2"; shift 2 ;;
    -b) build_dir="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --spans) spans="$2"; shift 2 ;;
    --clients) n_clients="$2"; shift 2 ;;
    -n) n_predict="$2"; shift 2 ;;
    --interval) interval="$2"; shift 2 ;;
    --down) down="$2"; shift 2 ;;
    --max-down) max_down="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    [0-9]*) seconds="$1"; shift ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done
for v in seconds seed n_clients n_predict max_down; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "$v must be a non-negative integer" >&2; exit 2; }
done
[[ "$interval" =~ ^[0-9]+:[0-9]+$ && "$down" =~ ^[0-9]+:[0-9]+$ ]] ||
  { echo "--interval and --down take A:B (whole seconds)" >&2; exit 2; }
if [[ -z "$model" ]]; then
  for m in ../shared/models/stories260K.gguf models/stories260K.gguf; do
    [[ -f "$m" ]] && { model="$m"; break; }
  done
fi
[[ -n "$model" && -f "$model" ]] || { echo "model not found: pass -m (scripts/fetch-model.sh fetches stories260K)" >&2; exit 2; }
swarm="$build_dir/src/cli/swarm"
[[ -x "$swarm" ]] || { echo "$swarm not found: build first (cmake --build $build_dir --target swarm)" >&2; exit 2; }
out="${out:-$build_dir/chaos}"
rm -rf "$out"
mkdir -p "$out"
IFS=',' read -r -a span_list <<< "$spans"
n_peers=${#span_list[@]}
(( n_peers >= 2 )) || { echo "--spans needs at least two peers" >&2; exit 2; }

prompts=("Once upon a time" "Lily and Tom went to the park" "The cat sat on the mat"
         "One day, a little bird" "There was a big red ball" "")

now_ms() { local t=${EPOCHREALTIME/./}; echo $(( t / 1000 )); }
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$out/events.log" >&2; }

# The fault schedule's random numbers: a 64-bit LCG (Knuth's MMIX constants) seeded by --seed,
# so that a seed gives the same schedule on every machine and bash version.
rng=$(( seed * 2654435761 + 1 ))
rand_between() {  # A B -> uniform integer in [A, B], in $REPLY
  rng=$(( rng * 6364136223846793005 + 1442695040888963407 ))
  REPLY=$(( $1 + ((rng >> 33) & 0x7fffffff) % ($2 - $1 + 1) ))
}

# ---- reference texts: every block in-process, same prompt and settings ----
for k in "${!prompts[@]}"; do
  "$swarm" generate -m "$model" -p "${prompts[$k]}" -n "$n_predict" --temp 0 -t 1 \
    > "$out/ref-$k.txt" 2> "$out/ref-$k.log" ||
    { echo "the in-process generation failed:" >&2; cat "$out/ref-$k.log" >&2; exit 2; }
done

# ---- peers ----
# state: up | starting | frozen | down; due: when a frozen peer is resumed / a down one restarted.
declare -a pid state due dht_port launches
bootstrap=""  # 127.0.0.1:PORT of peer 0's DHT node
throughput_cache="$out/throughput"
launch_peer() {  # I
  local i=$1 args
  args=(serve -m "$model" --blocks "${span_list[$i]}" --listen tcp://127.0.0.1:0
        --dht-bind 127.0.0.1 --dht-port "${dht_port[$i]:-0}" -t 1
        --throughput-cache "$throughput_cache")
  # Every peer but the first joins through the bootstrap node, as `swarm serve` is documented.
  (( i > 0 )) && args+=(--initial-peers "$bootstrap")
  launches[$i]=$(( ${launches[$i]:-0} + 1 ))
  "$swarm" "${args[@]}" > "$out/peer-$i.ready" 2>> "$out/peer-$i.log" < /dev/null &
  pid[$i]=$!
  state[$i]=starting
  due[$i]=$(( $(now_ms) + 60000 ))  # a start that takes longer counts as failed
}
# Reads the ready line of a starting peer; 0 when it serves.
check_ready() {  # I
  local i=$1 line
  line=$(head -n 1 "$out/peer-$i.ready" 2>/dev/null || true)
  [[ "$line" == "listening on "* ]] || return 1
  [[ "$line" =~ \ dht\ ([0-9]+) ]] && dht_port[$i]=${BASH_REMATCH[1]}
  state[$i]=up
  return 0
}

start_swarm() {
  launch_peer 0
  for _ in $(seq 600); do check_ready 0 && break; sleep 0.1; done
  [[ "${state[0]}" == up ]] || { echo "the bootstrap peer did not start:" >&2; tail "$out/peer-0.log" >&2; return 1; }
  bootstrap="127.0.0.1:${dht_port[0]}"
  for (( i = 1; i < n_peers; ++i )); do launch_peer "$i"; done
  for (( i = 1; i < n_peers; ++i )); do
    for _ in $(seq 600); do check_ready "$i" && break; sleep 0.1; done
    [[ "${state[$i]}" == up ]] || { echo "peer $i did not start:" >&2; tail "$out/peer-$i.log" >&2; return 1; }
  done
}

cleanup() {
  for (( i = 0; i < n_peers; ++i )); do
    [[ -n "${pid[$i]:-}" ]] || continue
    kill -CONT "${pid[$i]}" 2>/dev/null || true
    kill -KILL "${pid[$i]}" 2>/dev/null || true
  done
  for c in "${client_pids[@]:-}"; do [[ -n "$c" ]] && kill -TERM "$c" 2>/dev/null || true; done
}
client_pids=()
trap cleanup EXIT

if ! start_swarm; then exit 2; fi
log "swarm up: $n_peers peers (spans $spans), bootstrap DHT node $bootstrap (peer 0)"

# ---- clients ----
# One line per generation in results.tsv:
#   client iteration prompt rc seconds failovers verdict changed_tokens
tokens_of() { "$swarm" tokenize -m "$model" < "$1"; }
compare() {  # REF OUT RC -> "verdict changed"
  local ref=$1 got=$2 rc=$3 text
  if [[ $rc == 0 ]]; then
    if cmp -s "$ref" "$got"; then echo "ok 0"; return; fi
  else
    # A failed generation streamed a prefix of its text (then a newline): it must be the
    # reference's prefix.
    text=$(cat "$got"); text=${text%$'\n'}
    if [[ "$(cat "$ref")" == "$text"* ]]; then echo "failed 0"; return; fi
  fi
  # Tokens from the first difference on, the texts re-tokenized.
  local -a a b
  read -r -a a <<< "$(tokens_of "$ref")"
  read -r -a b <<< "$(tokens_of "$got")"
  local p=0
  while (( p < ${#a[@]} && p < ${#b[@]} )) && [[ "${a[$p]}" == "${b[$p]}" ]]; do p=$(( p + 1 )); done
  local n=${#a[@]}
  if [[ $rc != 0 ]]; then n=${#b[@]}; elif (( ${#b[@]} > n )); then n=${#b[@]}; fi
  if [[ $rc == 0 ]]; then echo "differs $(( n - p ))"; else echo "failed-differs $(( n - p ))"; fi
}
run_client() {  # C END_MS
  local c=$1 end=$2 j=0 k base t0 t1 rc failovers verdict gen=""
  # The generation runs in the background so that a SIGTERM (cleanup) reaches this loop at once.
  trap '[[ -n "$gen" ]] && kill -TERM "$gen" 2>/dev/null; exit 143' TERM
  while (( $(now_ms) < end )); do
    k=$(( (c + j) % ${#prompts[@]} ))
    base="$out/client-$c-$j"
    t0=$(now_ms)
    rc=0
    "$swarm" generate -m "$model" --initial-peers "$bootstrap" --dht-bind 127.0.0.1 \
      -p "${prompts[$k]}" -n "$n_predict" --temp 0 -t 1 > "$base.out" 2> "$base.log" < /dev/null &
    gen=$!
    wait "$gen" || rc=$?
    t1=$(now_ms)
    failovers=$(sed -n 's/^failovers: \([0-9]*\),.*/\1/p' "$base.log" | tail -n 1)
    verdict=$(compare "$out/ref-$k.txt" "$base.out" "$rc")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$j" "$k" "$rc" \
      "$(( (t1 - t0) / 1000 )).$(printf '%03d' $(( (t1 - t0) % 1000 )))" "${failovers:-0}" \
      "${verdict// /$'\t'}" >> "$out/results.tsv"
    [[ "$verdict" == "ok 0" ]] && rm -f "$base.out"
    j=$(( j + 1 ))
  done
}

start_ms=$(now_ms)
end_ms=$(( start_ms + seconds * 1000 ))
: > "$out/results.tsv"
for (( c = 0; c < n_clients; ++c )); do
  run_client "$c" "$end_ms" &
  client_pids+=($!)
done

# ---- faults ----
declare -A faults=([kill]=0 [freeze]=0 [kill-bootstrap]=0 [freeze-bootstrap]=0)
restarts=0
restart_failures=0
IFS=: read -r int_lo int_hi <<< "$interval"
IFS=: read -r down_lo down_hi <<< "$down"
next_fault=$(( start_ms + 1000 * int_lo ))
not_up() { local n=0; for (( i = 0; i < n_peers; ++i )); do [[ "${state[$i]}" == up ]] || n=$(( n + 1 )); done; echo $n; }
while (( $(now_ms) < end_ms )); do
  now=$(now_ms)
  for (( i = 0; i < n_peers; ++i )); do
    case "${state[$i]}" in
      starting)
        if check_ready "$i"; then
          log "peer $i serves again ($(head -n 1 "$out/peer-$i.ready"))"
        elif ! kill -0 "${pid[$i]}" 2>/dev/null || (( now >= due[i] )); then
          kill -KILL "${pid[$i]}" 2>/dev/null || true
          wait "${pid[$i]}" 2>/dev/null || true
          restart_failures=$(( restart_failures + 1 ))
          log "peer $i failed to restart: $(tail -n 1 "$out/peer-$i.log")"
          state[$i]=down; due[$i]=$(( now + 2000 ))
        fi ;;
      frozen)
        if (( now >= due[i] )); then
          kill -CONT "${pid[$i]}" 2>/dev/null || true
          state[$i]=up
          log "peer $i resumed (SIGCONT)"
        fi ;;
      down)
        if (( now >= due[i] )); then
          launch_peer "$i"
          restarts=$(( restarts + 1 ))
          log "peer $i restarted (launch ${launches[$i]})"
        fi ;;
    esac
  done
  if (( now >= next_fault )); then
    rand_between "$int_lo" "$int_hi"; next_fault=$(( now + 1000 * REPLY ))
    rand_between 0 1; kind=$([[ $REPLY == 0 ]] && echo kill || echo freeze)
    rand_between 0 $(( n_peers - 1 )); victim=$REPLY
    rand_between "$down_lo" "$down_hi"; hold=$REPLY
    # The schedule draws the same numbers whatever happens; a fault that would take more than
    # --max-down peers out, or hit a peer already out, is skipped.
    if [[ "${state[$victim]}" == up ]] && (( $(not_up) < max_down )); then
      tag=$kind; (( victim == 0 )) && tag="$kind-bootstrap"
      faults[$tag]=$(( ${faults[$tag]} + 1 ))
      if [[ $kind == kill ]]; then
        kill -KILL "${pid[$victim]}" 2>/dev/null || true
        wait "${pid[$victim]}" 2>/dev/null || true
        state[$victim]=down
      else
        kill -STOP "${pid[$victim]}" 2>/dev/null || true
        state[$victim]=frozen
      fi
      due[$victim]=$(( now + 1000 * hold ))
      log "$kind peer $victim (blocks ${span_list[$victim]}$( ((victim == 0)) && echo ', bootstrap')) for ${hold} s"
    fi
  fi
  sleep 0.2
done

# ---- wind down: heal the swarm so that generations in flight can finish ----
log "time is up: resuming frozen peers, restarting killed ones, waiting for the clients"
for (( i = 0; i < n_peers; ++i )); do
  case "${state[$i]}" in
    frozen) kill -CONT "${pid[$i]}" 2>/dev/null || true; state[$i]=up ;;
    down) launch_peer "$i"; restarts=$(( restarts + 1 )) ;;
  esac
done
for c in "${client_pids[@]}"; do wait "$c" || true; done
client_pids=()
elapsed=$(( ($(now_ms) - start_ms) / 1000 ))

# ---- summary ----
results="$out/results.tsv"
total=$(wc -l < "$results")
count() { awk -F'\t' "$1" "$results" | wc -l; }
ok=$(count '$7 == "ok"')
failed=$(count '$4 != 0')
differs=$(count '$7 == "differs" || $7 == "failed-differs"')
changed=$(awk -F'\t' '{ s += $8 } END { print s + 0 }' "$results")
failovers=$(awk -F'\t' '{ s += $6 } END { print s + 0 }' "$results")
with_failover=$(count '$6 > 0')
mean_s=$(awk -F'\t' '$4 == 0 { s += $5; n++ } END { if (n) printf "%.2f", s / n; else print "-" }' "$results")
{
  echo "chaos run: $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "command: scripts/chaos.sh $seconds --seed $seed --spans $spans --clients $n_clients -n $n_predict --interval $interval --down $down --max-down $max_down"
  echo "model: $(basename "$model"); peers: $n_peers (spans $spans, peer 0 the DHT bootstrap node); clients: $n_clients"
  echo "duration: ${elapsed} s (faults for ${seconds} s)"
  echo "generations: $total (complete and equal: $ok; failed: $failed; text differs: $differs); mean time of a complete one: ${mean_s} s"
  echo "faults injected: kill ${faults[kill]} + ${faults[kill-bootstrap]} of the bootstrap node, freeze ${faults[freeze]} + ${faults[freeze-bootstrap]} of the bootstrap node; restarts $restarts (failed to start: $restart_failures)"
  echo "failovers (clients' stderr): $failovers, in $with_failover generations"
  echo "tokens differing from the in-process text: $changed"
  if (( failed > 0 )); then
    echo "why generations failed (last error line, counted):"
    awk -F'\t' '$4 != 0 { print "'"$out"'/client-" $1 "-" $2 ".log" }' "$results" |
      while read -r f; do grep '^error:' "$f" | tail -n 1 | sed -E 's/[0-9]+/N/g'; done |
      sort | uniq -c | sort -rn | head -n 8
  fi
  echo "logs: $out"
} | tee "$out/summary.txt"
(( differs == 0 )) || exit 1
exit 0
