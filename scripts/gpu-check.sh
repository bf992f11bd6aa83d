#!/usr/bin/env bash
# The prepared GPU check (README "GPU check"), in two modes:
#
#   scripts/gpu-check.sh pack [DIR]   here, on a CPU machine with nvcc: builds the tandem binary and
#                                     the CUDA tests with CUDA, packs them with the shared libraries
#                                     a bare GPU machine may lack and the tokenizer into DIR
#                                     as DIR/tandem-gpu-check.tar.xz (default gpu-check/, ignored
#                                     by git; ~15 MiB, well under the device tool's 64 MiB carry
#                                     limit: ICU's data and the tokenizer compress well)
#   scripts/gpu-check.sh run [OUT]    there (also here, where the GPU parts skip): runs every CUDA
#                                     test, makes a synthetic model with the packed binary, shows
#                                     the placement on the detected GPU and a short CPU bench;
#                                     with a GPU also: hybrid vs cpu greedy ids on the tiny model
#                                     (and with --use-cuda-graph),
#                                     and the bench-shaped Q4_K_M model (8 layers of Qwen3-30B-A3B)
#                                     benched on the cpu and hybrid at prompts 512 and 4096 with
#                                     the 94-layer projection (and cuda with graphs, then with
#                                     64 experts per layer on the GPU too, at 512);
#                                     writes logs and summary.txt to OUT
#                                     (default $OUT, else gpu-check-out/). Under 8 minutes; exit 1
#                                     if a test failed.
#
# With the device tool: run(command="scripts/gpu-check.sh run", carry=["gpu-check"], timeout_s=540).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}

pack() {
    local dir=${1:-gpu-check}/stage
    nice -n 10 cmake --preset default >/dev/null
    grep -q '^TANDEM_CUDA:BOOL=ON' build/CMakeCache.txt || { echo "gpu-check: build/ has TANDEM_CUDA=OFF (no nvcc?)" >&2; exit 1; }
    nice -n 10 cmake --build --preset default --target tandem tandem_cuda_tests
    rm -rf "$(dirname "$dir")"
    mkdir -p "$dir/bin" "$dir/lib" "$dir/share/tandem"
    for b in tandem tandem_cuda_tests; do
        strip --strip-debug -o "$dir/bin/$b" "build/bin/$b"
    done
    cp -r build/share/tandem/qwen3-tokenizer "$dir/share/tandem/"
    # every shared library the binaries load, except glibc's own and the driver (the GPU
    # machine's libc is as new or newer; libcuda must be the machine's own)
    ldd "$dir"/bin/* | awk '/=> \// {print $3}' | sort -u | while read -r lib; do
        case "$(basename "$lib")" in
            libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libcuda.so*|libnvidia*) ;;
            *) cp -L "$lib" "$dir/lib/" ;;
        esac
    done
    strip --strip-unneeded "$dir"/lib/* 2>/dev/null || true
    git rev-parse HEAD > "$dir/commit.txt"
    local tarball
    tarball="$(dirname "$dir")/tandem-gpu-check.tar.xz"
    tar -C "$dir" -cf - . | nice xz -T2 -3 > "$tarball"
    echo "gpu-check: $(du -sh "$dir" | cut -f1) ($(ls "$dir/lib" | wc -l) libraries) packed into $tarball ($(du -sh "$tarball" | cut -f1))"
    rm -rf "$dir"
    local kib
    kib=$(du -sk "$tarball" | cut -f1)
    if [ "$kib" -gt $((48 * 1024)) ]; then echo "gpu-check: $tarball is over 48 MiB: too big to carry" >&2; exit 1; fi
}

run() {
    local out=${1:-${OUT:-gpu-check-out}} dir
    [ -f gpu-check/tandem-gpu-check.tar.xz ] || { echo "gpu-check: gpu-check/tandem-gpu-check.tar.xz missing: run 'scripts/gpu-check.sh pack' first" >&2; exit 1; }
    dir=$(mktemp -d /tmp/tandem-gpu-check.XXXXXX)
    xz -dc gpu-check/tandem-gpu-check.tar.xz | tar -C "$dir" -xf -
    mkdir -p "$out"
    export LD_LIBRARY_PATH="$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    local summary="$out/summary.txt" status=0
    {
        echo "commit $(cat "$dir/commit.txt" 2>/dev/null || echo unknown), $(date -u +%FT%TZ), $(uname -m)"
        (nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: none")
    } > "$summary"

    echo "=== CUDA tests" | tee -a "$summary"
    if timeout 300 "$dir/bin/tandem_cuda_tests" --gtest_output="xml:$out/cuda_tests.xml" > "$out/cuda_tests.log" 2>&1; then
        echo "cuda tests: PASS" >> "$summary"
    else
        echo "cuda tests: FAIL (exit $?)" >> "$summary"
        status=1
    fi
    # gtest's own totals, the failed / skipped test names, and the skip reason once
    grep -E '^\[  (PASSED|FAILED|SKIPPED) +\]|^\[=+\] ' "$out/cuda_tests.log" | sort -u >> "$summary" || true
    grep -m1 'no CUDA device' "$out/cuda_tests.log" >> "$summary" || true

    echo "=== synthetic model, placement, CPU bench" | tee -a "$summary"
    local model=/tmp/gpu-check-model.gguf
    if timeout 120 "$dir/bin/tandem" make-test-model -o "$model" --preset tiny --quant q4_k_m > "$out/model.log" 2>&1 &&
       timeout 60 "$dir/bin/tandem" inspect --rules auto --no-tensors "$model" > "$out/inspect.txt" 2>&1 &&
       timeout 120 "$dir/bin/tandem" bench -m "$model" --prompt-lens 64 --gen 16 > "$out/bench.txt" 2>&1; then
        echo "tandem: PASS" >> "$summary"
        sed -n '/^placement/,$p' "$out/inspect.txt" >> "$summary"
    else
        echo "tandem: FAIL (see model.log, inspect.txt, bench.txt)" >> "$summary"
        status=1
    fi

    if ! nvidia-smi > /dev/null 2>&1; then
        echo "=== hybrid: skipped (no GPU)" | tee -a "$summary"
        cat "$summary"
        return $status
    fi
    echo "=== hybrid forward: greedy ids, cpu vs cuda (tiny q4_k_m)" | tee -a "$summary"
    local t="$dir/bin/tandem" ids_cpu ids_gpu ids_graph ids_exp ids_pre
    ids_cpu=$(timeout 60 "$t" run -m "$model" --prompt-ids 785,6722,315,9625,374 -n 24 --ignore-eos --json --device cpu 2>"$out/run_cpu.log" | grep -o '"ids":\[[0-9,]*\]' || true)
    ids_gpu=$(timeout 60 "$t" run -m "$model" --prompt-ids 785,6722,315,9625,374 -n 24 --ignore-eos --json --device cuda 2>"$out/run_gpu.log" | grep -o '"ids":\[[0-9,]*\]' || true)
    ids_graph=$(timeout 60 "$t" run -m "$model" --prompt-ids 785,6722,315,9625,374 -n 24 --ignore-eos --json --device cuda --use-cuda-graph 2>"$out/run_graph.log" | grep -o '"ids":\[[0-9,]*\]' || true)
    ids_exp=$(timeout 60 "$t" run -m "$model" --prompt-ids 785,6722,315,9625,374 -n 24 --ignore-eos --json --device cuda --use-cuda-graph --gpu-experts 4 2>"$out/run_experts.log" | grep -o '"ids":\[[0-9,]*\]' || true)
    ids_pre=$(timeout 60 "$t" run -m "$model" --prompt-ids 785,6722,315,9625,374 -n 24 --ignore-eos --json --device cuda --gpu-prefill 2 2>"$out/run_prefill.log" | grep -o '"ids":\[[0-9,]*\]' || true)
    echo "cpu  $ids_cpu" >> "$summary"
    echo "cuda $ids_gpu" >> "$summary"
    echo "cuda+graphs $ids_graph" >> "$summary"
    if [ -n "$ids_gpu" ] && [ "$ids_cpu" = "$ids_gpu" ]; then echo "hybrid ids: SAME" >> "$summary";
    else echo "hybrid ids: DIFFER or failed (see run_gpu.log; tests/cuda compares logits with a tolerance)" >> "$summary"; fi
    if [ -n "$ids_graph" ] && [ "$ids_gpu" = "$ids_graph" ]; then echo "graph ids: SAME as cuda" >> "$summary";
    else echo "graph ids: DIFFER or failed (see run_graph.log)" >> "$summary"; fi
    echo "cuda+graphs+4 gpu experts $ids_exp" >> "$summary"
    if [ -n "$ids_exp" ] && [ "$ids_cpu" = "$ids_exp" ]; then echo "gpu-experts ids: SAME as cpu" >> "$summary";
    else echo "gpu-experts ids: DIFFER or failed (see run_experts.log)" >> "$summary"; fi
    echo "cuda --gpu-prefill 2 $ids_pre" >> "$summary"
    if [ -n "$ids_pre" ] && [ "$ids_cpu" = "$ids_pre" ]; then echo "gpu-prefill ids: SAME as cpu" >> "$summary";
    else echo "gpu-prefill ids: DIFFER or failed (see run_prefill.log)" >> "$summary"; fi

    echo "=== bench-shaped Q4_K_M (8 layers of Qwen3-30B-A3B): cpu vs hybrid" | tee -a "$summary"
    local big=/tmp/gpu-check-bench.gguf threads
    threads=$(nproc)
    if timeout 240 "$t" make-test-model -o "$big" --preset bench --quant q4_k_m --threads "$threads" > "$out/bench_model.log" 2>&1; then
        for d in cuda cpu; do
            if timeout 150 "$t" bench -m "$big" --device $d --prompt-lens 512,4096 --gen 32 --project-layers 94 \
                   --threads "$threads" > "$out/bench_$d.txt" 2>&1; then
                { echo "--- $d"; grep -vE '^\s*$|^bench:' "$out/bench_$d.txt"; } >> "$summary"
            else
                echo "bench $d: FAIL or timeout (see bench_$d.txt)" >> "$summary"
                [ $d = cuda ] && status=1
            fi
        done
        # decode with the layers' device work as CUDA graphs
        if timeout 90 "$t" bench -m "$big" --device cuda --use-cuda-graph --prompt-lens 512 --gen 64 --project-layers 94 \
               --threads "$threads" > "$out/bench_cuda_graph.txt" 2>&1; then
            { echo "--- cuda + graphs"; grep -vE '^\s*$|^bench:' "$out/bench_cuda_graph.txt"; } >> "$summary"
        else
            echo "bench cuda + graphs: FAIL or timeout (see bench_cuda_graph.txt)" >> "$summary"
            status=1
        fi
        # and with half of every layer's routed experts on the GPU too
        if timeout 90 "$t" bench -m "$big" --device cuda --use-cuda-graph --gpu-experts 64 --prompt-lens 512 --gen 64 \
               --project-layers 94 --threads "$threads" > "$out/bench_cuda_experts.txt" 2>&1; then
            { echo "--- cuda + graphs + 64 experts per layer on the GPU"; grep -vE '^\s*$|^bench:' "$out/bench_cuda_experts.txt"; } >> "$summary"
        else
            echo "bench cuda + gpu experts: FAIL or timeout (see bench_cuda_experts.txt)" >> "$summary"
            status=1
        fi
        # long prompts with every routed expert on the GPU (each layer's experts uploaded per batch)
        if timeout 90 "$t" bench -m "$big" --device cuda --gpu-prefill 256 --prompt-lens 512,4096 --gen 16 \
               --project-layers 94 --threads "$threads" > "$out/bench_cuda_prefill.txt" 2>&1; then
            { echo "--- cuda + --gpu-prefill 256"; grep -vE '^\s*$|^bench:' "$out/bench_cuda_prefill.txt"; } >> "$summary"
        else
            echo "bench cuda + gpu prefill: FAIL or timeout (see bench_cuda_prefill.txt)" >> "$summary"
            status=1
        fi
    else
        echo "bench model: FAIL (see bench_model.log)" >> "$summary"
    fi
    cat "$summary"
    return $status
}

case "$mode" in
    pack) shift; pack "$@" ;;
    run) shift; run "$@" ;;
    *) echo "usage: scripts/gpu-check.sh pack [DIR] | run [OUT]" >&2; exit 2 ;;
esac
