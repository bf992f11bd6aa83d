#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "cli/commands.h"
#include "model/synthetic.h"

namespace tandem::cli {

Runner add_make_test_model(CLI::App& app, const std::string& exe_path) {
    struct Opts {
        std::string out, preset = "tiny", quant = "f16", tokenizer, format = "gguf";
        int threads = (int)std::max(1u, std::thread::hardware_concurrency());
        SyntheticSpec spec;
        bool dense = false;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("-o,--out", o->out, "Output .gguf path (--format hf: the folder to write)")->required();
    app.add_option("--format", o->format,
                   "gguf | hf (Hugging Face folder: config.json, tokenizer, BF16 safetensors shards + index; the "
                   "same values as the GGUF of the same seed, shape and --quant) | hf-w8a8-msmodelslim (those "
                   "weights as msModelSlim W8A8: attention static, calibrated on the BF16 model; experts dynamic; "
                   "quant_model_description.json) | hf-w8a8-ct (compressed-tensors int8, dynamic activations)")
        ->capture_default_str();
    app.add_option("--preset", o->preset, "tiny | bench (Qwen3-30B-A3B shapes, 8 layers) | a3b | a22b")
        ->capture_default_str();
    app.add_option("--quant", o->quant, "f32 | f16 | bf16 | q8_0 | q4_0 | q5_0 | q4_k_m | q5_k_m | q4_k_m-exps-bf16 (experts q4_k_m, rest bf16) (hf: f32 | f16 | bf16, default bf16)")
        ->capture_default_str();
    app.add_option("--tokenizer", o->tokenizer, "Folder with tokenizer.json + tokenizer_config.json (default: Qwen3)");
    app.add_option("--threads", o->threads, "Threads for generating and quantizing")
        ->capture_default_str()
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    // shape overrides: applied on top of the preset
    auto* s = &o->spec;
    app.add_option("--seed", s->seed, "Random seed");
    app.add_option("--layers", s->n_layer, "Number of layers");
    app.add_option("--hidden", s->n_embd, "Hidden size");
    app.add_option("--heads", s->n_head, "Query heads");
    app.add_option("--kv-heads", s->n_head_kv, "Key/value heads");
    app.add_option("--head-dim", s->head_dim, "Head dimension");
    app.add_option("--experts", s->n_expert, "Routed experts");
    app.add_option("--experts-used", s->n_expert_used, "Experts per token (top-k)");
    app.add_option("--expert-ff", s->n_ff_exp, "Expert FFN width");
    app.add_option("--dense-ff", s->n_ff, "FFN width of a dense model (with --dense)");
    app.add_flag("--dense", o->dense, "Write a dense qwen3 model instead of qwen3moe");
    app.add_option("--vocab", s->n_vocab, "Vocabulary rows (>= tokenizer size)");
    app.add_option("--context", s->n_ctx, "Trained context length");
    app.add_option("--rope-base", s->rope_base, "RoPE frequency base");
    app.add_option("--rope-scaling", s->rope_scaling, "RoPE context extension in the metadata: yarn | linear");
    app.add_option("--rope-factor", s->rope_factor, "Its factor (with --rope-scaling; default 4)");
    app.add_option("--rope-orig-ctx", s->rope_orig_ctx,
                   "Its original context (with --rope-scaling; default: none written, readers take --context)");
    app.add_option("--logit-scale", s->logit_scale, "Std of output logits (larger: more peaked)");
    app.add_option("--split", s->n_split,
                   "Write N split files NAME-0000i-of-0000N.gguf (hf: N safetensors shards, default 2; 1 writes "
                   "model.safetensors alone)");

    return [o, &app, exe_path]() -> int {
        auto preset = SyntheticSpec::preset(o->preset);
        if (!preset) return fail(preset.error().message);
        SyntheticSpec spec = *preset;
        // overrides: an option given on the command line wins over the preset
        const SyntheticSpec& cli = o->spec;
        auto take = [&](const char* opt, auto& dst, const auto& src) {
            if (app.count(opt) > 0) dst = src;
        };
        take("--seed", spec.seed, cli.seed);
        take("--layers", spec.n_layer, cli.n_layer);
        take("--hidden", spec.n_embd, cli.n_embd);
        take("--heads", spec.n_head, cli.n_head);
        take("--kv-heads", spec.n_head_kv, cli.n_head_kv);
        take("--head-dim", spec.head_dim, cli.head_dim);
        take("--experts", spec.n_expert, cli.n_expert);
        take("--experts-used", spec.n_expert_used, cli.n_expert_used);
        take("--expert-ff", spec.n_ff_exp, cli.n_ff_exp);
        take("--dense-ff", spec.n_ff, cli.n_ff);
        take("--vocab", spec.n_vocab, cli.n_vocab);
        take("--context", spec.n_ctx, cli.n_ctx);
        take("--rope-base", spec.rope_base, cli.rope_base);
        take("--rope-scaling", spec.rope_scaling, cli.rope_scaling);
        take("--rope-factor", spec.rope_factor, cli.rope_factor);
        take("--rope-orig-ctx", spec.rope_orig_ctx, cli.rope_orig_ctx);
        take("--logit-scale", spec.logit_scale, cli.logit_scale);
        take("--split", spec.n_split, cli.n_split);
        spec.moe = !o->dense;
        if (o->format == "hf" || o->format == "hf-w8a8-msmodelslim" || o->format == "hf-w8a8-ct") {
            spec.format = o->format == "hf" ? ModelFormat::hf
                          : o->format == "hf-w8a8-ct" ? ModelFormat::hf_w8a8_ct
                                                      : ModelFormat::hf_w8a8_msmodelslim;
            if (app.count("--split") == 0) spec.n_split = 2;
            if (app.count("--quant") == 0) o->quant = "bf16";
        } else if (o->format != "gguf") {
            return fail("unknown --format '" + o->format + "' (choose gguf, hf, hf-w8a8-msmodelslim, hf-w8a8-ct)");
        }
        auto q = quant_mix_from_name(o->quant);
        if (!q) return fail(q.error().message);
        spec.quant = *q;

        if (Status st = spec.validate(); !st) return fail(st.error().message);
        const auto parent = std::filesystem::absolute(o->out).parent_path();
        if (!std::filesystem::is_directory(parent)) return fail(o->out + ": folder " + parent.string() + " does not exist");
        std::string tok = o->tokenizer.empty() ? default_tokenizer_dir(exe_path) : o->tokenizer;
        if (tok.empty())
            return fail("Qwen3 tokenizer files not found: run scripts/install-deps.sh, or pass --tokenizer DIR");

        const auto t0 = std::chrono::steady_clock::now();
        std::fprintf(stderr, "make-test-model: %s preset, %s %s, %lld layers, hidden %lld, %lld experts -> %s\n",
                     spec.name.c_str(), o->format.c_str(), quant_mix_name(spec.quant), (long long)spec.n_layer, (long long)spec.n_embd,
                     (long long)(spec.moe ? spec.n_expert : 0), o->out.c_str());
        auto progress = [](size_t done, size_t total) {
            std::fprintf(stderr, "\r  tensors %zu/%zu", done, total);
            if (done == total) std::fprintf(stderr, "\n");
        };
        Status st = write_synthetic_model(spec, tok, o->out, o->threads, progress);
        if (!st) return fail(st.error().message);
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::fprintf(stderr, "make-test-model: done in %.1f s\n", secs);
        return 0;
    };
}

}  // namespace tandem::cli
