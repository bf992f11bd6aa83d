#!/usr/bin/env bash
# Installs dependencies, builds, and runs the whole test suite (unit + integration against
# llama.cpp). Usage: scripts/test.sh [extra ctest args]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset default
cmake --build --preset default
ctest --preset default -j2 "$@"
