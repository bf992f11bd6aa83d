#!/usr/bin/env bash
# Installs dependencies, builds, and runs the main job: `tandem serve` (the OpenAI-compatible
# server) on MODEL (default: a synthetic Qwen3-MoE model that it writes to models/ on first use).
# Usage: scripts/start.sh [MODEL.gguf | HF_FOLDER] [-- tandem serve options]
#   e.g. scripts/start.sh models/x.gguf -- --port 8080 --api-key secret
# Then: curl http://127.0.0.1:10002/v1/chat/completions -d '{"messages":[{"role":"user","content":"Hi"}]}'
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
exec build/bin/tandem serve -m "$model" "$@"
