#!/usr/bin/env bash
# Formats every tracked C++/CUDA file with the committed .clang-format, or with --check only
# reports the files that differ (and fails), as CI does. Usage: scripts/format.sh [--check]
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files -- '*.h' '*.hpp' '*.cpp' '*.cc' '*.cu' '*.cuh')
if [[ "${1:-}" == "--check" ]]; then
  if ! clang-format --dry-run --Werror "${files[@]}"; then
    echo "format: the files above differ from .clang-format; run scripts/format.sh" >&2
    exit 1
  fi
  echo "format: ${#files[@]} files match .clang-format" >&2
else
  clang-format -i "${files[@]}"
fi
