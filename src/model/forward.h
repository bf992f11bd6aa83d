// The CPU forward pass: named building blocks over a batch of tokens of one sequence, and the
// per-architecture chain of them (qwen3moe.cpp). Activations are row-major [n_tokens][width].
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "model/model.h"
#include "runtime/kv_cache.h"

namespace tandem {

class Forward {
public:
    Forward(const Model& model, ThreadPool& pool);

    // Evaluates n tokens at positions kv.n_past.. and appends their keys/values to kv.
    // logits receives n_vocab floats for the last token, or for every token when all_logits.
    Status eval(KvCache& kv, const int32_t* tokens, int64_t n, std::vector<float>& logits, bool all_logits = false);

    KvCache make_cache(int64_t n_ctx) const;

private:
    // building blocks (builders.cpp)
    void embed(const int32_t* tokens, int64_t n, float* x);
    void norm(const float* x, const std::vector<float>& w, int64_t n, int64_t width, float* out);
    // y[t][r] = W[row0 + r] . x[t] for r < n_rows; rows are ne[0] wide.
    void linear(const Tensor& w, int64_t row0, int64_t n_rows, const float* x, int64_t n, float* y);
    void attention(int il, KvCache& kv, const float* x, int64_t n, float* out);
    void moe(int il, const float* x, int64_t n, float* out);
    void dense_ffn(int il, const float* x, int64_t n, float* out);
    void lm_head(const float* x, int64_t n, float* logits);

    void layer(int il, KvCache& kv, float* x, int64_t n);  // the per-architecture block

    const Model& model_;
    const HParams& hp_;
    ThreadPool& pool_;

    // scratch, grown on demand and reused across calls
    std::vector<float> cur_, delta_, tmp_, q_, k_, v_, attn_, gate_, up_, ffn_out_;
    std::vector<uint8_t> act_;  // activations converted to the weight's dot-product type
};

}  // namespace tandem
