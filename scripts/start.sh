#!/usr/bin/env bash
# Installs dependencies, builds, and runs Tandem on MODEL (default: a synthetic Qwen3-MoE model
# that it writes to models/ on first use). Usage: scripts/start.sh [MODEL.gguf] [-- tandem run args]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset default
cmake --build --preset default --target tandem

model="${1:-}"
[ "$#" -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
if [ -z "$model" ]; then
  model=models/tiny-q4_k_m.gguf
  if [ ! -f "$model" ]; then
    mkdir -p models
    build/bin/tandem make-test-model --preset tiny --quant q4_k_m -o "$model"
  fi
fi
build/bin/tandem inspect --no-tensors "$model"
if [ "$#" -eq 0 ]; then set -- -p "The capital of France is" -n 32; fi
exec build/bin/tandem run -m "$model" "$@"
