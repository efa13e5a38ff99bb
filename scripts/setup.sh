#!/usr/bin/env bash
# Installs every Debian package Swarm needs (idempotent, non-interactive) and builds the release
# binary into build/. Usage: scripts/setup.sh [--deps-only]
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libabsl-dev                 # Status/StatusOr, strings, synchronization
  libzmq3-dev cppzmq-dev      # ZeroMQ sockets and their C++ binding
  libsodium-dev               # private swarms: key derivation, CURVE key pairs, sealed DHT records
  capnproto libcapnp-dev      # wire-format schema compiler and runtime
  libzstd-dev                 # activation compression
  libsodium-dev               # session capabilities and sealed routes (CSPRNG, secretbox)
  libboost-dev                # Boost.Beast / Asio for the HTTP gateway
  libboost-context-dev        # fibers: the tests' emulated GPU runs CUDA threads on them
  libopendht-dev              # Kademlia DHT for peer discovery
  libpcre2-dev                # Unicode-aware regexes for BPE pre-tokenizers
  libcli11-dev                # command-line parsing
  nlohmann-json3-dev          # JSON for the HTTP API and benchmark output
  libgtest-dev libgmock-dev libbenchmark-dev
  clang clang-format           # CI: the -Wthread-safety build and the format check
  libclang-rt-14-dev          # libFuzzer and the sanitizer runtimes for clang (scripts/fuzz.sh)
  chromium                    # headless browser: the dashboard test renders the page
  tmux                        # the `swarm chat` tests type into a terminal and read it back
  iproute2 nftables           # the NAT tests: network namespaces behind a masquerading router
  python3 python3-numpy       # the independent numpy reference forward (tests/reference)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm run the official OpenAI client against the gateway in the tests. Asked for by
# command, not package: a machine may have Node.js from elsewhere, whose nodejs bundles npm and
# conflicts with Debian's npm package.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# The `openai` npm package, into tests/gateway/node_modules (ignored by git; no lock file).
if [[ ! -f tests/gateway/node_modules/openai/package.json ]]; then
  echo "setup: installing the openai npm package into tests/gateway/node_modules" >&2
  # A failure is not fatal here: the test that needs the package says what is missing.
  timeout 180 npm install --prefix tests/gateway --no-audit --no-fund --no-package-lock --no-save \
    --fetch-retries=1 --fetch-timeout=20000 --loglevel=error openai@4 >&2 ||
    echo "setup: warning: could not install the openai npm package (test_openai_node will try again, and skip if the registry is unreachable)" >&2
fi

[[ "${1:-}" == "--deps-only" ]] && exit 0

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >&2
cmake --build build --target swarm >&2
