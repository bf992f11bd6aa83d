// Building blocks of the CPU forward. Each block is written plainly over the reference ops;
// parallelism is over independent output rows / heads only, so results do not depend on the
// number of threads.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/fp16.h"
#include "kernels/cpu/kernels.h"
#include "kernels/reference/ops.h"
#include "kernels/reference/quants.h"
#include "model/forward.h"

namespace tandem {

namespace {
template <typename T>
T* grow(std::vector<T>& v, size_t n) {
    if (v.size() < n) v.resize(n);
    return v.data();
}
}  // namespace

Forward::Forward(const Model& model, ThreadPool& pool) : model_(model), hp_(model.hparams()), pool_(pool) {}

KvCache Forward::make_cache(int64_t n_ctx) const { return KvCache(hp_.n_layer, n_ctx, hp_.n_kv()); }

void Forward::embed(const int32_t* tokens, int64_t n, float* x) {
    const Tensor& e = model_.token_embd();
    for (int64_t t = 0; t < n; ++t) ref::dequantize_row(e.type, e.row(tokens[t]), x + t * hp_.n_embd, hp_.n_embd);
}

void Forward::norm(const float* x, const std::vector<float>& w, int64_t n, int64_t width, float* out) {
    for (int64_t t = 0; t < n; ++t) ref::rms_norm(x + t * width, w.data(), width, hp_.rms_eps, out + t * width);
}

void Forward::linear(const Tensor& w, int64_t row0, int64_t n_rows, const float* x, int64_t n, float* y) {
    const int64_t in = w.ne[0];
    const DType vdt = ref::vec_dot_type(w.type);
    const size_t conv_bytes = row_bytes(vdt, in);
    uint8_t* conv = grow(act_, conv_bytes * (size_t)n);
    const cpu::KernelTable& k = cpu::kernels();
    for (int64_t t = 0; t < n; ++t) k.convert[(int)vdt](x + t * in, conv + (size_t)t * conv_bytes, in);
    const cpu::GemvFn gemv = k.gemv[(int)w.type];
    pool_.parallel_for(n_rows, 16, [&](int64_t r0, int64_t r1) {
        for (int64_t t = 0; t < n; ++t)
            gemv(w.row(row0 + r0), w.row_bytes, r1 - r0, in, conv + (size_t)t * conv_bytes, y + t * n_rows + r0);
    });
}

void Forward::attention(int il, KvCache& kv, const float* x, int64_t n, float* out) {
    const LayerWeights& l = model_.layer(il);
    const int64_t hd = hp_.head_dim, n_q = hp_.n_q(), n_kv = hp_.n_kv();
    const int64_t group = hp_.n_head / hp_.n_head_kv;
    float* q = grow(q_, (size_t)(n * n_q));
    float* k = grow(k_, (size_t)(n * n_kv));
    float* v = grow(v_, (size_t)(n * n_kv));
    linear(l.wq, 0, n_q, x, n, q);
    linear(l.wk, 0, n_kv, x, n, k);
    linear(l.wv, 0, n_kv, x, n, v);

    const int64_t pos0 = kv.n_past;
    for (int64_t t = 0; t < n; ++t) {
        for (int64_t h = 0; h < hp_.n_head; ++h)
            ref::rms_norm(q + t * n_q + h * hd, l.attn_q_norm.data(), hd, hp_.rms_eps, q + t * n_q + h * hd);
        for (int64_t h = 0; h < hp_.n_head_kv; ++h)
            ref::rms_norm(k + t * n_kv + h * hd, l.attn_k_norm.data(), hd, hp_.rms_eps, k + t * n_kv + h * hd);
        ref::rope_neox(q + t * n_q, hp_.n_head, hd, pos0 + t, hp_.rope_base);
        ref::rope_neox(k + t * n_kv, hp_.n_head_kv, hd, pos0 + t, hp_.rope_base);
        uint16_t* kc = kv.k_at(il, pos0 + t);
        uint16_t* vc = kv.v_at(il, pos0 + t);
        for (int64_t i = 0; i < n_kv; ++i) {
            kc[i] = fp32_to_fp16(k[t * n_kv + i]);
            vc[i] = fp32_to_fp16(v[t * n_kv + i]);
        }
    }

    // causal attention: token t sees positions [0, pos0 + t]
    float* o = grow(attn_, (size_t)(n * n_q));
    const int64_t n_ctx_max = pos0 + n;
    const float scale = 1.0f / std::sqrt((float)hd);
    pool_.parallel_for(n * hp_.n_head, 1, [&](int64_t b, int64_t e) {
        std::vector<float> scores((size_t)n_ctx_max);
        for (int64_t job = b; job < e; ++job) {
            const int64_t t = job / hp_.n_head, h = job % hp_.n_head, hk = h / group;
            const float* qh = q + t * n_q + h * hd;
            const int64_t n_pos = pos0 + t + 1;
            for (int64_t p = 0; p < n_pos; ++p) {
                const uint16_t* kp = kv.k_at(il, p) + hk * hd;
                float s = 0.0f;
                for (int64_t i = 0; i < hd; ++i) s += qh[i] * fp16_to_fp32(kp[i]);
                scores[(size_t)p] = s * scale;
            }
            ref::softmax(scores.data(), n_pos);
            float* oh = o + t * n_q + h * hd;
            std::fill(oh, oh + hd, 0.0f);
            for (int64_t p = 0; p < n_pos; ++p) {
                const uint16_t* vp = kv.v_at(il, p) + hk * hd;
                const float s = scores[(size_t)p];
                for (int64_t i = 0; i < hd; ++i) oh[i] += s * fp16_to_fp32(vp[i]);
            }
        }
    });
    linear(l.wo, 0, hp_.n_embd, o, n, out);
}

void Forward::moe(int il, const float* x, int64_t n, float* out) {
    const LayerWeights& l = model_.layer(il);
    const int64_t D = hp_.n_embd, F = hp_.n_ff_exp, E = hp_.n_expert, K = hp_.n_expert_used;

    // router: softmax over all experts, top-k, renormalise the k weights
    std::vector<float> probs((size_t)(n * E));
    linear(l.ffn_gate_inp, 0, E, x, n, probs.data());
    std::vector<std::vector<std::pair<int64_t, float>>> by_expert((size_t)E);  // expert -> (token, weight)
    std::vector<int64_t> idx((size_t)E);
    for (int64_t t = 0; t < n; ++t) {
        float* p = probs.data() + t * E;
        ref::softmax(p, E);
        std::iota(idx.begin(), idx.end(), 0);
        std::partial_sort(idx.begin(), idx.begin() + K, idx.end(),
                          [&](int64_t a, int64_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
        float sum = 0.0f;
        for (int64_t j = 0; j < K; ++j) sum += p[idx[(size_t)j]];
        for (int64_t j = 0; j < K; ++j) by_expert[(size_t)idx[(size_t)j]].emplace_back(t, p[idx[(size_t)j]] / sum);
    }

    // experts: tokens grouped by expert; gate/up, SwiGLU, down, weighted sum
    std::fill(out, out + n * D, 0.0f);
    for (int64_t e = 0; e < E; ++e) {
        const auto& toks = by_expert[(size_t)e];
        if (toks.empty()) continue;
        const int64_t m = (int64_t)toks.size();
        float* xs = grow(tmp_, (size_t)(m * D));
        for (int64_t j = 0; j < m; ++j) std::copy_n(x + toks[(size_t)j].first * D, D, xs + j * D);
        float* g = grow(gate_, (size_t)(m * F));
        float* u = grow(up_, (size_t)(m * F));
        linear(l.ffn_gate_exps, e * F, F, xs, m, g);
        linear(l.ffn_up_exps, e * F, F, xs, m, u);
        ref::swiglu(g, u, g, m * F);
        float* d = grow(ffn_out_, (size_t)(m * D));
        linear(l.ffn_down_exps, e * D, D, g, m, d);
        for (int64_t j = 0; j < m; ++j) {
            const auto [t, w] = toks[(size_t)j];
            for (int64_t i = 0; i < D; ++i) out[t * D + i] += w * d[j * D + i];
        }
    }
}

void Forward::dense_ffn(int il, const float* x, int64_t n, float* out) {
    const LayerWeights& l = model_.layer(il);
    const int64_t F = hp_.n_ff;
    float* g = grow(gate_, (size_t)(n * F));
    float* u = grow(up_, (size_t)(n * F));
    linear(l.ffn_gate, 0, F, x, n, g);
    linear(l.ffn_up, 0, F, x, n, u);
    ref::swiglu(g, u, g, n * F);
    linear(l.ffn_down, 0, hp_.n_embd, g, n, out);
}

void Forward::lm_head(const float* x, int64_t n, float* logits) {
    float* xn = grow(tmp_, (size_t)(n * hp_.n_embd));
    norm(x, model_.output_norm(), n, hp_.n_embd, xn);
    linear(model_.output(), 0, hp_.n_vocab, xn, n, logits);
}

}  // namespace tandem
