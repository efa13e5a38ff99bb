#!/usr/bin/env bash
# Sets up everything (Debian packages, release build) and runs the main job: a local swarm of
# peer processes on loopback, splitting the default model, generating text through them.
# Usage: scripts/demo.sh [swarm demo flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec build/src/cli/swarm demo "$@"
