#!/usr/bin/env bash
# Bytes a peer fetches to serve a slice of a model it downloads by URL, against the whole file:
# writes a synthetic model (TinyLlama's shape by default), serves it over HTTP on loopback with the
# tests' range server, runs `swarm serve --model-url URL --blocks A:B` until its ready line, and
# prints the bytes the server sent. Nothing leaves the machine.
#
# Usage: scripts/bench-model-url.sh [-b BUILD_DIR] [--preset tinyllama-1.1b] [--type q4_0]
#                                   [--blocks 9:13] [--work DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=build
preset=tinyllama-1.1b
type=q4_0
blocks=9:13
work=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    -b) build_dir=$2; shift 2 ;;
    --preset) preset=$2; shift 2 ;;
    --type) type=$2; shift 2 ;;
    --blocks) blocks=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    *) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
done
swarm="$build_dir/src/cli/swarm"
[[ -x "$swarm" ]] || { echo "no $swarm: build it first" >&2; exit 1; }
if [[ -z "$work" ]]; then work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi
mkdir -p "$work/www"
model="$work/www/model-$preset-$type.gguf"
[[ -f "$model" ]] || "$swarm" make-model --preset "$preset" --type "$type" -o "$model" >&2
"$swarm" manifest "$model" > "$work/www/manifest.json" 2>/dev/null

python3 tests/support/range_server.py --root "$work/www" > "$work/server.out" &
server_pid=$!
for _ in $(seq 100); do grep -q '^port ' "$work/server.out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/^port //p' "$work/server.out")
base="http://127.0.0.1:$port"
rm -rf "$work/cache"
start=$(date +%s.%N)
coproc peer { exec "$swarm" serve --model-url "$base/$(basename "$model")" --blocks "$blocks" \
  --no-dht --manifest "$work/www/manifest.json" --model-cache "$work/cache" 2>"$work/serve.log"; }
peer_pid=$peer_PID
read -r ready <&"${peer[0]}" || { cat "$work/serve.log" >&2; exit 1; }
end=$(date +%s.%N)
fetched=$(python3 -c "import urllib.request as u; print(u.urlopen('$base/__stats').read().decode().split()[1])")
kill "$peer_pid" "$server_pid" 2>/dev/null || true
wait 2>/dev/null || true
whole=$(stat -c %s "$model")
n_layer=$("$swarm" inspect "$model" 2>/dev/null | sed -n 's/^ *[a-z0-9]*\.block_count  *u32  *\([0-9]\+\).*/\1/p' | head -1)
python3 - "$fetched" "$whole" "$blocks" "$n_layer" "$start" "$end" <<'PY'
import sys
fetched, whole, blocks, n_layer, start, end = sys.argv[1:]
fetched, whole = int(fetched), int(whole)
print(f"slice {blocks} of {n_layer or '?'} blocks: fetched {fetched} bytes "
      f"({fetched / 2**20:.1f} MiB) of a {whole}-byte file ({whole / 2**20:.1f} MiB): "
      f"{100 * fetched / whole:.1f}%, ready in {float(end) - float(start):.1f} s")
PY
echo "peer: $ready"
