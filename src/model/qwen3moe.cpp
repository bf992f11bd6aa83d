// Qwen3 / Qwen3-MoE: pre-norm decoder blocks with per-head q/k RMSNorm, NeoX RoPE and GQA,
// followed by a routed-expert (or dense SwiGLU) FFN.
#include <algorithm>
#include <chrono>

#include "kernels/reference/ops.h"
#include "model/forward.h"

namespace tandem {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point& t) {  // and restarts t
    const auto now = Clock::now();
    const double s = std::chrono::duration<double>(now - t).count();
    t = now;
    return s;
}
}  // namespace

float* Forward::attention_block(int il, float* x, int64_t n) {
    const LayerWeights& l = model_.layer(il);
    const int64_t nd = n * hp_.n_embd;
    float* cur = grow(cur_, (size_t)nd);
    float* delta = grow(delta_, (size_t)nd);
    norm(x, l.attn_norm, n, hp_.n_embd, cur, &l.attn_norm_bias);  // RMSNorm (+ bias)
    attention(il, cur, n, delta);                   // self-attention (q/k norm, RoPE, GQA)
    add(x, delta, n);                               // residual
    norm(x, l.ffn_norm, n, hp_.n_embd, cur, &l.ffn_norm_bias);    // RMSNorm (+ bias): the FFN's input
    return cur;
}

void Forward::rope_table(int64_t n) {
    const int64_t hd = hp_.head_dim;
    float* cs = grow(rope_cs_, (size_t)(n * hd));
    for_tokens(n, [&](int64_t i) { ref::rope_neox_table(hd, tok_pos_[(size_t)i], rope_, cs + i * hd); });
}

void Forward::logits_of_rows(const float* x, const std::vector<int64_t>& out_rows, float* logits) {
    const int64_t n_out = (int64_t)out_rows.size(), D = hp_.n_embd;
    float* xo = grow(xout_, (size_t)(n_out * D));
    for (int64_t i = 0; i < n_out; ++i) std::copy_n(x + out_rows[(size_t)i] * D, D, xo + i * D);
    lm_head(xo, n_out, logits);
}

void Forward::layer(int il, float* x, int64_t n) {
    auto t = Clock::now();
    float* cur = attention_block(il, x, n);
    float* delta = delta_.data();  // (attention_block grew it to n rows)
    times_.attention += seconds_since(t);

    if (hp_.is_moe()) moe(il, cur, n, delta);       // router + routed experts
    else dense_ffn(il, cur, n, delta);              // SwiGLU FFN
    add(x, delta, n);                               // residual
    (hp_.is_moe() ? times_.experts : times_.dense_ffn) += seconds_since(t);
}

Status Forward::run(const std::vector<int32_t>& tokens, const std::vector<int64_t>& out_rows,
                    std::vector<float>& logits) {
    const int64_t n = (int64_t)tokens.size();
    for (int64_t t = 0; t < n; ++t)
        if (tokens[(size_t)t] < 0 || tokens[(size_t)t] >= hp_.n_vocab)
            return make_error("token id {} is out of the vocabulary (0..{})", tokens[(size_t)t], hp_.n_vocab - 1);
    if (device_) return run_hybrid(tokens, out_rows, logits);
    if (!pool_kv_->has_storage()) return make_error("eval: a KV pool without storage (made for a hybrid forward)");

    auto t = Clock::now();
    float* x = grow(x_, (size_t)(n * hp_.n_embd));
    embed(tokens.data(), n, x);
    rope_table(n);
    times_.other += seconds_since(t);
    for (int il = 0; il < (int)hp_.n_layer; ++il) layer(il, x, n);

    // the rows whose logits are wanted, gathered, then one pass over the LM head
    logits.resize(out_rows.size() * (size_t)hp_.n_vocab);
    if (out_rows.empty()) return {};
    t = Clock::now();
    logits_of_rows(x, out_rows, logits.data());
    times_.lm_head += seconds_since(t);
    return {};
}

Status Forward::run_hybrid(const std::vector<int32_t>& tokens, const std::vector<int64_t>& out_rows,
                           std::vector<float>& logits) {
    DeviceLayers& dev = *device_;
    const int64_t n = (int64_t)tokens.size(), E = hp_.n_expert, K = hp_.n_expert_used;
    auto t = Clock::now();
    TANDEM_TRY(dev.make_pool(pool_kv_->page_size(), pool_kv_->n_pages()));
    TANDEM_TRY(dev.begin(tokens, tok_pos_, tok_pages_));
    times_.other += seconds_since(t);
    for (int il = 0; il < (int)hp_.n_layer; ++il) {
        if (!hp_.is_moe()) {
            TANDEM_TRY(dev.dense_layer(il));  // (attention and FFN in one device call)
            times_.dense_ffn += seconds_since(t);
            continue;
        }
        // attention block, FFN norm and router on the device (timed as attention, with the wait)
        TANDEM_ASSIGN(const DeviceLayers::Routed r, dev.attention_and_route(il));
        times_.attention += seconds_since(t);
        // the routed pairs: the device's share (--gpu-experts) there, queued, the rest here
        std::vector<Slot>& slots = moe_slots_;
        slots.clear();
        dev_pairs_.clear();
        // (a long prefill batch with --gpu-prefill: all of them there, the layer's experts uploaded)
        const bool streamed = dev.stream_experts_from() > 0 && n >= dev.stream_experts_from();
        if (streamed) TANDEM_TRY(dev.stream_experts(il));
        const std::vector<uint8_t>* on_dev = streamed ? nullptr : dev.experts_on_device(il);
        for (int64_t i = 0; i < n * K; ++i) {
            const int32_t e = r.ids[i];
            if (e < 0 || e >= E) return make_error("{}: layer {}: router chose expert {} of {}", dev.name(), il, e, E);
            if (count_experts_) ++expert_counts_[(size_t)(il * E + e)];
            if (streamed || (on_dev && (*on_dev)[(size_t)e])) dev_pairs_.push_back({(int32_t)(i / K), e, r.weights[i]});
            else slots.push_back({e, i / K, r.weights[i]});
        }
        if (!dev_pairs_.empty()) TANDEM_TRY(dev.run_device_experts(dev_pairs_));
        if (!streamed) moe_experts(il, r.x, n, r.out);  // the routed experts, here
        times_.experts += seconds_since(t);
        TANDEM_TRY(dev.add_ffn(/*with_cpu_share=*/!streamed));
        times_.other += seconds_since(t);
    }
    logits.resize(out_rows.size() * (size_t)hp_.n_vocab);
    if (out_rows.empty()) return {};
    TANDEM_TRY(dev.logits(out_rows, logits.data()));
    times_.lm_head += seconds_since(t);
    return {};
}

Status Forward::eval(KvCache& kv, const int32_t* tokens, int64_t n, std::vector<float>& logits, bool all_logits) {
    if (n <= 0) return make_error("eval: no tokens");
    if (kv.n_past + n > kv.n_ctx)
        return make_error("context full: {} tokens in cache + {} new > context size {}", kv.n_past, n, kv.n_ctx);
    pool_kv_ = &kv.pool;
    tokens_.assign(tokens, tokens + n);
    tok_pos_.resize((size_t)n);
    tok_pages_.assign((size_t)n, kv.pages.data());
    out_rows_.clear();
    for (int64_t t = 0; t < n; ++t) {
        tok_pos_[(size_t)t] = kv.n_past + t;
        if (all_logits || t == n - 1) out_rows_.push_back(t);
    }
    TANDEM_TRY(run(tokens_, out_rows_, logits));
    kv.n_past += n;
    return {};
}

Status Forward::eval_batch(KvPool& pool, const std::vector<SeqChunk>& chunks, std::vector<float>& logits) {
    pool_kv_ = &pool;
    tokens_.clear();
    tok_pos_.clear();
    tok_pages_.clear();
    out_rows_.clear();
    for (const SeqChunk& c : chunks) {
        if (c.n <= 0) return make_error("eval: a sequence with no tokens");
        const int64_t need = (c.pos0 + c.n + pool.page_size() - 1) / pool.page_size();
        if (need > c.n_pages)
            return make_error("eval: {} positions need {} pages, the block table has {}", c.pos0 + c.n, need, c.n_pages);
        for (int64_t i = 0; i < c.n_pages; ++i)
            if (c.pages[i] < 0 || c.pages[i] >= pool.n_pages()) return make_error("eval: page {} out of range", c.pages[i]);
        for (int64_t t = 0; t < c.n; ++t) {
            if (c.all_logits) out_rows_.push_back((int64_t)tokens_.size());
            tokens_.push_back(c.tokens[t]);
            tok_pos_.push_back(c.pos0 + t);
            tok_pages_.push_back(c.pages);
        }
        if (c.want_logits && !c.all_logits) out_rows_.push_back((int64_t)tokens_.size() - 1);
    }
    if (tokens_.empty()) return make_error("eval: empty batch");
    return run(tokens_, out_rows_, logits);
}

}  // namespace tandem
