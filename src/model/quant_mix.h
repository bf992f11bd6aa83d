// Quantization mixes: which GGUF type each tensor of a Qwen3 / Qwen3-MoE model gets under a named
// mix (f16, q8_0, q4_k_m, ...), following llama.cpp's quantizer (the *_M mixes give some layers
// more bits; widths that do not fit a type's block fall back). Used by the synthetic models and by
// `tandem convert`, so both quantize a model alike.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/dtype.h"
#include "core/status.h"

namespace tandem {

// q4_k_m_exps_bf16: routed experts as q4_k_m, everything else BF16 (what `tandem merge` of a BF16
// checkpoint with a Q4_K_M GGUF holds).
enum class QuantMix { f32, f16, bf16, q8_0, q4_0, q5_0, q4_k_m, q4_k_m_exps_bf16, q5_k_m };

Result<QuantMix> quant_mix_from_name(const std::string& name);
const char* quant_mix_name(QuantMix q);
uint32_t quant_mix_file_type(QuantMix q);  // llama_ftype written as general.file_type

// What a tensor is for, as the mix rules see it.
enum class TensorRole { embd, output, attn_q, attn_k, attn_v, attn_out, ffn_gate, ffn_up, ffn_down, router, norm };

// The role of a GGUF-named tensor (blk.N.attn_q.weight, token_embd.weight, ...); nullopt if the
// name is none of Qwen3's. `il` receives the layer index (0 for global tensors).
std::optional<TensorRole> tensor_role(std::string_view gguf_name, int64_t& il);

struct MixShape {
    int64_t n_layer = 0;
    int64_t n_expert = 0;  // 0 for a dense model
};

// The type of a tensor whose rows hold `row` elements, in layer il, under the mix.
DType quant_mix_type(QuantMix q, const MixShape& shape, TensorRole role, int64_t il, int64_t row);

}  // namespace tandem
