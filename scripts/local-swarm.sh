#!/usr/bin/env bash
# Starts a DHT-connected swarm of `swarm serve` peers on this machine (loopback), each span of the
# model's blocks served by R peers, and prints the bootstrap host:port for clients. The peers run
# in the background under `swarm demo --serve-only`; its pid and the logs live in
# BUILD_DIR/local-swarm/ (git-ignored).
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

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

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
  # `swarm demo` stops its peers (they withdraw their records and exit, each within 10 s or
  # killed); give it that long, then force.
  for _ in $(seq 150); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -f "$pid_file" "$state_dir/ready"
  echo "stopped the local swarm"
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

# `swarm demo --serve-only` starts the peers (one after the other, each joining the DHT through
# the first), prints each one's ready line and the bootstrap node, writes the same text to the
# ready file once all serve, and keeps them until it is sent SIGTERM (stop_swarm).
mkdir -p "$state_dir"
ready_file="$state_dir/ready"
rm -f "$ready_file" "$state_dir"/peer-*.log
args=(demo --serve-only -m "$model" --peers "$n_peers" --replicas "$replicas"
      --log-dir "$state_dir" --ready-file "$ready_file")
(( blocks_per_peer > 0 )) && args+=(--blocks-per-peer "$blocks_per_peer")
nohup "$swarm" "${args[@]}" -- "${extra[@]}" > "$state_dir/swarm.out" 2> "$state_dir/swarm.log" < /dev/null &
echo $! > "$pid_file"
# Each peer gets a minute to start, as `swarm demo` allows.
for _ in $(seq $(( 600 * n_peers ))); do
  [[ -f "$ready_file" ]] && break
  kill -0 "$!" 2>/dev/null || break
  sleep 0.1
done
if [[ ! -f "$ready_file" ]]; then
  echo "the local swarm did not start; its log ($state_dir/swarm.log):" >&2
  tail -n 20 "$state_dir/swarm.log" >&2 || true
  stop_swarm >&2
  exit 1
fi
grep '^note: ' "$state_dir/swarm.log" >&2 || true
cat "$ready_file"
echo "peer logs in $state_dir; stop with: $0 stop -b $build_dir"
