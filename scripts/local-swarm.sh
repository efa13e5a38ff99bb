#!/usr/bin/env bash
# Starts a DHT-connected swarm of `swarm serve` peers on this machine (loopback), each span of the
# model's blocks served by R peers, and prints the bootstrap host:port for clients. The peers run
# in the background; their pids and logs live in BUILD_DIR/local-swarm/ (git-ignored).
#
# Usage:
#   scripts/local-swarm.sh -m MODEL.gguf [-n 6] [-r 2] [-b BUILD_DIR] [--blocks-per-peer K]
#                          [-- extra `swarm serve` flags]
#   scripts/local-swarm.sh stop [-b BUILD_DIR]
# Example:
#   scripts/local-swarm.sh -m ../shared/models/stories260K.gguf -n 6 -r 2 -b build
#   build/src/cli/swarm generate -m ../shared/models/stories260K.gguf \
#       --initial-peers 127.0.0.1:PORT --dht-bind 127.0.0.1 -p "" -n 200 --temp 0
#   scripts/local-swarm.sh stop -b build
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

build_dir=build
model=""
n_peers=6
replicas=2
blocks_per_peer=0
action=start
if [[ "${1:-}" == "stop" ]]; then action=stop; shift; fi
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -m) model="$2"; shift 2 ;;
    -n) n_peers="$2"; shift 2 ;;
    -r) replicas="$2"; shift 2 ;;
    -b) build_dir="$2"; shift 2 ;;
    --blocks-per-peer) blocks_per_peer="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done

state_dir="$build_dir/local-swarm"
pid_file="$state_dir/pids"

stop_swarm() {
  [[ -f "$pid_file" ]] || { echo "no local swarm running ($pid_file missing)"; return 0; }
  local pids=()
  while read -r pid; do [[ -n "$pid" ]] && pids+=("$pid"); done < "$pid_file"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # Peers withdraw their records and exit; give them a few seconds, then force.
  for _ in $(seq 50); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -f "$pid_file"
  echo "stopped ${#pids[@]} peers"
}

if [[ "$action" == stop ]]; then stop_swarm; exit 0; fi

[[ -n "$model" ]] || { echo "-m MODEL is required" >&2; usage; }
swarm="$build_dir/src/cli/swarm"
[[ -x "$swarm" ]] || { echo "$swarm not found: build first (cmake --build $build_dir)" >&2; exit 1; }
[[ "$n_peers" =~ ^[1-9][0-9]*$ && "$replicas" =~ ^[1-9][0-9]*$ ]] || { echo "-n and -r must be positive" >&2; exit 2; }
(( n_peers % replicas == 0 )) || { echo "-n ($n_peers) must be a multiple of -r ($replicas)" >&2; exit 2; }
if [[ -f "$pid_file" ]]; then
  echo "a local swarm is already running (see $pid_file); run: $0 stop -b $build_dir" >&2
  exit 1
fi

n_blocks=$("$swarm" inspect "$model" | awk '$1 == "blocks" { print $2; exit }')
[[ "$n_blocks" =~ ^[0-9]+$ ]] || { echo "could not read the block count of $model" >&2; exit 1; }
spans=$(( n_peers / replicas ))
# Span boundaries: K blocks each (the last one takes what is left), or an even split.
bounds=()
for (( s = 0; s < spans; s++ )); do
  if (( blocks_per_peer > 0 )); then
    a=$(( s * blocks_per_peer )); b=$(( a + blocks_per_peer ))
    (( s == spans - 1 )) && b=$n_blocks
  else
    a=$(( s * n_blocks / spans )); b=$(( (s + 1) * n_blocks / spans ))
  fi
  (( b > n_blocks )) && b=$n_blocks
  if (( a >= b )); then
    echo "cannot split $n_blocks blocks into $spans spans" >&2; exit 2
  fi
  bounds+=("$a:$b")
done
if (( blocks_per_peer > 0 )) && (( spans * blocks_per_peer < n_blocks )); then
  echo "note: the last span takes blocks ${bounds[-1]} ($n_blocks blocks in all)" >&2
fi

mkdir -p "$state_dir"
: > "$pid_file"
bootstrap=""
i=0
for span in "${bounds[@]}"; do
  for (( r = 0; r < replicas; r++ )); do
    log="$state_dir/peer-$i.log"
    out="$state_dir/peer-$i.out"
    args=(serve -m "$model" --blocks "$span" --listen tcp://127.0.0.1:0 --dht-bind 127.0.0.1)
    [[ -n "$bootstrap" ]] && args+=(--initial-peers "$bootstrap")
    nohup "$swarm" "${args[@]}" "${extra[@]}" > "$out" 2> "$log" < /dev/null &
    echo $! >> "$pid_file"
    # The first stdout line: "listening on ADDR blocks A:B peer ID dht PORT".
    line=""
    for _ in $(seq 600); do
      line=$(head -n 1 "$out" 2>/dev/null || true)
      [[ "$line" == listening* ]] && break
      if ! kill -0 "$!" 2>/dev/null; then break; fi
      sleep 0.1
    done
    if [[ "$line" != listening* ]]; then
      echo "peer $i (blocks $span) did not start; its log ($log):" >&2
      tail -n 20 "$log" >&2 || true
      stop_swarm >&2
      exit 1
    fi
    echo "peer $i: $line"
    if [[ -z "$bootstrap" ]]; then
      bootstrap="127.0.0.1:$(awk '{ for (k = 1; k < NF; k++) if ($k == "dht") print $(k + 1) }' <<< "$line")"
    fi
    i=$(( i + 1 ))
  done
done
echo "bootstrap $bootstrap"
echo "pids in $pid_file; stop with: $0 stop -b $build_dir"
