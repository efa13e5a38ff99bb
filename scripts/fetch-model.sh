#!/usr/bin/env bash
# Finds stories260K.gguf (a 1 MB trained Llama-architecture model) or downloads it, checks its
# sha256, and prints the path it resolved.
# Usage: scripts/fetch-model.sh [DEST_DIR]
# Looks in $SWARM_MODEL_DIR, then ../shared/models (relative to the repository), then ./models;
# otherwise downloads it from Hugging Face (ggml-org/models, tinyllamas/stories260K.gguf) into
# DEST_DIR (default: ./models). A file whose checksum does not match is an error, never used.
set -euo pipefail

readonly NAME="stories260K.gguf"
readonly SHA256="270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d"
# SWARM_MODEL_URL overrides the source (e.g. a mirror, or file:// in tests).
readonly URL="${SWARM_MODEL_URL:-https://huggingface.co/ggml-org/models/resolve/main/tinyllamas/${NAME}}"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest_dir="${1:-models}"

die() {
  echo "fetch-model: $*" >&2
  exit 1
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d' ' -f1
  else
    die "neither sha256sum nor shasum is installed"
  fi
}

# Prints the absolute path of $1 and exits if it holds the expected file; fails loudly if it
# exists with other contents.
use_if_valid() {
  local candidate="$1"
  [[ -f "$candidate" ]] || return 0
  local actual
  actual="$(sha256_of "$candidate")"
  if [[ "$actual" != "$SHA256" ]]; then
    die "$candidate has sha256 $actual, expected $SHA256"
  fi
  echo "$(cd "$(dirname "$candidate")" && pwd)/$(basename "$candidate")"
  exit 0
}

if [[ -n "${SWARM_MODEL_DIR:-}" ]]; then
  use_if_valid "${SWARM_MODEL_DIR}/${NAME}"
fi
use_if_valid "${repo_root}/../shared/models/${NAME}"
use_if_valid "models/${NAME}"
use_if_valid "${dest_dir}/${NAME}"

command -v curl >/dev/null 2>&1 || die "curl is not installed and ${NAME} was not found locally"
mkdir -p "$dest_dir"
tmp="$(mktemp "${dest_dir}/${NAME}.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
echo "fetch-model: downloading ${URL}" >&2
curl --fail --location --silent --show-error --retry 3 --output "$tmp" "$URL" ||
  die "download of ${URL} failed"
actual="$(sha256_of "$tmp")"
if [[ "$actual" != "$SHA256" ]]; then
  die "downloaded file has sha256 ${actual}, expected ${SHA256}"
fi
mv "$tmp" "${dest_dir}/${NAME}"
trap - EXIT
echo "$(cd "$dest_dir" && pwd)/${NAME}"
