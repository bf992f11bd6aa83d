#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "cli/commands.h"
#include "model/convert.h"
#include "model/merge.h"

namespace tandem::cli {
namespace {

std::function<void(size_t, size_t)> progress_line(const char* what) {
    return [what](size_t done, size_t total) {
        std::fprintf(stderr, "\r  %s: tensors %zu/%zu", what, done, total);
        if (done == total) std::fprintf(stderr, "\n");
    };
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Runner add_convert(CLI::App& app) {
    struct Opts {
        std::string model, out, quant = "f16";
        int threads = (int)std::max(1u, std::thread::hardware_concurrency());
        int split = 1;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("-m,--model", o->model, "Model to convert: a .gguf file, a Hugging Face folder or a merged folder")
        ->required();
    app.add_option("-o,--out", o->out, "Output .gguf path")->required();
    app.add_option("--quant", o->quant,
                   "f32 | f16 | bf16 | q8_0 | q4_0 | q5_0 | q4_k_m | q5_k_m | q4_k_m-exps-bf16 (llama.cpp's mix rules)")
        ->capture_default_str();
    app.add_option("--threads", o->threads, "Threads for quantizing")->capture_default_str();
    app.add_option("--split", o->split, "Write N split files NAME-0000i-of-0000N.gguf")->capture_default_str();
    return [o]() -> int {
        auto q = quant_mix_from_name(o->quant);
        if (!q) return fail(q.error().message);
        if (o->split < 1) return fail("--split must be >= 1");
        const auto t0 = std::chrono::steady_clock::now();
        std::fprintf(stderr, "convert: %s -> %s (%s)\n", o->model.c_str(), o->out.c_str(), quant_mix_name(*q));
        ConvertOptions opts{*q, std::max(1, o->threads), o->split};
        if (Status st = convert_model(o->model, o->out, opts, progress_line("convert")); !st) return fail(st.error().message);
        std::fprintf(stderr, "convert: done in %.1f s\n", seconds_since(t0));
        return 0;
    };
}

Runner add_merge(CLI::App& app) {
    struct Opts {
        std::string st, gguf, out;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("--safetensors", o->st, "Safetensors checkpoint folder (config.json, tokenizer): the dense parts")
        ->required();
    app.add_option("--gguf", o->gguf, "GGUF file (first of its splits): the routed experts, kept as quantized")->required();
    app.add_option("--out", o->out, "Folder to write (new or empty)")->required();
    return [o]() -> int {
        const auto t0 = std::chrono::steady_clock::now();
        std::fprintf(stderr, "merge: dense parts from %s, routed experts from %s -> %s\n", o->st.c_str(), o->gguf.c_str(),
                     o->out.c_str());
        if (Status st = merge_checkpoints(o->st, o->gguf, o->out, progress_line("merge")); !st)
            return fail(st.error().message);
        std::fprintf(stderr, "merge: done in %.1f s (manifest: %s/%s)\n", seconds_since(t0), o->out.c_str(), kMergeManifest);
        return 0;
    };
}

}  // namespace tandem::cli
