#include <gtest/gtest.h>

#include "model/quant_mix.h"

namespace tandem {
namespace {

TEST(QuantMix, TensorRoleFromGgufName) {
    int64_t il = -1;
    EXPECT_EQ(tensor_role("token_embd.weight", il), TensorRole::embd);
    EXPECT_EQ(il, 0);
    EXPECT_EQ(tensor_role("blk.17.ffn_down_exps.weight", il), TensorRole::ffn_down);
    EXPECT_EQ(il, 17);
    EXPECT_EQ(tensor_role("blk.3.attn_k_norm.weight", il), TensorRole::norm);
    EXPECT_EQ(tensor_role("blk.3.ffn_gate_inp.weight", il), TensorRole::router);
    EXPECT_FALSE(tensor_role("blk.x.attn_q.weight", il));
    EXPECT_FALSE(tensor_role("blk.1.attn_q.bias", il));
    EXPECT_FALSE(tensor_role("blk..attn_q.weight", il));
    EXPECT_FALSE(tensor_role("rope_freqs.weight", il));
}

TEST(QuantMix, Q4KMRulesAsLlamaCpp) {
    const MixShape s{48, 128};  // Qwen3-30B-A3B
    EXPECT_EQ(quant_mix_type(QuantMix::q4_k_m, s, TensorRole::ffn_gate, 10, 2048), DType::Q4_K);
    EXPECT_EQ(quant_mix_type(QuantMix::q4_k_m, s, TensorRole::output, 0, 2048), DType::Q6_K);
    EXPECT_EQ(quant_mix_type(QuantMix::q4_k_m, s, TensorRole::ffn_down, 0, 768), DType::Q6_K);  // first layers
    EXPECT_EQ(quant_mix_type(QuantMix::q4_k_m, s, TensorRole::ffn_down, 7, 768), DType::Q4_K);
    EXPECT_EQ(quant_mix_type(QuantMix::q4_k_m, s, TensorRole::ffn_down, 8, 768), DType::Q6_K);  // (8-6) % 3 == 2
    EXPECT_EQ(quant_mix_type(QuantMix::q4_k_m, s, TensorRole::router, 0, 2048), DType::F32);
    // rows not divisible by 256 fall back
    EXPECT_EQ(quant_mix_type(QuantMix::q4_k_m, s, TensorRole::attn_q, 1, 128 + 32), DType::Q5_0);
    EXPECT_EQ(quant_mix_type(QuantMix::q4_k_m, s, TensorRole::output, 0, 128 + 32), DType::Q8_0);
    // eight experts: attn_k / attn_v Q8_0, attn_output Q5_K
    const MixShape eight{2, 8};
    EXPECT_EQ(quant_mix_type(QuantMix::q4_k_m, eight, TensorRole::attn_v, 1, 256), DType::Q8_0);
    EXPECT_EQ(quant_mix_type(QuantMix::q4_k_m, eight, TensorRole::attn_out, 1, 512), DType::Q5_K);
}

TEST(QuantMix, ExpertsQ4KMRestBf16) {
    const MixShape s{2, 8};
    for (TensorRole r : {TensorRole::embd, TensorRole::output, TensorRole::attn_q, TensorRole::attn_v})
        EXPECT_EQ(quant_mix_type(QuantMix::q4_k_m_exps_bf16, s, r, 0, 256), DType::BF16);
    EXPECT_EQ(quant_mix_type(QuantMix::q4_k_m_exps_bf16, s, TensorRole::norm, 0, 256), DType::F32);
    for (TensorRole r : {TensorRole::ffn_gate, TensorRole::ffn_up, TensorRole::ffn_down})
        for (int64_t il : {0, 1})
            EXPECT_EQ(quant_mix_type(QuantMix::q4_k_m_exps_bf16, s, r, il, 256),
                      quant_mix_type(QuantMix::q4_k_m, s, r, il, 256));
    EXPECT_EQ(*quant_mix_from_name("q4_k_m-exps-bf16"), QuantMix::q4_k_m_exps_bf16);
    EXPECT_FALSE(quant_mix_from_name("q4_k_s"));
}

}  // namespace
}  // namespace tandem
