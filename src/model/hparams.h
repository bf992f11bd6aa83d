// Hyper-parameters of a model, read from GGUF metadata.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"
#include "kernels/reference/ops.h"
#include "model/arch.h"

namespace tandem {

class GgufFile;

struct HParams {
    Arch arch = Arch::qwen3moe;
    int64_t n_vocab = 0;
    int64_t n_ctx_train = 0;
    int64_t n_embd = 0;       // hidden size D
    int64_t n_layer = 0;
    int64_t n_head = 0;       // query heads
    int64_t n_head_kv = 0;
    int64_t head_dim = 0;     // key_length (= value_length for Qwen3)
    int64_t n_ff = 0;         // dense FFN width (qwen3)
    int64_t n_expert = 0;
    int64_t n_expert_used = 0;
    int64_t n_ff_exp = 0;     // expert FFN width
    float rms_eps = 1e-6f;
    float rope_base = 10000.0f;
    bool expert_weights_norm = true;  // top-k router weights renormalised to sum 1 (Qwen3-MoE)
    // RoPE context extension: "" (none), or the scaling type ("yarn", "linear", ...) with its
    // factor and the context the model was trained with before the extension
    std::string rope_scaling;
    float rope_scaling_factor = 1.0f;
    int64_t rope_scaling_orig_ctx = 0;

    // The RoPE frequencies these parameters give (plain, linear or YaRN; the original context of
    // YaRN defaults to the training context, as in llama.cpp). Only for what check_forward_support
    // accepts.
    ref::RopeFreqs rope_freqs() const;
    // The longest context the model takes: the trained one, or with YaRN / linear scaling the
    // factor times the original context (Qwen3: 4 x 32768 = 131072 over a trained 40960).
    int64_t max_context() const;

    int64_t n_q() const { return n_head * head_dim; }    // width of q / attention output
    int64_t n_kv() const { return n_head_kv * head_dim; }  // width of k and v
    bool is_moe() const { return n_expert > 0; }

    static Result<HParams> from_gguf(const GgufFile& f);
    // Whether the forward implements these hyper-parameters (RoPE scaling, router options):
    // an error naming what it does not.
    Status check_forward_support(const std::string& path) const;
};

}  // namespace tandem
