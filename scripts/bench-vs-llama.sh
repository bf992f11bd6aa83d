#!/usr/bin/env bash
# Tandem vs llama.cpp (npm node-llama-cpp prebuilt, via build/bin/llama_ref) on the same GGUF,
# in the same run: prefill and decode tok/s and the ratios.
# Usage: scripts/bench-vs-llama.sh MODEL.gguf [PROMPT=512] [GEN=64] [THREADS=2] [REPS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:?usage: scripts/bench-vs-llama.sh MODEL.gguf [PROMPT] [GEN] [THREADS] [REPS]}"
prompt="${2:-512}"; gen="${3:-64}"; threads="${4:-2}"; reps="${5:-2}"
bin="${TANDEM_BUILD:-build}/bin"
[ -x "$bin/tandem" ] && [ -x "$bin/llama_ref" ] || { echo "build first: scripts/test.sh (needs $bin/tandem and $bin/llama_ref)" >&2; exit 1; }

echo "llama.cpp: prompt $prompt, gen $gen, $threads threads..." >&2
ref=$("$bin/llama_ref" bench -m "$model" --prompt "$prompt" --gen "$gen" --threads "$threads" --reps "$reps")
echo "tandem: prompt $prompt, gen $gen, $threads threads..." >&2
ours=$("$bin/tandem" bench -m "$model" --prompt-lens "$prompt" --gen "$gen" --threads "$threads" --reps "$reps" --json)

python3 - "$prompt" "$ref" "$ours" <<'PY'
import json, sys
p, ref, ours = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
pf, dc = ours["prefill_tok_s"][p], ours["decode_tok_s"][p]
bw, bpt = ours["bandwidth_gb_s"], ours["bytes_per_token"]
print(f"model read per token: {bpt/1e6:.0f} MB; measured bandwidth {bw:.1f} GB/s -> roofline {bw*1e9/bpt:.1f} tok/s")
print(f"| engine    | prefill tok/s (p{p}) | decode tok/s | decode % of roofline |")
print(f"| --------- | ------------------- | ------------ | -------------------- |")
for name, a, b in (("llama.cpp", ref["prefill_tok_s"], ref["decode_tok_s"]), ("tandem", pf, dc)):
    print(f"| {name:9} | {a:19.1f} | {b:12.2f} | {100*b*bpt/1e9/bw:19.0f}% |")
print(f"tandem / llama.cpp: prefill {pf/ref['prefill_tok_s']:.2f}x, decode {dc/ref['decode_tok_s']:.2f}x")
PY
