#include "model/quant_mix.h"

#include "model/arch.h"

namespace tandem {
namespace {

// llama.cpp's rule for giving some layers more bits in the *_M mixes.
bool use_more_bits(int64_t il, int64_t n_layer) {
    return il < n_layer / 8 || il >= 7 * n_layer / 8 || (il - n_layer / 8) % 3 == 2;
}

DType fallback(DType t, int64_t row) {
    if (row % traits(t).block_size == 0) return t;
    switch (t) {
        case DType::Q4_K: return DType::Q5_0;
        case DType::Q5_K: return DType::Q5_0;  // llama.cpp uses Q5_1, which Tandem does not implement
        case DType::Q6_K: return DType::Q8_0;
        default: break;
    }
    return row % 32 == 0 ? t : DType::F16;
}

DType q4_k_m_type(const MixShape& s, TensorRole role, int64_t il) {
    const bool eight = s.n_expert == 8;
    switch (role) {
        case TensorRole::output: return DType::Q6_K;
        case TensorRole::attn_v: return eight ? DType::Q8_0 : use_more_bits(il, s.n_layer) ? DType::Q6_K : DType::Q4_K;
        case TensorRole::attn_k: return eight ? DType::Q8_0 : DType::Q4_K;
        case TensorRole::attn_out: return eight ? DType::Q5_K : DType::Q4_K;
        case TensorRole::ffn_down: return use_more_bits(il, s.n_layer) ? DType::Q6_K : DType::Q4_K;
        default: return DType::Q4_K;
    }
}

// llama.cpp's Q5_K_M: Q5_K, more bits (Q6_K) for attn_v and ffn_down in the use_more_bits layers.
DType q5_k_m_type(const MixShape& s, TensorRole role, int64_t il) {
    const bool eight = s.n_expert == 8;
    switch (role) {
        case TensorRole::output: return DType::Q6_K;
        case TensorRole::attn_v: return eight ? DType::Q8_0 : use_more_bits(il, s.n_layer) ? DType::Q6_K : DType::Q5_K;
        case TensorRole::attn_k: return eight ? DType::Q8_0 : DType::Q5_K;
        case TensorRole::ffn_down: return use_more_bits(il, s.n_layer) ? DType::Q6_K : DType::Q5_K;
        default: return DType::Q5_K;
    }
}

struct RoleName {
    const char* suffix;
    TensorRole role;
};
constexpr RoleName kLayerRoles[] = {
    {tn::kAttnNorm, TensorRole::norm},       {tn::kAttnQNorm, TensorRole::norm},
    {tn::kAttnKNorm, TensorRole::norm},      {tn::kFfnNorm, TensorRole::norm},
    {tn::kAttnQ, TensorRole::attn_q},        {tn::kAttnK, TensorRole::attn_k},
    {tn::kAttnV, TensorRole::attn_v},        {tn::kAttnOutput, TensorRole::attn_out},
    {tn::kFfnGateInp, TensorRole::router},   {tn::kFfnGateExps, TensorRole::ffn_gate},
    {tn::kFfnUpExps, TensorRole::ffn_up},    {tn::kFfnDownExps, TensorRole::ffn_down},
    {tn::kFfnGate, TensorRole::ffn_gate},    {tn::kFfnUp, TensorRole::ffn_up},
    {tn::kFfnDown, TensorRole::ffn_down},
};

}  // namespace

Result<QuantMix> quant_mix_from_name(const std::string& n) {
    for (int i = 0; i <= (int)QuantMix::q5_k_m; ++i)
        if (n == quant_mix_name((QuantMix)i)) return (QuantMix)i;
    return make_error("unknown quant '{}' (choose f32, f16, bf16, q8_0, q4_0, q5_0, q4_k_m, q5_k_m, q4_k_m-exps-bf16)", n);
}

const char* quant_mix_name(QuantMix q) {
    static constexpr const char* kNames[] = {"f32",    "f16",   "bf16", "q8_0", "q4_0", "q5_0", "q4_k_m", "q4_k_m-exps-bf16",
                                             "q5_k_m"};
    return kNames[(int)q];
}

uint32_t quant_mix_file_type(QuantMix q) {
    static constexpr uint32_t kFileType[] = {0, 1, 32, 7, 2, 8, 15, 15, 17};
    return kFileType[(int)q];
}

std::optional<TensorRole> tensor_role(std::string_view name, int64_t& il) {
    il = 0;
    if (name == tn::kTokenEmbd) return TensorRole::embd;
    if (name == tn::kOutput) return TensorRole::output;
    if (name == tn::kOutputNorm) return TensorRole::norm;
    constexpr std::string_view kBlk = "blk.", kWeight = ".weight";
    if (name.substr(0, kBlk.size()) != kBlk || name.size() <= kBlk.size() + kWeight.size() ||
        name.substr(name.size() - kWeight.size()) != kWeight)
        return std::nullopt;
    name.remove_prefix(kBlk.size());
    name.remove_suffix(kWeight.size());
    const size_t dot = name.find('.');
    if (dot == 0 || dot == std::string_view::npos || dot > 6) return std::nullopt;
    int64_t v = 0;
    for (size_t i = 0; i < dot; ++i) {
        if (name[i] < '0' || name[i] > '9') return std::nullopt;
        v = v * 10 + (name[i] - '0');
    }
    name.remove_prefix(dot + 1);
    for (const RoleName& r : kLayerRoles)
        if (name == r.suffix) {
            il = v;
            return r.role;
        }
    return std::nullopt;
}

DType quant_mix_type(QuantMix q, const MixShape& s, TensorRole role, int64_t il, int64_t row) {
    if (role == TensorRole::norm || role == TensorRole::router) return DType::F32;
    const bool expert = s.n_expert > 0 && (role == TensorRole::ffn_gate || role == TensorRole::ffn_up ||
                                           role == TensorRole::ffn_down);
    DType t = DType::F16;
    switch (q) {
        case QuantMix::f32: return DType::F32;
        case QuantMix::f16: return DType::F16;
        case QuantMix::bf16: return DType::BF16;
        case QuantMix::q8_0: t = DType::Q8_0; break;
        case QuantMix::q4_0: t = role == TensorRole::output ? DType::Q6_K : DType::Q4_0; break;
        case QuantMix::q5_0: t = role == TensorRole::output ? DType::Q6_K : DType::Q5_0; break;
        case QuantMix::q4_k_m: t = q4_k_m_type(s, role, il); break;
        case QuantMix::q5_k_m: t = q5_k_m_type(s, role, il); break;
        case QuantMix::q4_k_m_exps_bf16:
            if (!expert) return DType::BF16;
            t = q4_k_m_type(s, role, il);
            break;
    }
    if (role == TensorRole::output && row % 256 != 0 && t != DType::Q8_0 && traits(t).block_size == 256) return DType::Q8_0;
    return fallback(t, row);
}

}  // namespace tandem
