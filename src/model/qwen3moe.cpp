// Qwen3 / Qwen3-MoE: pre-norm decoder blocks with per-head q/k RMSNorm, NeoX RoPE and GQA,
// followed by a routed-expert (or dense SwiGLU) FFN.
#include <algorithm>
#include <chrono>

#include "model/forward.h"

namespace tandem {

namespace {
void add(float* x, const float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point& t) {  // and restarts t
    const auto now = Clock::now();
    const double s = std::chrono::duration<double>(now - t).count();
    t = now;
    return s;
}
}  // namespace

void Forward::layer(int il, KvCache& kv, float* x, int64_t n) {
    const LayerWeights& l = model_.layer(il);
    const int64_t nd = n * hp_.n_embd;
    float* cur = grow(cur_, (size_t)nd);
    float* delta = grow(delta_, (size_t)nd);

    auto t = Clock::now();
    norm(x, l.attn_norm, n, hp_.n_embd, cur);       // RMSNorm
    attention(il, kv, cur, n, delta);               // self-attention (q/k norm, RoPE, GQA)
    add(x, delta, nd);                              // residual
    times_.attention += seconds_since(t);

    norm(x, l.ffn_norm, n, hp_.n_embd, cur);        // RMSNorm
    if (hp_.is_moe()) moe(il, cur, n, delta);       // router + routed experts
    else dense_ffn(il, cur, n, delta);              // SwiGLU FFN
    add(x, delta, nd);                              // residual
    (hp_.is_moe() ? times_.experts : times_.dense_ffn) += seconds_since(t);
}

Status Forward::eval(KvCache& kv, const int32_t* tokens, int64_t n, std::vector<float>& logits, bool all_logits) {
    if (n <= 0) return make_error("eval: no tokens");
    if (kv.n_past + n > kv.n_ctx)
        return make_error("context full: {} tokens in cache + {} new > context size {}", kv.n_past, n, kv.n_ctx);
    for (int64_t t = 0; t < n; ++t)
        if (tokens[t] < 0 || tokens[t] >= hp_.n_vocab)
            return make_error("token id {} is out of the vocabulary (0..{})", tokens[t], hp_.n_vocab - 1);

    auto t = Clock::now();
    std::vector<float>& x = x_;
    x.resize((size_t)(n * hp_.n_embd));
    embed(tokens, n, x.data());
    times_.other += seconds_since(t);
    for (int il = 0; il < (int)hp_.n_layer; ++il) layer(il, kv, x.data(), n);
    kv.n_past += n;

    const int64_t n_out = all_logits ? n : 1;
    logits.resize((size_t)(n_out * hp_.n_vocab));
    t = Clock::now();
    lm_head(x.data() + (n - n_out) * hp_.n_embd, n_out, logits.data());
    times_.lm_head += seconds_since(t);
    return {};
}

}  // namespace tandem
