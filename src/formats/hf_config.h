// The config.json of a Hugging Face checkpoint (Qwen3ForCausalLM, Qwen3MoeForCausalLM): the fields
// Tandem needs, checked, and written back for synthetic checkpoints.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace tandem {

struct HfRopeScaling {
    std::string type;          // "yarn", "linear", "dynamic", ... (rope_type or type); empty: none
    double factor = 1.0;
    int64_t original_context = 0;  // original_max_position_embeddings
};

struct HfConfig {
    std::string architecture;  // architectures[0]
    int64_t hidden_size = 0;
    int64_t num_hidden_layers = 0;
    int64_t num_attention_heads = 0;
    int64_t num_key_value_heads = 0;  // default: num_attention_heads
    int64_t head_dim = 0;             // default: hidden_size / num_attention_heads
    int64_t intermediate_size = 0;    // dense FFN width
    int64_t moe_intermediate_size = 0;
    int64_t num_experts = 0;
    int64_t num_experts_per_tok = 0;
    int64_t max_position_embeddings = 0;
    int64_t vocab_size = 0;
    bool norm_topk_prob = true;
    bool tie_word_embeddings = false;
    double rope_theta = 10000.0;
    double rms_norm_eps = 1e-6;
    HfRopeScaling rope_scaling;
    int64_t decoder_sparse_step = 1;      // Qwen3-MoE: every n-th layer is sparse
    std::vector<int64_t> mlp_only_layers;  // Qwen3-MoE: layers with a dense MLP instead

    bool is_moe() const { return architecture == "Qwen3MoeForCausalLM"; }

    static Result<HfConfig> load(const std::string& path);
    // `name` is used in error messages.
    static Result<HfConfig> parse(const std::string& text, const std::string& name);
    std::string to_json() const;
};

}  // namespace tandem
