#!/usr/bin/env bash
# Tandem vs llama.cpp (npm node-llama-cpp prebuilt, via build/bin/llama_ref) on the same GGUF: the
# two alternate for ROUNDS rounds (default 3) so that both see the same machine (a shared VM's
# memory bandwidth swings by 1.5x within minutes); prints every round and the median ratios.
# Usage: [ROUNDS=3] scripts/bench-vs-llama.sh MODEL.gguf [PROMPT=512] [GEN=64] [THREADS=2] [REPS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:?usage: scripts/bench-vs-llama.sh MODEL.gguf [PROMPT] [GEN] [THREADS] [REPS]}"
prompt="${2:-512}"; gen="${3:-64}"; threads="${4:-2}"; reps="${5:-2}"; rounds="${ROUNDS:-3}"
bin="${TANDEM_BUILD:-build}/bin"
[ -x "$bin/tandem" ] && [ -x "$bin/llama_ref" ] || { echo "build first: scripts/test.sh (needs $bin/tandem and $bin/llama_ref)" >&2; exit 1; }

results=()
for r in $(seq 1 "$rounds"); do
  echo "round $r/$rounds: llama.cpp (prompt $prompt, gen $gen, $threads threads)..." >&2
  ref=$("$bin/llama_ref" bench -m "$model" --prompt "$prompt" --gen "$gen" --threads "$threads" --reps "$reps")
  echo "round $r/$rounds: tandem..." >&2
  ours=$("$bin/tandem" bench -m "$model" --prompt-lens "$prompt" --gen "$gen" --threads "$threads" --reps "$reps" --json 2>/dev/null)
  results+=("$ref" "$ours")
done

python3 - "$prompt" "${results[@]}" <<'PY'
import json, statistics, sys
p, rest = sys.argv[1], sys.argv[2:]
rows = [(json.loads(rest[i]), json.loads(rest[i + 1])) for i in range(0, len(rest), 2)]
print(f"| round | llama.cpp prefill | tandem prefill | ratio | llama.cpp decode | tandem decode | ratio | bandwidth GB/s | tandem decode % |")
print(f"| ----: | ----------------: | -------------: | ----: | ---------------: | ------------: | ----: | -------------: | --------------: |")
pr, dr = [], []
for i, (ref, ours) in enumerate(rows, 1):
    pf, dc = ours["prefill_tok_s"][p], ours["decode_tok_s"][p]
    bw, bpt = ours["bandwidth_gb_s"], ours["bytes_per_token"]
    pr.append(pf / ref["prefill_tok_s"]); dr.append(dc / ref["decode_tok_s"])
    print(f"| {i} | {ref['prefill_tok_s']:.1f} | {pf:.1f} | {pr[-1]:.2f}x | {ref['decode_tok_s']:.2f} | {dc:.2f} | {dr[-1]:.2f}x "
          f"| {bw:.1f} | {100 * dc * bpt / 1e9 / bw:.0f}% |")
print(f"model read per token: {rows[0][1]['bytes_per_token']/1e6:.0f} MB (decode % is of the bandwidth tandem measured in its round)")
print(f"tandem / llama.cpp, median of {len(rows)} rounds: prefill {statistics.median(pr):.2f}x, decode {statistics.median(dr):.2f}x")
PY
