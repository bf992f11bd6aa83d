// Names of GGUF metadata keys and tensors: the one table of string literals for models.
// GGUF tensor names are Tandem's canonical weight names.
#pragma once

#include <string>
#include <string_view>

#include <fmt/format.h>

namespace tandem {

enum class Arch { qwen3moe, qwen3 };

std::string_view arch_name(Arch a);

namespace key {
// general / tokenizer keys (no architecture prefix)
inline constexpr const char* kArchitecture = "general.architecture";
inline constexpr const char* kName = "general.name";
inline constexpr const char* kAlignment = "general.alignment";
inline constexpr const char* kFileType = "general.file_type";
inline constexpr const char* kQuantVersion = "general.quantization_version";
inline constexpr const char* kTokModel = "tokenizer.ggml.model";
inline constexpr const char* kTokPre = "tokenizer.ggml.pre";
inline constexpr const char* kTokTokens = "tokenizer.ggml.tokens";
inline constexpr const char* kTokTypes = "tokenizer.ggml.token_type";
inline constexpr const char* kTokMerges = "tokenizer.ggml.merges";
inline constexpr const char* kTokBos = "tokenizer.ggml.bos_token_id";
inline constexpr const char* kTokEos = "tokenizer.ggml.eos_token_id";
inline constexpr const char* kTokPad = "tokenizer.ggml.padding_token_id";
inline constexpr const char* kTokAddBos = "tokenizer.ggml.add_bos_token";
inline constexpr const char* kChatTemplate = "tokenizer.chat_template";
// set on the view of a W8A8 checkpoint folder: its quantization format (for inspect and errors)
inline constexpr const char* kTandemQuantization = "tandem.quantization";

// per-architecture keys: "{arch}.{suffix}"
inline constexpr const char* kContextLength = "context_length";
inline constexpr const char* kEmbeddingLength = "embedding_length";
inline constexpr const char* kBlockCount = "block_count";
inline constexpr const char* kFeedForwardLength = "feed_forward_length";
inline constexpr const char* kExpertFeedForwardLength = "expert_feed_forward_length";
inline constexpr const char* kHeadCount = "attention.head_count";
inline constexpr const char* kHeadCountKv = "attention.head_count_kv";
inline constexpr const char* kKeyLength = "attention.key_length";
inline constexpr const char* kValueLength = "attention.value_length";
inline constexpr const char* kRmsEps = "attention.layer_norm_rms_epsilon";
inline constexpr const char* kRopeFreqBase = "rope.freq_base";
inline constexpr const char* kExpertCount = "expert_count";
inline constexpr const char* kExpertUsedCount = "expert_used_count";
inline constexpr const char* kExpertWeightsNorm = "expert_weights_norm";  // renormalise the top-k weights
inline constexpr const char* kRopeScalingType = "rope.scaling.type";      // "none", "linear", "yarn"
inline constexpr const char* kRopeScalingFactor = "rope.scaling.factor";
inline constexpr const char* kRopeScalingOrigCtx = "rope.scaling.original_context_length";

inline std::string arch_key(std::string_view arch, std::string_view suffix) {
    return fmt::format("{}.{}", arch, suffix);
}
}  // namespace key

namespace tn {
inline constexpr const char* kTokenEmbd = "token_embd.weight";
inline constexpr const char* kOutputNorm = "output_norm.weight";
inline constexpr const char* kOutput = "output.weight";

// per-layer tensors: "blk.{il}.{suffix}.weight"
inline constexpr const char* kAttnNorm = "attn_norm";
inline constexpr const char* kAttnQ = "attn_q";
inline constexpr const char* kAttnK = "attn_k";
inline constexpr const char* kAttnV = "attn_v";
inline constexpr const char* kAttnOutput = "attn_output";
inline constexpr const char* kAttnQNorm = "attn_q_norm";
inline constexpr const char* kAttnKNorm = "attn_k_norm";
inline constexpr const char* kFfnNorm = "ffn_norm";
inline constexpr const char* kFfnGateInp = "ffn_gate_inp";
inline constexpr const char* kFfnGateExps = "ffn_gate_exps";
inline constexpr const char* kFfnUpExps = "ffn_up_exps";
inline constexpr const char* kFfnDownExps = "ffn_down_exps";
inline constexpr const char* kFfnGate = "ffn_gate";  // dense FFN (qwen3)
inline constexpr const char* kFfnUp = "ffn_up";
inline constexpr const char* kFfnDown = "ffn_down";

inline std::string layer(int il, std::string_view suffix) { return fmt::format("blk.{}.{}.weight", il, suffix); }
// A companion of a layer tensor: "blk.{il}.{suffix}.{part}" (W8A8 scales, a norm's bias)
inline std::string layer_part(int il, std::string_view suffix, std::string_view part) {
    return fmt::format("blk.{}.{}.{}", il, suffix, part);
}
// The companion `part` of a tensor named "....weight": the same name ending in ".{part}".
inline std::string part_of(std::string_view weight_name, std::string_view part) {
    std::string_view base = weight_name;
    if (base.size() > 7 && base.substr(base.size() - 7) == ".weight") base.remove_suffix(7);
    return fmt::format("{}.{}", base, part);
}

// W8A8 quantization parameters beside an int8 weight (msModelSlim, compressed-tensors):
// static activations: input_scale, input_offset (per tensor), deq_scale, quant_bias (per row);
// every scheme: weight_scale, weight_offset / weight_zero_point (per row).
inline constexpr const char* kInputScale = "input_scale";
inline constexpr const char* kInputOffset = "input_offset";
inline constexpr const char* kDeqScale = "deq_scale";
inline constexpr const char* kQuantBias = "quant_bias";
inline constexpr const char* kWeightScale = "weight_scale";
inline constexpr const char* kWeightOffset = "weight_offset";
inline constexpr const char* kWeightZeroPoint = "weight_zero_point";
inline constexpr const char* kQuantParts[] = {kInputScale, kInputOffset, kDeqScale, kQuantBias,
                                              kWeightScale, kWeightOffset, kWeightZeroPoint};
// an RMSNorm's bias (msModelSlim's anti-outlier smoothing adds one to the norms before W8A8 linears)
inline constexpr const char* kBias = "bias";
}  // namespace tn

// Hugging Face (transformers) tensor names -> GGUF names, both directions from these tables.
namespace hf {
struct NamePair {
    const char* hf;
    const char* gguf;
};
inline constexpr const char* kEmbedTokens = "model.embed_tokens.weight";
inline constexpr const char* kLmHead = "lm_head.weight";
// whole-model tensors
inline constexpr NamePair kGlobal[] = {
    {kEmbedTokens, tn::kTokenEmbd},
    {"model.norm.weight", tn::kOutputNorm},
    {kLmHead, tn::kOutput},
};
// "model.layers.{il}.{hf}.weight" -> "blk.{il}.{gguf}.weight"
inline constexpr NamePair kLayer[] = {
    {"input_layernorm", tn::kAttnNorm},
    {"self_attn.q_proj", tn::kAttnQ},
    {"self_attn.k_proj", tn::kAttnK},
    {"self_attn.v_proj", tn::kAttnV},
    {"self_attn.o_proj", tn::kAttnOutput},
    {"self_attn.q_norm", tn::kAttnQNorm},
    {"self_attn.k_norm", tn::kAttnKNorm},
    {"post_attention_layernorm", tn::kFfnNorm},
    {"mlp.gate", tn::kFfnGateInp},
    {"mlp.gate_proj", tn::kFfnGate},
    {"mlp.up_proj", tn::kFfnUp},
    {"mlp.down_proj", tn::kFfnDown},
};
// "model.layers.{il}.mlp.experts.{e}.{hf}.weight" -> expert e of the stack "blk.{il}.{gguf}.weight"
inline constexpr NamePair kExpert[] = {
    {"gate_proj", tn::kFfnGateExps},
    {"up_proj", tn::kFfnUpExps},
    {"down_proj", tn::kFfnDownExps},
};
inline constexpr const char* kLayerPrefix = "model.layers.";
inline constexpr const char* kExpertsInfix = "mlp.experts.";
inline constexpr const char* kWeightSuffix = ".weight";
// present in some checkpoints, never used: RoPE tables recomputed by every implementation
inline constexpr const char* kIgnoredSuffix = "rotary_emb.inv_freq";

inline std::string layer(int il, std::string_view suffix, std::string_view part = "weight") {
    return fmt::format("model.layers.{}.{}.{}", il, suffix, part);
}
inline std::string expert(int il, int e, std::string_view suffix, std::string_view part = "weight") {
    return fmt::format("model.layers.{}.mlp.experts.{}.{}.{}", il, e, suffix, part);
}
}  // namespace hf

}  // namespace tandem
