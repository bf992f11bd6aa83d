// Building blocks of the CPU forward. Each block is written plainly over the reference ops;
// parallelism is over independent output rows / heads only, so results do not depend on the
// number of threads.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <functional>
#include <numeric>

#include "core/fp16.h"
#include "kernels/cpu/kernels.h"
#include "kernels/reference/attention.h"
#include "kernels/reference/ops.h"
#include "kernels/reference/packed.h"
#include "kernels/reference/quants.h"
#include "model/forward.h"

namespace tandem {

Forward::Forward(const Model& model, ThreadPool& pool, DeviceLayers* device)
    : model_(model), hp_(model.hparams()), rope_(hp_.rope_freqs()), pool_(pool), device_(device) {}

KvCache Forward::make_cache(int64_t n_ctx) const {
    return KvCache(hp_.n_layer, n_ctx, hp_.n_head_kv, hp_.head_dim, /*with_storage=*/!device_);
}

KvPool Forward::make_pool(int64_t page_size, int64_t n_pages) const {
    return KvPool(hp_.n_layer, hp_.n_head_kv, hp_.head_dim, page_size, n_pages, /*with_storage=*/!device_);
}

void Forward::for_tokens(int64_t n, const std::function<void(int64_t)>& fn) {
    if (n < 4) {  // decode: not worth waking the pool
        for (int64_t t = 0; t < n; ++t) fn(t);
        return;
    }
    pool_.parallel_for(n, 1, [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t) fn(t);
    });
}

void Forward::add(float* x, const float* y, int64_t n) {
    const cpu::AxpyFn axpy = cpu::kernels().axpy;
    const int64_t D = hp_.n_embd;
    for_tokens(n, [&](int64_t t) { axpy(1.0f, y + t * D, x + t * D, D); });
}

void Forward::embed(const int32_t* tokens, int64_t n, float* x) {
    const Tensor& e = model_.token_embd();
    for (int64_t t = 0; t < n; ++t) ref::dequantize_row(e.type, e.row(tokens[t]), x + t * hp_.n_embd, hp_.n_embd);
}

void Forward::norm(const float* x, const std::vector<float>& w, int64_t n, int64_t width, float* out,
                   const std::vector<float>* bias) {
    const cpu::KernelTable& k = cpu::kernels();
    const bool b = bias && !bias->empty();
    for_tokens(n, [&](int64_t t) {
        k.rms_norm(x + t * width, w.data(), width, hp_.rms_eps, out + t * width);
        if (b) k.axpy(1.0f, bias->data(), out + t * width, width);
    });
}

void Forward::linear(const Tensor& w, int64_t row0, int64_t n_rows, const float* x, int64_t n, float* y) {
    if (observer_) observer_(w, x, n);
    if (w.int8) {
        linear_i8(w, row0, n_rows, x, n, y);
        return;
    }
    const int64_t in = w.ne[0];
    const DType vdt = ref::vec_dot_type(w.type);
    const size_t conv_bytes = row_bytes(vdt, in);
    uint8_t* conv = grow(act_, conv_bytes * (size_t)n);
    const cpu::KernelTable& k = cpu::kernels();
    for_tokens(n, [&](int64_t t) { k.convert[(int)vdt](x + t * in, conv + (size_t)t * conv_bytes, in); });
    if (w.packed && row0 % ref::kPackRows == 0 && n_rows % ref::kPackRows == 0) {
        const cpu::PackedGemmFn pg = k.packed_gemm[(int)w.type];
        const void** acts = grow(act_ptrs_, (size_t)n);
        for (int64_t t = 0; t < n; ++t) acts[t] = conv + (size_t)t * conv_bytes;
        const uint8_t* w0 = w.packed + (size_t)(row0 / ref::kPackRows) * w.packed_group_bytes;
        // pairs of groups (grain 2): the prefill tiles take two groups at a time
        pool_.parallel_for(n_rows / ref::kPackRows, 2, [&](int64_t g0, int64_t g1) {
            pg(w0 + (size_t)g0 * w.packed_group_bytes, g1 - g0, in, acts, n, y + g0 * ref::kPackRows, n_rows);
        });
        return;
    }
    if (n == 1) {
        const cpu::GemvFn gemv = k.gemv[(int)w.type];
        pool_.parallel_for(n_rows, 16, [&](int64_t r0, int64_t r1) {
            gemv(w.row(row0 + r0), w.row_bytes, r1 - r0, in, conv, y + r0);
        });
        return;
    }
    const cpu::GemmFn gemm = k.gemm[(int)w.type];
    pool_.parallel_for(n_rows, 16, [&](int64_t r0, int64_t r1) {
        std::vector<const void*> acts((size_t)n);
        std::vector<float*> ys((size_t)n);
        for (int64_t t = 0; t < n; ++t) {
            acts[(size_t)t] = conv + (size_t)t * conv_bytes;
            ys[(size_t)t] = y + t * n_rows + r0;
        }
        gemm(w.row(row0 + r0), w.row_bytes, r1 - r0, in, acts.data(), n, ys.data());
    });
}

// y_i[t][r] = W_i[r] . x[t] for three matrices of the same input width (q, k, v). When all three
// are packed with one activation type, x is converted once and one parallel region covers every
// group of the three (two fewer thread-pool round trips per layer).
void Forward::linear3(const std::array<const Tensor*, 3>& ws, const std::array<float*, 3>& ys, const float* x, int64_t n) {
    const cpu::KernelTable& k = cpu::kernels();
    const DType vdt = ref::vec_dot_type(ws[0]->type);
    bool fused = true;
    for (const Tensor* w : ws)
        fused = fused && w->packed && ref::vec_dot_type(w->type) == vdt && w->ne[0] == ws[0]->ne[0] &&
                w->n_rows() % ref::kPackRows == 0;
    if (!fused) {
        for (int i = 0; i < 3; ++i) linear(*ws[(size_t)i], 0, ws[(size_t)i]->n_rows(), x, n, ys[(size_t)i]);
        return;
    }
    if (observer_)
        for (const Tensor* w : ws) observer_(*w, x, n);
    const int64_t in = ws[0]->ne[0];
    const size_t conv_bytes = row_bytes(vdt, in);
    uint8_t* conv = grow(act_, conv_bytes * (size_t)n);
    for_tokens(n, [&](int64_t t) { k.convert[(int)vdt](x + t * in, conv + (size_t)t * conv_bytes, in); });
    const void** acts = grow(act_ptrs_, (size_t)n);
    for (int64_t t = 0; t < n; ++t) acts[t] = conv + (size_t)t * conv_bytes;
    int64_t first[4] = {0};  // groups numbered across the three matrices
    for (int i = 0; i < 3; ++i) first[i + 1] = first[i] + ws[(size_t)i]->n_rows() / ref::kPackRows;
    pool_.parallel_for(first[3], 2, [&](int64_t b, int64_t e) {  // pairs of groups, as in linear()
        for (int i = 0; i < 3; ++i) {
            const int64_t g0 = std::max(b, first[i]) - first[i], g1 = std::min(e, first[i + 1]) - first[i];
            if (g1 <= g0) continue;
            const Tensor& w = *ws[(size_t)i];
            k.packed_gemm[(int)w.type](w.packed + (size_t)g0 * w.packed_group_bytes, g1 - g0, in, acts, n,
                                       ys[(size_t)i] + g0 * ref::kPackRows, w.n_rows());
        }
    });
}

void Forward::attention(int il, const float* x, int64_t n, float* out) {
    const LayerWeights& l = model_.layer(il);
    const int64_t hd = hp_.head_dim, n_q = hp_.n_q(), n_kv = hp_.n_kv();
    const int64_t group = hp_.n_head / hp_.n_head_kv;
    KvPool& pool = *pool_kv_;
    const int64_t ps = pool.page_size();
    float* q = grow(q_, (size_t)(n * n_q));
    float* k = grow(k_, (size_t)(n * n_kv));
    float* v = grow(v_, (size_t)(n * n_kv));
    linear3({&l.wq, &l.wk, &l.wv}, {q, k, v}, x, n);

    const cpu::RmsNormFn rms = cpu::kernels().rms_norm;
    int64_t n_ctx_max = 0;
    for (int64_t t = 0; t < n; ++t) n_ctx_max = std::max(n_ctx_max, tok_pos_[(size_t)t] + 1);
    for_tokens(n, [&](int64_t t) {
        const int64_t pos = tok_pos_[(size_t)t];
        // decode: the cache lines this token's key and value go to, asked for before the norms
        // and RoPE below (the transposed key touches one line per dimension, 512 lines a token
        // on the A3B shape, each a miss after a step's weights went through the caches: the
        // writes took 22 us a layer, 2 us with this; one stream's norm + RoPE + KV write 28 ->
        // 17 us a layer, four streams' 63 -> 38 us)
        if (n <= 16) {
            const int32_t page = tok_pages_[(size_t)t][pos / ps];
            for (int64_t hk = 0; hk < hp_.n_head_kv; ++hk) {
                const uint16_t* kc = pool.k(page, il, hk) + pos % ps;
                for (int64_t i = 0; i < hd; ++i) __builtin_prefetch(kc + i * ps, 1, 3);
                const uint16_t* vc = pool.v(page, il, hk) + (pos % ps) * hd;
                for (int64_t i = 0; i < hd; i += 32) __builtin_prefetch(vc + i, 1, 3);
            }
        }
        for (int64_t h = 0; h < hp_.n_head; ++h)
            rms(q + t * n_q + h * hd, l.attn_q_norm.data(), hd, hp_.rms_eps, q + t * n_q + h * hd);
        for (int64_t h = 0; h < hp_.n_head_kv; ++h)
            rms(k + t * n_kv + h * hd, l.attn_k_norm.data(), hd, hp_.rms_eps, k + t * n_kv + h * hd);
        ref::rope_neox_apply(q + t * n_q, hp_.n_head, hd, rope_cs_.data() + t * hd);
        ref::rope_neox_apply(k + t * n_kv, hp_.n_head_kv, hd, rope_cs_.data() + t * hd);
        const int32_t page = tok_pages_[(size_t)t][pos / ps];
        for (int64_t hk = 0; hk < hp_.n_head_kv; ++hk) {
            uint16_t* kc = pool.k(page, il, hk) + pos % ps;  // transposed: dimension i at i * ps
            uint16_t* vc = pool.v(page, il, hk) + (pos % ps) * hd;
            for (int64_t i = 0; i < hd; ++i) {
                kc[i * ps] = fp32_to_fp16(k[t * n_kv + hk * hd + i]);
                vc[i] = fp32_to_fp16(v[t * n_kv + hk * hd + i]);
            }
        }
    });

    // causal attention: the token at position p sees positions [0, p] of its own sequence, page by page
    float* o = grow(attn_, (size_t)(n * n_q));
    const float scale = 1.0f / std::sqrt((float)hd);
    const cpu::KernelTable& kt = cpu::kernels();
    if (kt.attention && hd % 16 == 0) {
        attend(il, q, n, o);
        linear(l.wo, 0, hp_.n_embd, o, n, out);
        return;
    }
    // the AVX-512 kernels need head_dim % 16 == 0; others use the reference
    const cpu::KernelTable& ka = hd % 16 == 0 ? kt : cpu::kernels_for(cpu::Isa::generic);
    pool_.parallel_for(n * hp_.n_head, 1, [&](int64_t b, int64_t e) {
        // each thread's own scores (the chunks are as many as the pool makes them: a slot per
        // chunk taken round-robin could be shared by two running chunks)
        thread_local std::vector<float> scores_tl;
        float* scores = grow(scores_tl, (size_t)n_ctx_max);
        for (int64_t job = b; job < e; ++job) {
            const int64_t t = job / hp_.n_head, h = job % hp_.n_head, hk = h / group;
            const int64_t n_pos = tok_pos_[(size_t)t] + 1;
            const int32_t* pages = tok_pages_[(size_t)t];
            const float* qh = q + t * n_q + h * hd;
            for (int64_t p0 = 0; p0 < n_pos; p0 += ps)
                ka.attn_scores(qh, pool.k(pages[p0 / ps], il, hk), ps, std::min(ps, n_pos - p0), hd, scores + p0);
            for (int64_t p = 0; p < n_pos; ++p) scores[p] *= scale;
            ref::softmax(scores, n_pos);
            float* oh = o + t * n_q + h * hd;
            std::fill(oh, oh + hd, 0.0f);
            for (int64_t p0 = 0; p0 < n_pos; p0 += ps)
                ka.attn_values(scores + p0, pool.v(pages[p0 / ps], il, hk), hd, std::min(ps, n_pos - p0), hd, oh);
        }
    });
    linear(l.wo, 0, hp_.n_embd, o, n, out);
}

// The attention kernel's jobs: per run of consecutive tokens of one sequence, per KV head (its
// GQA group of query heads), per block of kTokBlock tokens. A lone token with a long context
// (decode) is split over its positions into parts that run in parallel and are merged
// (flash-decoding), so that decode has work for every thread.
void Forward::attend(int il, const float* q, int64_t n, float* o) {
    constexpr int64_t kTokBlock = 32, kSplitFrom = 1024, kPart = 512, kMaxParts = 16;
    KvPool& pool = *pool_kv_;
    const int64_t hd = hp_.head_dim, n_q = hp_.n_q();
    const int64_t group = hp_.n_head / hp_.n_head_kv;
    const float scale = 1.0f / std::sqrt((float)hd);
    std::vector<ref::AttnJob>& jobs = attn_jobs_;
    std::vector<int64_t>& part_row = attn_part_row_;
    std::vector<AttnMerge>& merges = attn_merges_;
    jobs.clear();
    part_row.clear();
    merges.clear();
    size_t part_rows = 0;  // rows of split parts (outputs and lse in attn_parts_, pointers set below)
    for (int64_t t = 0; t < n;) {
        int64_t e = t + 1;
        while (e < n && tok_pages_[(size_t)e] == tok_pages_[(size_t)t] && tok_pos_[(size_t)e] == tok_pos_[(size_t)e - 1] + 1) ++e;
        for (int64_t tb = t; tb < e; tb += kTokBlock) {
            const int64_t nt = std::min(kTokBlock, e - tb), pos0 = tok_pos_[(size_t)tb];
            for (int64_t hk = 0; hk < hp_.n_head_kv; ++hk) {
                ref::AttnJob j;
                j.q = q + tb * n_q + hk * group * hd;
                j.q_stride = n_q;
                j.o = o + tb * n_q + hk * group * hd;
                j.o_stride = n_q;
                j.n_tok = nt;
                j.n_head = group;
                j.hd = hd;
                j.pos0 = pos0;
                j.p_end = pos0 + nt;
                j.k = pool.k(0, il, hk);
                j.v = pool.v(0, il, hk);
                j.pages = tok_pages_[(size_t)tb];
                j.page_size = pool.page_size();
                j.page_stride = pool.page_stride();
                j.kv_stride = hd;  // values; keys are transposed (AttnJob)
                j.scale = scale;
                // parts of at least kPart positions, about 4 jobs per thread over the KV heads
                // (each part starts cold: a part's first keys and values wait on DRAM)
                const int64_t parts = std::min({kMaxParts, (j.p_end + kPart - 1) / kPart,
                                                (4 * pool_.n_threads() + hp_.n_head_kv - 1) / hp_.n_head_kv});
                if (nt > 1 || j.p_end < kSplitFrom || parts < 2) {
                    jobs.push_back(j);
                    part_row.push_back(-1);
                    continue;
                }
                merges.push_back({jobs.size(), parts, j.o});
                for (int64_t i = 0; i < parts; ++i) {
                    ref::AttnJob p = j;
                    p.p_begin = j.p_end * i / parts;
                    p.p_end = j.p_end * (i + 1) / parts;
                    p.o_stride = group * hd;
                    jobs.push_back(p);
                    part_row.push_back((int64_t)part_rows);
                    part_rows += (size_t)group;
                }
            }
        }
        t = e;
    }
    float* part_o = grow(attn_parts_, part_rows * (size_t)(hd + 1));
    float* part_lse = part_o + part_rows * (size_t)hd;
    for (size_t i = 0; i < jobs.size(); ++i)
        if (part_row[i] >= 0) {
            jobs[i].o = part_o + part_row[i] * hd;
            jobs[i].lse = part_lse + part_row[i];
        }
    // last jobs first: a prompt's later token blocks see more positions (causal), so handing
    // them out first leaves the cheap ones to even out the threads at the end
    const cpu::AttentionFn attn = cpu::kernels().attention;
    const int64_t n_jobs = (int64_t)jobs.size();
    pool_.parallel_for(n_jobs, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) attn(jobs[(size_t)(n_jobs - 1 - i)]);
    });
    for (const AttnMerge& m : merges) {
        const float* op[kMaxParts];
        const float* lp[kMaxParts];
        for (int64_t i = 0; i < m.parts; ++i) {
            op[i] = jobs[m.first_job + (size_t)i].o;
            lp[i] = jobs[m.first_job + (size_t)i].lse;
        }
        ref::merge_attention(op, lp, (int)m.parts, group, hd, m.out);
    }
}

// Rows [row, row + nr) of an expert stack (all inside one expert) for the routed slots [s0, s1):
// y[s * ldy + r]. Packed kernels take all slots at once; int8 rows go through rows_i8; the GGUF
// blocks take one token (decode) or a GEMM over the slots.
void Forward::expert_rows(const Tensor& w, int64_t row, int64_t nr, int64_t in, const ExpertActs& a, int64_t s0,
                          int64_t s1, float* y, int64_t ldy) {
    const cpu::KernelTable& k = cpu::kernels();
    if (w.int8) {
        rows_i8(w, row, nr, a.q, a.scale, a.sum, s0, s1, y, ldy);
        return;
    }
    if (w.packed && row % ref::kPackRows == 0 && nr % ref::kPackRows == 0) {
        const uint8_t* w0 = w.packed + (size_t)(row / ref::kPackRows) * w.packed_group_bytes;
        k.packed_gemm[(int)w.type](w0, nr / ref::kPackRows, in, a.conv + s0, s1 - s0, y + s0 * ldy, ldy);
        return;
    }
    if (s1 - s0 == 1) {
        k.gemv[(int)w.type](w.row(row), w.row_bytes, nr, in, a.conv[s0], y + s0 * ldy);
        return;
    }
    thread_local std::vector<float*> ys;
    ys.resize((size_t)(s1 - s0));
    for (int64_t s = s0; s < s1; ++s) ys[(size_t)(s - s0)] = y + s * ldy;
    k.gemm[(int)w.type](w.row(row), w.row_bytes, nr, in, a.conv + s0, s1 - s0, ys.data());
}

void Forward::route(int il, const float* x, int64_t n) {
    const LayerWeights& l = model_.layer(il);
    const int64_t E = hp_.n_expert, K = hp_.n_expert_used;
    // softmax over all experts, top-k (ties to the lower index), the k weights renormalised
    float* probs = grow(router_, (size_t)(n * E));
    linear(l.ffn_gate_inp, 0, E, x, n, probs);
    std::vector<int64_t>& idx = moe_idx_;
    idx.resize((size_t)E);
    std::vector<Slot>& slots = moe_slots_;  // one (expert, token, weight) per routed pair
    slots.clear();
    for (int64_t t = 0; t < n; ++t) {
        float* p = probs + t * E;
        ref::softmax(p, E);
        std::iota(idx.begin(), idx.end(), 0);
        std::partial_sort(idx.begin(), idx.begin() + K, idx.end(),
                          [&](int64_t a, int64_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
        float sum = 0.0f;
        for (int64_t j = 0; j < K; ++j) sum += p[idx[(size_t)j]];
        for (int64_t j = 0; j < K; ++j) slots.push_back({idx[(size_t)j], t, p[idx[(size_t)j]] / sum});
    }
}

void Forward::moe(int il, const float* x, int64_t n, float* out) {
    const auto t_router = std::chrono::steady_clock::now();
    route(il, x, n);
    if (count_experts_)
        for (const Slot& sl : moe_slots_) ++expert_counts_[(size_t)(il * hp_.n_expert + sl.expert)];
    // (router time is reported apart from the experts': it is subtracted from the layer's FFN time)
    const double router_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_router).count();
    times_.router += router_s;
    times_.experts -= router_s;
    moe_experts(il, x, n, out);
}

void Forward::moe_experts(int il, const float* x, int64_t n, float* out) {
    const LayerWeights& l = model_.layer(il);
    const int64_t D = hp_.n_embd, F = hp_.n_ff_exp, K = hp_.n_expert_used;
    const cpu::KernelTable& k = cpu::kernels();
    std::vector<Slot>& slots = moe_slots_;
    // tokens grouped by expert: slots of one expert are contiguous
    std::stable_sort(slots.begin(), slots.end(), [](const Slot& a, const Slot& b) { return a.expert < b.expert; });
    std::vector<std::pair<int64_t, int64_t>>& groups = moe_groups_;  // [first slot, end slot)
    groups.clear();
    for (size_t s = 0; s < slots.size(); ++s)
        if (s == 0 || slots[s].expert != slots[s - 1].expert) groups.emplace_back((int64_t)s, (int64_t)s + 1);
        else groups.back().second = (int64_t)s + 1;
    const int64_t n_slots = (int64_t)slots.size(), n_groups = (int64_t)groups.size();
    if (n_slots == 0) {  // (hybrid: the device runs every pair of this batch)
        std::fill(out, out + n * D, 0.0f);
        return;
    }

    // activations per slot, in the form each expert matrix takes: converted once per matrix type
    // (x for gate/up, h for down), or int8 rows with their scales (W8A8, dynamic per token)
    const Tensor &wg = l.ffn_gate_exps, &wu = l.ffn_up_exps, &wd = l.ffn_down_exps;
    const DType xg_t = ref::vec_dot_type(wg.type), xu_t = ref::vec_dot_type(wu.type), h_t = ref::vec_dot_type(wd.type);
    const size_t xg_bytes = wg.int8 ? 0 : row_bytes(xg_t, D), xu_bytes = wu.int8 ? 0 : row_bytes(xu_t, D);
    const size_t h_bytes = wd.int8 ? 0 : row_bytes(h_t, F);
    uint8_t* xg = grow(act_, xg_bytes * (size_t)n);
    uint8_t* xu = xu_t == xg_t ? xg : grow(act2_, xu_bytes * (size_t)n);
    if (!wg.int8)
        for_tokens(n, [&](int64_t t) {
            k.convert[(int)xg_t](x + t * D, xg + (size_t)t * xg_bytes, D);
            if (xu != xg) k.convert[(int)xu_t](x + t * D, xu + (size_t)t * xu_bytes, D);
        });
    float* g = grow(gate_, (size_t)(n_slots * F));
    float* u = grow(up_, (size_t)(n_slots * F));
    float* d = grow(ffn_out_, (size_t)(n_slots * D));
    uint8_t* h = grow(act3_, h_bytes * (size_t)n_slots);

    ExpertActs ag, au, ah;
    const void** conv = grow(act_ptrs_, (size_t)(3 * n_slots));
    for (int64_t s = 0; s < n_slots; ++s) {
        const int64_t t = slots[(size_t)s].token;
        conv[s] = xg + (size_t)t * xg_bytes;
        conv[n_slots + s] = xu + (size_t)t * xu_bytes;
        conv[2 * n_slots + s] = h + (size_t)s * h_bytes;
    }
    ag.conv = conv;
    au.conv = conv + n_slots;
    ah.conv = conv + 2 * n_slots;
    if (wg.int8) {  // gate and up share the token's int8 row (bind checks both are dynamic W8A8)
        quantize_i8(*wg.int8, x, n, D);
        const int8_t** q = grow(moe_q8_ptrs_, (size_t)n_slots);
        float* sc = grow(moe_q8_scale_, (size_t)n_slots);
        int32_t* sm = grow(moe_q8_sum_, (size_t)n_slots);
        for (int64_t s = 0; s < n_slots; ++s) {
            const int64_t t = slots[(size_t)s].token;
            q[s] = i8_x_.data() + t * D;
            sc[s] = i8_s_[(size_t)t];
            sm[s] = i8_sum_[(size_t)t];
        }
        ag.q = au.q = q;
        ag.scale = au.scale = sc;
        ag.sum = au.sum = sm;
    }

    // gate and up of every routed pair: work units are (expert, chunk of rows)
    constexpr int64_t kRows = 64;  // a multiple of the packed groups' 16 rows
    const int64_t f_chunks = (F + kRows - 1) / kRows;
    pool_.parallel_for(n_groups * f_chunks, 1, [&](int64_t b, int64_t e) {
        for (int64_t unit = b; unit < e; ++unit) {
            const auto [s0, s1] = groups[(size_t)(unit / f_chunks)];
            const int64_t r0 = (unit % f_chunks) * kRows, nr = std::min(kRows, F - r0);
            const int64_t row = slots[(size_t)s0].expert * F + r0;
            expert_rows(wg, row, nr, D, ag, s0, s1, g + r0, F);
            expert_rows(wu, row, nr, D, au, s0, s1, u + r0, F);
        }
    });
    // SwiGLU, then the down projection's activation form
    for_tokens(n_slots, [&](int64_t s) {
        k.swiglu(g + s * F, u + s * F, g + s * F, F);
        if (!wd.int8) k.convert[(int)h_t](g + s * F, h + (size_t)s * h_bytes, F);
    });
    if (wd.int8) {
        quantize_i8(*wd.int8, g, n_slots, F);
        const int8_t** q = grow(moe_q8_ptrs_, (size_t)n_slots);
        for (int64_t s = 0; s < n_slots; ++s) q[s] = i8_x_.data() + s * F;
        ah.q = q;
        ah.scale = i8_s_.data();
        ah.sum = i8_sum_.data();
    }
    const int64_t d_chunks = (D + kRows - 1) / kRows;
    pool_.parallel_for(n_groups * d_chunks, 1, [&](int64_t b, int64_t e) {
        for (int64_t unit = b; unit < e; ++unit) {
            const auto [s0, s1] = groups[(size_t)(unit / d_chunks)];
            const int64_t r0 = (unit % d_chunks) * kRows, nr = std::min(kRows, D - r0);
            expert_rows(wd, slots[(size_t)s0].expert * D + r0, nr, F, ah, s0, s1, d + r0, D);
        }
    });
    // weighted sum of the experts of each token, in expert order (the slots were sorted by
    // expert); a token has K slots, or fewer when the hybrid forward's device runs the others
    int64_t* tok_slots = grow(moe_tok_slots_, (size_t)(n * K));  // token t's slots at [t * K, t * K + fill[t])
    std::vector<int64_t>& fill = moe_idx_;
    fill.assign((size_t)n, 0);
    for (int64_t s = 0; s < n_slots; ++s) {
        const int64_t t = slots[(size_t)s].token;
        tok_slots[t * K + fill[(size_t)t]++] = s;
    }
    for_tokens(n, [&](int64_t t) {
        float* o = out + t * D;
        std::fill(o, o + D, 0.0f);
        for (int64_t j = 0; j < fill[(size_t)t]; ++j) {
            const int64_t s = tok_slots[t * K + j];
            k.axpy(slots[(size_t)s].weight, d + s * D, o, D);
        }
    });
}

void Forward::dense_ffn(int il, const float* x, int64_t n, float* out) {
    const LayerWeights& l = model_.layer(il);
    const int64_t F = hp_.n_ff;
    float* g = grow(gate_, (size_t)(n * F));
    float* u = grow(up_, (size_t)(n * F));
    linear(l.ffn_gate, 0, F, x, n, g);
    linear(l.ffn_up, 0, F, x, n, u);
    cpu::kernels().swiglu(g, u, g, n * F);
    linear(l.ffn_down, 0, hp_.n_embd, g, n, out);
}

void Forward::lm_head(const float* x, int64_t n, float* logits) {
    float* xn = grow(tmp_, (size_t)(n * hp_.n_embd));
    norm(x, model_.output_norm(), n, hp_.n_embd, xn);
    linear(model_.output(), 0, hp_.n_vocab, xn, n, logits);
}

}  // namespace tandem
