// DeviceLayers on CUDA (model/device_layers.h): the non-expert weights uploaded as stored, a
// paged KV cache in device memory, one stream, and the kernels of backend/cuda/kernels.h in the
// order of the CPU forward (model/qwen3moe.cpp, builders.cpp). Plain C++: no CUDA header here;
// compiled into tandem_lib only when the CUDA backend is built.
#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <tuple>

#include "backend/backend.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/split_attention.h"
#include "core/log.h"
#include "model/device_layers.h"
#include "model/model.h"

namespace tandem {
namespace {

#define TANDEM_CUDA_TRY(call)                                   \
    do {                                                        \
        const std::string tandem_ks_ = (call);                  \
        if (!tandem_ks_.empty()) return Error{name_ + ": " + tandem_ks_}; \
    } while (0)

// A weight matrix on the device: GGUF rows as stored, or int8 rows with their parameters.
struct DevMat {
    DType type = DType::F32;
    const void* w = nullptr;
    size_t row_bytes = 0;
    int64_t rows = 0, in = 0;
    bool present = false;
    // W8A8
    bool i8 = false, static_act = false;
    float input_scale = 1.0f, input_offset = 0.0f;
    const float* scale = nullptr;
    const int32_t* bias = nullptr;
    const float* zero = nullptr;
};

struct DevLayer {
    const float *attn_norm = nullptr, *q_norm = nullptr, *k_norm = nullptr, *ffn_norm = nullptr;
    DevMat wq, wk, wv, wo, gate_inp, ffn_gate, ffn_up, ffn_down;
};

bool gpu_type(DType t) {
    switch (t) {
        case DType::F32: case DType::F16: case DType::BF16: case DType::Q8_0: case DType::Q4_K: case DType::Q5_K:
        case DType::Q6_K: case DType::I8: case DType::Q4_1: case DType::Q5_1: case DType::IQ4_NL: case DType::IQ4_XS:
        case DType::Q2_K: case DType::Q3_K:
            return true;
        default:
            return false;
    }
}

class CudaLayers final : public DeviceLayers {
public:
    CudaLayers(const Model& m, std::unique_ptr<backend::Backend> be, const CudaLayerOptions& opt)
        : m_(m), hp_(m.hparams()), rope_(hp_.rope_freqs()), be_(std::move(be)),
          name_(be_->name() + " (" + be_->device().name + ")"), opt_(opt) {}

    ~CudaLayers() override {
        if (stream_) (void)stream_->synchronize();
        if (copy_) (void)copy_->synchronize();
        for (const void* p : registered_) be_->unregister_host(p);
        if (pinned_) be_->free_pinned(pinned_);
        if (h_pairs_) be_->free_pinned(h_pairs_);
    }

    std::string name() const override { return name_; }

    Status init() {
        // what goes up: every layer's non-expert tensors, the embeddings, the output norm and head
        std::vector<const Tensor*> mats;
        auto want = [&](const Tensor& t) -> Status {
            if (!t.data) return {};
            if (!gpu_type(t.type))
                return make_error("{}: {} is {}: the CUDA kernels take f32, f16, bf16, q8_0, q4_k, q5_k, q6_k, q4_1, q5_1, "
                                  "iq4_nl, iq4_xs, q2_k, q3_k and int8 (run with --device cpu)",
                                  name_, t.name, dtype_name(t.type));
            if (t.int8 && t.int8->static_act && !t.int8->zero.empty())
                return make_error("{}: {}: static int8 activations with weight zero points", name_, t.name);
            mats.push_back(&t);
            return {};
        };
        uint64_t bytes = 0;
        auto count_vec = [&](const std::vector<float>& v) { bytes += v.size() * sizeof(float) + 256; };
        for (int il = 0; il < (int)hp_.n_layer; ++il) {
            const LayerWeights& l = m_.layer(il);
            if (!l.attn_norm_bias.empty() || !l.ffn_norm_bias.empty())
                return make_error("{}: layer {}: RMSNorm biases (msModelSlim anti-outlier smoothing) are not on the "
                                  "CUDA path yet (run with --device cpu)",
                                  name_, il);
            for (const Tensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_gate_inp, &l.ffn_gate, &l.ffn_up, &l.ffn_down})
                TANDEM_TRY(want(*t));
            for (const auto* v : {&l.attn_norm, &l.attn_q_norm, &l.attn_k_norm, &l.ffn_norm}) count_vec(*v);
        }
        TANDEM_TRY(want(m_.token_embd()));
        const bool tied = m_.output().data == m_.token_embd().data;
        if (!tied) TANDEM_TRY(want(m_.output()));
        count_vec(m_.output_norm());
        for (const Tensor* t : mats) {
            bytes += t->n_bytes() + 256;
            if (t->int8) bytes += (size_t)t->n_rows() * 12 + 768;
        }
        const uint64_t free_b = be_->device().free_bytes;
        constexpr uint64_t kReserve = 1ull << 30;  // scratch, KV pages and the CUDA context's own
        if (free_b && bytes + kReserve > free_b)
            return make_error("{}: the non-expert weights need {:.2f} GiB + {:.2f} GiB of working memory, the device "
                              "has {:.2f} GiB free",
                              name_, (double)bytes / (1ull << 30), (double)kReserve / (1ull << 30),
                              (double)free_b / (1ull << 30));
        TANDEM_ASSIGN(weights_, be_->make_arena(bytes));
        TANDEM_ASSIGN(stream_, be_->make_stream());
        const bool loud = bytes >= (1ull << 30);
        if (loud) log::info("{}: uploading {:.2f} GiB of non-expert weights...", name_, (double)bytes / (1ull << 30));

        layers_.resize((size_t)hp_.n_layer);
        for (int il = 0; il < (int)hp_.n_layer; ++il) {
            const LayerWeights& l = m_.layer(il);
            DevLayer& d = layers_[(size_t)il];
            TANDEM_ASSIGN(d.attn_norm, put_vec(l.attn_norm, "attn_norm"));
            TANDEM_ASSIGN(d.q_norm, put_vec(l.attn_q_norm, "attn_q_norm"));
            TANDEM_ASSIGN(d.k_norm, put_vec(l.attn_k_norm, "attn_k_norm"));
            TANDEM_ASSIGN(d.ffn_norm, put_vec(l.ffn_norm, "ffn_norm"));
            TANDEM_ASSIGN(d.wq, put_mat(l.wq));
            TANDEM_ASSIGN(d.wk, put_mat(l.wk));
            TANDEM_ASSIGN(d.wv, put_mat(l.wv));
            TANDEM_ASSIGN(d.wo, put_mat(l.wo));
            TANDEM_ASSIGN(d.gate_inp, put_mat(l.ffn_gate_inp));
            TANDEM_ASSIGN(d.ffn_gate, put_mat(l.ffn_gate));
            TANDEM_ASSIGN(d.ffn_up, put_mat(l.ffn_up));
            TANDEM_ASSIGN(d.ffn_down, put_mat(l.ffn_down));
        }
        TANDEM_ASSIGN(embd_, put_mat(m_.token_embd()));
        if (tied) {
            output_ = embd_;
        } else {
            TANDEM_ASSIGN(output_, put_mat(m_.output()));
        }
        TANDEM_ASSIGN(output_norm_, put_vec(m_.output_norm(), "output_norm"));
        TANDEM_TRY(stream_->synchronize());
        if (loud) log::info("{}: weights uploaded ({:.2f} GiB used)", name_, (double)weights_->used() / (1ull << 30));
        return {};
    }

    Status make_pool(int64_t page_size, int64_t n_pages) override {
        if (kv_ && page_size == kv_page_size_ && n_pages == kv_n_pages_) return {};
        graphs_.clear();  // they address the old pages
        kv_.reset();
        const int64_t n_kv = hp_.n_kv();
        const size_t half = (size_t)(n_pages * hp_.n_layer * page_size * n_kv) * sizeof(uint16_t);
        auto a = be_->make_arena(2 * half + 512);
        if (!a)
            return make_error("{}: KV cache of {} pages x {} positions ({:.2f} GiB): {}", name_, n_pages, page_size,
                              2.0 * (double)half / (1ull << 30), a.error().message);
        kv_ = std::move(*a);
        TANDEM_ASSIGN(void* k, kv_->alloc(half, "KV cache keys"));
        TANDEM_ASSIGN(void* v, kv_->alloc(half, "KV cache values"));
        kv_k_ = static_cast<uint16_t*>(k);
        kv_v_ = static_cast<uint16_t*>(v);
        kv_page_size_ = page_size;
        kv_n_pages_ = n_pages;
        return {};
    }

    Status begin(const std::vector<int32_t>& tokens, const std::vector<int64_t>& pos,
                 const std::vector<const int32_t*>& pages) override {
        if (!kv_) return make_error("{}: no KV cache (make_pool first)", name_);
        // the previous batch's work is done before its pinned staging is rewritten (a dense model
        // asking for no logits never waited on the stream)
        TANDEM_TRY(stream_->synchronize());
        n_ = (int64_t)tokens.size();
        // sequences: runs of tokens sharing a block table; each needs pages up to its last position
        std::vector<const int32_t*> seq_pages;
        std::vector<int64_t> seq_need;
        std::vector<int32_t> tok_seq((size_t)n_);
        for (int64_t t = 0; t < n_; ++t) {
            if (t == 0 || pages[(size_t)t] != pages[(size_t)t - 1]) {
                seq_pages.push_back(pages[(size_t)t]);
                seq_need.push_back(0);
            }
            tok_seq[(size_t)t] = (int32_t)seq_pages.size() - 1;
            seq_need.back() = std::max(seq_need.back(), pos[(size_t)t] / kv_page_size_ + 1);
        }
        // the block tables' stride: a recorded graph keeps it, so graphed batches use the pool's size
        max_pages_ = graphed() ? kv_n_pages_ : *std::max_element(seq_need.begin(), seq_need.end());
        const int64_t n_seq = (int64_t)seq_pages.size();
        TANDEM_TRY(reserve(n_, n_seq * max_pages_));
        pending_add_ = false;  // the previous batch's last residual: nobody reads it any more
        // one upload of the batch's integers: tokens, positions, sequence of each token, tables
        int32_t* meta = h_meta_;
        for (int64_t t = 0; t < n_; ++t) {
            meta[t] = tokens[(size_t)t];
            meta[n_ + t] = (int32_t)pos[(size_t)t];
            meta[2 * n_ + t] = tok_seq[(size_t)t];
        }
        int32_t* tables = meta + 3 * n_;
        for (int64_t s = 0; s < n_seq; ++s)
            for (int64_t i = 0; i < max_pages_; ++i) {
                const int32_t p = i < seq_need[(size_t)s] ? seq_pages[(size_t)s][i] : 0;
                if (p < 0 || p >= kv_n_pages_) return make_error("{}: page {} out of the pool", name_, p);
                tables[s * max_pages_ + i] = p;
            }
        // prefill-sized batches: the tiles of the tiled attention kernel (runs of one sequence's tokens)
        n_tiles_ = 0;
        if (n_ > kTiledAttentionFrom && hp_.n_head / hp_.n_head_kv <= 64) {
            const std::vector<int32_t> tiles =
                cuda::attention_tiles(meta + n_, meta + 2 * n_, n_, hp_.n_head / hp_.n_head_kv);
            n_tiles_ = (int64_t)tiles.size() / 2;
            std::copy(tiles.begin(), tiles.end(), tables + n_seq * max_pages_);
        }
        // decode-sized batches: the positions of long contexts split over parts run in parallel
        n_parts_ = 1;
        if (n_tiles_ == 0 && n_ > 0 && split_decode()) {
            const int64_t max_pos = *std::max_element(pos.begin(), pos.end());
            n_parts_ = cuda::split_parts(n_, hp_.n_head_kv, max_pos + 1, cuda::sm_count());
        }
        const size_t meta_n = (size_t)(3 * n_ + n_seq * max_pages_ + 2 * n_tiles_);
        TANDEM_TRY(be_->upload(d_meta_, meta, meta_n * sizeof(int32_t), stream_.get()));
        d_tokens_ = d_meta_;
        d_pos_ = d_meta_ + n_;
        d_tok_seq_ = d_meta_ + 2 * n_;
        d_tables_ = d_meta_ + 3 * n_;
        d_tiles_ = d_tables_ + n_seq * max_pages_;
        TANDEM_CUDA_TRY(cuda::embed_rows(embd_.type, embd_.w, embd_.row_bytes, d_tokens_, n_, hp_.n_embd, d_x_, s()));
        return {};
    }

    Result<Routed> attention_and_route(int il) override {
        route_layer_ = il;
        streamed_ = -1;
        const bool with_add = pending_add_;
        pending_add_ = false;
        if (graphed()) {
            const GraphKey key{il, n_, with_add, n_parts_};
            auto it = graphs_.find(key);
            if (it == graphs_.end()) {
                TANDEM_TRY(stream_->begin_capture());
                const Status st = enqueue_attention_and_route(il, with_add);
                auto g = stream_->end_capture();  // ended even when recording failed
                TANDEM_TRY(st);
                if (!g) return make_error("{}: layer {}: recording a CUDA graph: {}", name_, il, g.error().message);
                it = graphs_.emplace(key, std::move(*g)).first;
            }
            TANDEM_TRY(stream_->launch(*it->second));
        } else {
            TANDEM_TRY(enqueue_attention_and_route(il, with_add));
        }
        TANDEM_TRY(stream_->synchronize());
        return Routed{h_cur_, h_ids_, h_w_, h_out_};
    }

    Status add_ffn(bool with_cpu_share) override {
        if (!with_cpu_share) return {};  // (a streamed batch: the device's experts added theirs)
        // graphed: the next layer's graph starts with it (one launch per layer)
        if (graphed()) {
            pending_add_ = true;
            return {};
        }
        return enqueue_add_ffn();
    }

    Status dense_layer(int il) override {
        TANDEM_TRY(flush_add());
        TANDEM_TRY(attention_block(il));
        const DevLayer& l = layers_[(size_t)il];
        const int64_t D = hp_.n_embd, F = hp_.n_ff;
        float* g = d_ffn_;
        float* u = d_ffn_ + n_ * F;
        TANDEM_CUDA_TRY(cuda::rms_norm(d_x_, l.ffn_norm, n_, D, hp_.rms_eps, d_cur_, s()));
        TANDEM_TRY(linear(l.ffn_gate, d_cur_, g));
        TANDEM_TRY(linear(l.ffn_up, d_cur_, u));
        TANDEM_CUDA_TRY(cuda::swiglu(g, u, g, n_ * F, s()));
        TANDEM_TRY(linear(l.ffn_down, g, d_delta_));
        TANDEM_CUDA_TRY(cuda::add(d_x_, d_delta_, n_ * D, s()));
        return {};
    }

    Status logits(const std::vector<int64_t>& rows, float* out) override {
        const int64_t n_out = (int64_t)rows.size(), D = hp_.n_embd, V = hp_.n_vocab;
        if (n_out == 0) return {};
        TANDEM_TRY(flush_add());
        TANDEM_TRY(reserve_logits(n_out));
        for (int64_t i = 0; i < n_out; ++i) h_rows_[i] = (int32_t)rows[(size_t)i];
        TANDEM_TRY(be_->upload(d_rows_, h_rows_, (size_t)n_out * sizeof(int32_t), stream_.get()));
        // the gathered rows go to cur (n_out <= n rows of D), normed in place
        TANDEM_CUDA_TRY(cuda::gather_rows(d_x_, d_rows_, n_out, D, d_cur_, s()));
        TANDEM_CUDA_TRY(cuda::rms_norm(d_cur_, output_norm_, n_out, D, hp_.rms_eps, d_cur_, s()));
        int64_t saved_n = n_;
        n_ = n_out;
        Status st = linear(output_, d_cur_, d_logits_);
        n_ = saved_n;
        TANDEM_TRY(st);
        TANDEM_TRY(be_->download(out, d_logits_, (size_t)(n_out * V) * sizeof(float), stream_.get()));
        TANDEM_TRY(stream_->synchronize());
        return {};
    }

    Status place_experts(const std::vector<std::vector<int32_t>>& experts) override {
        TANDEM_TRY(stream_->synchronize());
        dev_experts_.assign((size_t)hp_.n_layer, {});
        experts_arena_.reset();
        uint64_t bytes = 0;
        for (size_t il = 0; il < experts.size() && il < (size_t)hp_.n_layer; ++il) {
            if (!experts[il].empty()) TANDEM_TRY(check_expert_types((int)il));
            for (int32_t e : experts[il])
                if (e < 0 || e >= hp_.n_expert) return make_error("{}: layer {}: no expert {}", name_, il, e);
            bytes += (uint64_t)experts[il].size() * expert_bytes_of((int)il) + 3 * 256;
        }
        if (bytes == 0) return {};
        auto arena = be_->make_arena(bytes);
        if (!arena)
            return make_error("{}: {:.2f} GiB of routed experts do not fit: {}", name_, (double)bytes / (1ull << 30),
                              arena.error().message);
        experts_arena_ = std::move(*arena);
        for (size_t il = 0; il < experts.size() && il < (size_t)hp_.n_layer; ++il) {
            if (experts[il].empty()) continue;
            const LayerWeights& l = m_.layer((int)il);
            DevExperts& d = dev_experts_[il];
            d.on.assign((size_t)hp_.n_expert, 0);
            d.slot.assign((size_t)hp_.n_expert, -1);
            const Tensor* ts[3] = {&l.ffn_gate_exps, &l.ffn_up_exps, &l.ffn_down_exps};
            for (int m = 0; m < 3; ++m) {
                const Tensor& t = *ts[m];
                const size_t eb = (size_t)t.ne[1] * t.row_bytes;  // one expert's matrix
                TANDEM_ASSIGN(void* base, experts_arena_->alloc(eb * experts[il].size(), t.name + " (device experts)"));
                for (size_t i = 0; i < experts[il].size(); ++i)
                    TANDEM_TRY(be_->upload((uint8_t*)base + i * eb, t.row((int64_t)experts[il][i] * t.ne[1]), eb,
                                           stream_.get()));
                d.mat[m] = {t.type, base, eb, t.row_bytes};
            }
            for (size_t i = 0; i < experts[il].size(); ++i) {
                d.on[(size_t)experts[il][i]] = 1;
                d.slot[(size_t)experts[il][i]] = (int32_t)i;
            }
        }
        TANDEM_TRY(stream_->synchronize());
        return {};
    }

    const std::vector<uint8_t>* experts_on_device(int il) const override {
        return (size_t)il < dev_experts_.size() && !dev_experts_[(size_t)il].on.empty() ? &dev_experts_[(size_t)il].on
                                                                                        : nullptr;
    }

    Status run_device_experts(const std::vector<ExpertPair>& pairs) override {
        const int64_t np = (int64_t)pairs.size(), D = hp_.n_embd, F = hp_.n_ff_exp;
        if (np == 0) return {};
        const Staged* staged = streamed_ >= 0 && streamed_ == route_layer_ ? &staged_[streamed_buf_] : nullptr;
        if (!staged && (route_layer_ < 0 || (size_t)route_layer_ >= dev_experts_.size() ||
                        dev_experts_[(size_t)route_layer_].on.empty()))
            return make_error("{}: layer {} holds no experts on the device", name_, route_layer_);
        const DevExperts& d = staged ? staged->d : dev_experts_[(size_t)route_layer_];
        TANDEM_TRY(reserve_pairs(np));
        // staging, all pairs: token, stack slot, index in its chunk (the down projection's input
        // row), weight; then the runs of one token's pairs (token, first, count) of every chunk;
        // then per chunk its pairs sorted by expert and cut into tiles (cuda::expert_tiles)
        int32_t* tok = (int32_t*)h_pairs_;
        int32_t* slot = tok + np;
        int32_t* self = slot + np;
        float* w = (float*)(self + np);
        int32_t* runs = (int32_t*)(w + np);
        int64_t n_runs = 0;
        for (int64_t p = 0; p < np; ++p) {
            const ExpertPair& e = pairs[(size_t)p];
            if (e.token < 0 || e.token >= n_ || d.slot[(size_t)e.expert] < 0 || (p > 0 && e.token < pairs[(size_t)p - 1].token))
                return make_error("{}: pair {} (token {}, expert {}) is not the device's, or out of token order", name_, p,
                                  e.token, e.expert);
            tok[p] = e.token;
            slot[p] = d.slot[(size_t)e.expert];
            self[p] = (int32_t)(p % kPairChunk);
            w[p] = e.weight;
            if (p % kPairChunk == 0 || e.token != pairs[(size_t)p - 1].token) {  // a run starts (chunk-relative first)
                runs[3 * n_runs] = e.token;
                runs[3 * n_runs + 1] = (int32_t)(p % kPairChunk);
                runs[3 * n_runs + 2] = 0;
                ++n_runs;
            }
            ++runs[3 * n_runs - 1];
        }
        int32_t* order = runs + 3 * n_runs;  // (the runs take at most np triples; packed after them)
        int32_t* tiles = order + np;
        // (prefill-sized chunks, many pairs per expert: wide tiles for the tensor-core kernel)
        std::vector<std::pair<int64_t, bool>>& chunk_tiles = chunk_tiles_;
        chunk_tiles.clear();
        for (int64_t p0 = 0; p0 < np; p0 += kPairChunk) {
            bool mma = false;
            const int64_t nt = cuda::expert_tiles_for(slot + p0, std::min(kPairChunk, np - p0), order + p0, tiles + 2 * p0, mma);
            chunk_tiles.emplace_back(nt, mma);
        }
        const int64_t n_ints = 4 * np + 3 * n_runs + np + 2 * np;
        TANDEM_TRY(be_->upload(d_pairs_, h_pairs_, (size_t)n_ints * 4, stream_.get()));
        const DevExperts::Mat &mg = d.mat[0], &mu = d.mat[1], &md = d.mat[2];
        const int32_t* d_runs = d_pairs_ + 4 * np;
        const int32_t* d_order = d_runs + 3 * n_runs;
        const int32_t* d_tiles = d_order + np;
        float* g = d_pair_f_;
        float* u = g + kPairChunk * F;
        float* y = u + kPairChunk * F;
        int64_t run = 0;
        for (int64_t p0 = 0; p0 < np; p0 += kPairChunk) {  // (grids and scratch stay bounded)
            const int64_t nc = std::min(kPairChunk, np - p0);
            const int32_t* d_tok = d_pairs_ + p0;
            const int32_t* d_slot = d_pairs_ + np + p0;
            const int32_t* d_self = d_pairs_ + 2 * np + p0;
            const float* d_w = (const float*)(d_pairs_ + 3 * np) + p0;
            int64_t run_end = run;
            while (run_end < n_runs && (run_end == run || runs[3 * run_end + 1] != 0)) ++run_end;  // this chunk's runs
            const int32_t* d_ord = d_order + p0;
            const int32_t* d_til = d_tiles + 2 * p0;
            const auto [nt, mma] = chunk_tiles[(size_t)(p0 / kPairChunk)];
            const auto em = mma ? cuda::expert_matmul_mma : cuda::expert_matmul;
            TANDEM_CUDA_TRY(em(mg.type, mg.base, mg.expert_bytes, mg.row_bytes, F, D, d_cur_, d_tok, d_slot, d_ord, d_til,
                               nt, g, s()));
            TANDEM_CUDA_TRY(em(mu.type, mu.base, mu.expert_bytes, mu.row_bytes, F, D, d_cur_, d_tok, d_slot, d_ord, d_til,
                               nt, u, s()));
            TANDEM_CUDA_TRY(cuda::swiglu(g, u, g, nc * F, s()));
            TANDEM_CUDA_TRY(em(md.type, md.base, md.expert_bytes, md.row_bytes, D, F, g, d_self, d_slot, d_ord, d_til, nt,
                               y, s()));
            TANDEM_CUDA_TRY(cuda::expert_sum(y, d_runs + 3 * run, run_end - run, d_w, D, d_x_, s()));
            run = run_end;
        }
        if (staged) {  // the staging buffer is free once these kernels ran; the next layer goes up meanwhile
            TANDEM_TRY(stream_->record(*released_[(size_t)streamed_buf_]));
            TANDEM_TRY(prefetch_layer(next_moe_layer(streamed_)));
        }
        return {};
    }

    Status enable_expert_streaming(int64_t min_tokens) override {
        stream_from_ = 0;
        if (min_tokens <= 0) return {};
        uint64_t layer_max = 0, pinned_ok = 0, host_bytes = 0;
        bool any_packed = false;
        for (int il = 0; il < (int)hp_.n_layer; ++il) {
            if (!m_.layer(il).ffn_gate_exps.data) continue;
            TANDEM_TRY(check_expert_types(il));
            uint64_t b = 0;
            for (const Tensor* t : expert_mats(il)) {
                b += t->n_bytes() + 256;
                any_packed = any_packed || t->packed;
            }
            layer_max = std::max(layer_max, b);
            host_bytes += b;
        }
        if (layer_max == 0) return make_error("{}: --gpu-prefill: the model has no routed experts", name_);
        TANDEM_TRY(stream_->synchronize());
        if (!stage_arena_) {
            auto arena = be_->make_arena(2 * (layer_max + 256));  // (layer_max: each matrix rounded up to 256)
            if (!arena)
                return make_error("{}: --gpu-prefill needs room for two layers of routed experts ({:.2f} GiB): {}", name_,
                                  2.0 * (double)layer_max / (1ull << 30), arena.error().message);
            stage_arena_ = std::move(*arena);
            for (int b = 0; b < 2; ++b) {
                TANDEM_ASSIGN(stage_base_[b], stage_arena_->alloc(layer_max, "streamed experts"));
                TANDEM_ASSIGN(uploaded_[b], be_->make_event());
                TANDEM_ASSIGN(released_[b], be_->make_event());
            }
            TANDEM_ASSIGN(copy_, be_->make_stream());
        }
        // Page-locked host memory makes the uploads asynchronous and as fast as the bus; only where
        // the CPU reads these very pages (no repacked copy): page-locking the file's pages beside
        // the CPU's repacked copy would keep the experts in RAM twice.
        if (!any_packed && registered_.empty()) {
            std::vector<std::pair<uintptr_t, uintptr_t>> ranges;  // page-aligned [begin, end), merged
            for (int il = 0; il < (int)hp_.n_layer; ++il)
                if (m_.layer(il).ffn_gate_exps.data)
                    for (const Tensor* t : expert_mats(il)) {
                        const uintptr_t b = (uintptr_t)t->data & ~(uintptr_t)4095;
                        const uintptr_t e = ((uintptr_t)t->data + t->n_bytes() + 4095) & ~(uintptr_t)4095;
                        ranges.emplace_back(b, e);
                    }
            std::sort(ranges.begin(), ranges.end());
            std::vector<std::pair<uintptr_t, uintptr_t>> merged;
            for (const auto& r : ranges)
                if (!merged.empty() && r.first <= merged.back().second) merged.back().second = std::max(merged.back().second, r.second);
                else merged.push_back(r);
            for (const auto& r : merged) {
                const Status st = be_->register_host((const void*)r.first, r.second - r.first);
                if (!st) {
                    log::warn("{}: the routed experts go up from pageable memory: {}", name_, st.error().message);
                    break;
                }
                registered_.push_back((const void*)r.first);
                pinned_ok += r.second - r.first;
            }
        }
        stream_from_ = min_tokens;
        log::info("{}: batches of {}+ tokens run every routed expert here ({:.2f} GiB of experts go up per such batch{})",
                  name_, min_tokens, (double)host_bytes / (1ull << 30),
                  pinned_ok ? fmt::format(", from {:.2f} GiB page-locked", (double)pinned_ok / (1ull << 30)) : "");
        return {};
    }
    int64_t stream_experts_from() const override { return stream_from_; }

    Status stream_experts(int il) override {
        if (!stage_arena_ || stream_from_ <= 0) return make_error("{}: expert streaming is not enabled", name_);
        if (il != route_layer_) return make_error("{}: stream_experts({}) after attention_and_route({})", name_, il, route_layer_);
        if (!m_.layer(il).ffn_gate_exps.data) return make_error("{}: layer {} has no routed experts", name_, il);
        int b = staged_[0].layer == il ? 0 : staged_[1].layer == il ? 1 : -1;
        if (b < 0) {  // not prefetched (the batch's first layer)
            TANDEM_TRY(prefetch_layer(il));
            b = staged_[0].layer == il ? 0 : 1;
        }
        TANDEM_TRY(stream_->wait(*uploaded_[(size_t)b]));  // the compute stream waits for the copy
        streamed_ = il;
        streamed_buf_ = b;
        return {};
    }

    uint64_t expert_bytes() const override {
        uint64_t b = 0;
        for (int il = 0; il < (int)hp_.n_layer; ++il) b = std::max<uint64_t>(b, expert_bytes_of(il));
        return b;
    }

    uint64_t free_bytes() const override {
        auto f = be_->free_memory();
        constexpr uint64_t kReserve = 1ull << 30;  // scratch that grows with the batch, the CUDA context's own
        return f && *f > kReserve ? *f - kReserve : 0;
    }

private:
    void* s() { return stream_->handle(); }

    std::array<const Tensor*, 3> expert_mats(int il) const {
        const LayerWeights& l = m_.layer(il);
        return {&l.ffn_gate_exps, &l.ffn_up_exps, &l.ffn_down_exps};
    }
    Status check_expert_types(int il) const {
        for (const Tensor* t : expert_mats(il))
            if (!t->data || t->int8 || !gpu_type(t->type) || t->type == DType::I8)
                return make_error("{}: {} is {}: routed experts of this type cannot run on the device", name_, t->name,
                                  t->int8 ? "int8 (W8A8)" : std::string(dtype_name(t->type)));
        return {};
    }
    int next_moe_layer(int il) const {  // (wrapping round: the next batch's first layer)
        for (int i = 1; i <= (int)hp_.n_layer; ++i) {
            const int j = (il + i) % (int)hp_.n_layer;
            if (m_.layer(j).ffn_gate_exps.data) return j;
        }
        return il;
    }
    // Queues the upload of layer il's whole expert stacks on the copy stream, into the staging
    // buffer the layer before last used (once its kernels ran); a no-op when it is up already.
    Status prefetch_layer(int il) {
        if (staged_[0].layer == il || staged_[1].layer == il) return {};
        // not the buffer of the layer running now, nor (at a batch's first layer) the one that
        // may hold the next layer already
        const int b = streamed_ >= 0 ? 1 - streamed_buf_ : staged_[0].layer == next_moe_layer(il) ? 1 : 0;
        Staged& st = staged_[(size_t)b];
        st.layer = -1;
        TANDEM_TRY(copy_->wait(*released_[(size_t)b]));
        uint8_t* at = (uint8_t*)stage_base_[b];
        int m = 0;
        for (const Tensor* t : expert_mats(il)) {
            TANDEM_TRY(be_->upload(at, t->data, t->n_bytes(), copy_.get()));
            st.d.mat[m++] = {t->type, at, (size_t)t->ne[1] * t->row_bytes, t->row_bytes};
            at += (t->n_bytes() + 255) / 256 * 256;
        }
        TANDEM_TRY(copy_->record(*uploaded_[(size_t)b]));
        if (st.d.slot.size() != (size_t)hp_.n_expert) {
            st.d.on.assign((size_t)hp_.n_expert, 1);
            st.d.slot.resize((size_t)hp_.n_expert);
            for (int32_t e = 0; e < (int32_t)hp_.n_expert; ++e) st.d.slot[(size_t)e] = e;
        }
        st.layer = il;
        return {};
    }

    // gate + up + down of one expert of layer il, as stored
    uint64_t expert_bytes_of(int il) const {
        const LayerWeights& l = m_.layer(il);
        uint64_t b = 0;
        for (const Tensor* t : {&l.ffn_gate_exps, &l.ffn_up_exps, &l.ffn_down_exps})
            if (t->data) b += (uint64_t)t->ne[1] * t->row_bytes;  // one expert: ne[1] rows
        return b;
    }

    // device and pinned room for np routed pairs (run_device_experts): their integers and runs,
    // and the activations of one chunk of kPairChunk pairs
    Status reserve_pairs(int64_t np) {
        if (np <= cap_pairs_) return {};
        TANDEM_TRY(stream_->synchronize());
        cap_pairs_ = std::max({np, cap_pairs_ * 2, (int64_t)64});
        const int64_t D = hp_.n_embd, F = hp_.n_ff_exp, chunk = std::min(cap_pairs_, kPairChunk);
        pairs_arena_.reset();
        const size_t ints = (size_t)(10 * cap_pairs_) * 4, floats = (size_t)(chunk * (2 * F + D)) * sizeof(float);
        TANDEM_ASSIGN(pairs_arena_, be_->make_arena(ints + floats + 512));
        TANDEM_ASSIGN(void* pi, pairs_arena_->alloc(ints, "expert pairs"));
        TANDEM_ASSIGN(void* pf, pairs_arena_->alloc(floats, "expert pair activations"));
        d_pairs_ = (int32_t*)pi;
        d_pair_f_ = (float*)pf;
        if (h_pairs_) be_->free_pinned(h_pairs_);
        h_pairs_ = nullptr;
        TANDEM_ASSIGN(h_pairs_, be_->alloc_pinned(ints));
        return {};
    }

    // whether this batch's layers replay recorded graphs (decode-sized batches, when asked for)
    bool graphed() const { return opt_.graphs && n_ <= CudaLayerOptions::kMaxGraphTokens; }

    // The work of attention_and_route, queued (or recorded) on the stream: the previous layer's
    // expert output into the residual first when with_add, the downloads last.
    Status enqueue_attention_and_route(int il, bool with_add) {
        if (with_add) TANDEM_TRY(enqueue_add_ffn());
        TANDEM_TRY(attention_block(il));
        const DevLayer& l = layers_[(size_t)il];
        const int64_t D = hp_.n_embd, E = hp_.n_expert, K = hp_.n_expert_used;
        TANDEM_CUDA_TRY(cuda::rms_norm(d_x_, l.ffn_norm, n_, D, hp_.rms_eps, d_cur_, s()));
        TANDEM_TRY(linear(l.gate_inp, d_cur_, d_ffn_));
        TANDEM_CUDA_TRY(cuda::router_topk(d_ffn_, n_, E, K, d_ids_, d_w_, s()));
        if (!(stream_from_ > 0 && n_ >= stream_from_))  // (a streamed batch: the CPU computes no expert)
            TANDEM_TRY(be_->download(h_cur_, d_cur_, (size_t)(n_ * D) * sizeof(float), stream_.get()));
        TANDEM_TRY(be_->download(h_ids_, d_ids_, (size_t)(n_ * K) * sizeof(int32_t), stream_.get()));
        TANDEM_TRY(be_->download(h_w_, d_w_, (size_t)(n_ * K) * sizeof(float), stream_.get()));
        return {};
    }

    Status enqueue_add_ffn() {
        const int64_t nd = n_ * hp_.n_embd;
        TANDEM_TRY(be_->upload(d_delta_, h_out_, (size_t)nd * sizeof(float), stream_.get()));
        TANDEM_CUDA_TRY(cuda::add(d_x_, d_delta_, nd, s()));
        return {};
    }

    Status flush_add() {
        if (!pending_add_) return {};
        pending_add_ = false;
        return enqueue_add_ffn();
    }

    Result<const float*> put_vec(const std::vector<float>& v, const char* what) {
        if (v.empty()) return (const float*)nullptr;
        TANDEM_ASSIGN(void* p, backend::upload_tensor(*be_, *weights_, what, v.data(), v.size() * sizeof(float),
                                                      stream_.get()));
        return (const float*)p;
    }

    template <typename T>
    Result<const T*> put_array(const std::vector<T>& v, const std::string& what) {
        if (v.empty()) return (const T*)nullptr;
        TANDEM_ASSIGN(void* p, backend::upload_tensor(*be_, *weights_, what, v.data(), v.size() * sizeof(T),
                                                      stream_.get()));
        return (const T*)p;
    }

    Result<DevMat> put_mat(const Tensor& t) {
        DevMat d;
        if (!t.data) return d;
        d.present = true;
        d.type = t.type;
        d.row_bytes = t.row_bytes;
        d.rows = t.n_rows();
        d.in = t.ne[0];
        TANDEM_ASSIGN(void* p, backend::upload_tensor(*be_, *weights_, t.name, t.data, t.n_bytes(), stream_.get()));
        d.w = p;
        if (t.int8) {
            const Int8Linear& q = *t.int8;
            d.i8 = true;
            d.static_act = q.static_act;
            d.input_scale = q.input_scale;
            d.input_offset = q.input_offset;
            TANDEM_ASSIGN(d.scale, put_array(q.scale, t.name + " scale"));
            TANDEM_ASSIGN(d.bias, put_array(q.bias, t.name + " bias"));
            TANDEM_ASSIGN(d.zero, put_array(q.zero, t.name + " zero"));
            max_in_ = std::max(max_in_, d.in);
        }
        return d;
    }

    // y (n_, rows) = x (n_, in) times the matrix
    Status linear(const DevMat& w, const float* x, float* y) {
        if (!w.present) return make_error("{}: a matrix the layer needs is missing", name_);
        if (!w.i8) {
            TANDEM_CUDA_TRY(cuda::matmul(w.type, w.w, w.row_bytes, w.rows, w.in, x, n_, y, s()));
            return {};
        }
        TANDEM_CUDA_TRY(cuda::quantize_i8(x, n_, w.in, !w.static_act, w.input_scale, w.input_offset, d_xq_, d_xs_,
                                          d_xsum_, s()));
        cuda::I8Rows r;
        r.scale = w.scale;
        r.bias = w.static_act ? w.bias : nullptr;
        r.zero = w.zero;
        TANDEM_CUDA_TRY(cuda::matmul_i8((const int8_t*)w.w, w.row_bytes, w.rows, w.in, d_xq_, d_xs_, d_xsum_, n_, r, y,
                                        s()));
        return {};
    }

    // x += attention(norm(x)) for layer il
    Status attention_block(int il) {
        const DevLayer& l = layers_[(size_t)il];
        const int64_t D = hp_.n_embd, hd = hp_.head_dim;
        TANDEM_CUDA_TRY(cuda::rms_norm(d_x_, l.attn_norm, n_, D, hp_.rms_eps, d_cur_, s()));
        TANDEM_TRY(linear(l.wq, d_cur_, d_q_));
        TANDEM_TRY(linear(l.wk, d_cur_, d_k_));
        TANDEM_TRY(linear(l.wv, d_cur_, d_v_));
        TANDEM_CUDA_TRY(cuda::rms_norm(d_q_, l.q_norm, n_ * hp_.n_head, hd, hp_.rms_eps, d_q_, s()));
        TANDEM_CUDA_TRY(cuda::rms_norm(d_k_, l.k_norm, n_ * hp_.n_head_kv, hd, hp_.rms_eps, d_k_, s()));
        TANDEM_CUDA_TRY(cuda::rope_neox(d_q_, d_pos_, n_, hp_.n_head, hd, rope_, s()));
        TANDEM_CUDA_TRY(cuda::rope_neox(d_k_, d_pos_, n_, hp_.n_head_kv, hd, rope_, s()));
        const cuda::KvLayer kv{kv_k_, kv_v_, hp_.n_layer, il, kv_page_size_, hp_.n_kv()};
        TANDEM_CUDA_TRY(cuda::kv_store(kv, d_k_, d_v_, d_pos_, d_tok_seq_, d_tables_, max_pages_, n_, s()));
        if (n_tiles_ > 0)  // (prefill: on tensor cores where the head size allows)
            TANDEM_CUDA_TRY((cuda::attention_mma_fits(hd) ? cuda::attention_mma : cuda::attention_tiled)(
                kv, d_q_, d_pos_, d_tok_seq_, d_tables_, max_pages_, d_tiles_, n_tiles_, hp_.n_head, hp_.n_head_kv, hd,
                d_attn_, s()));
        else if (split_decode())  // (decode: the GQA group's rows share each K/V read; long contexts split)
            TANDEM_CUDA_TRY(cuda::attention_split(kv, d_q_, d_pos_, d_tok_seq_, d_tables_, max_pages_, n_, hp_.n_head,
                                                  hp_.n_head_kv, hd, n_parts_, d_part_o_, d_part_ml_, d_attn_, s()));
        else
            TANDEM_CUDA_TRY(cuda::attention(kv, d_q_, d_pos_, d_tok_seq_, d_tables_, max_pages_, n_, hp_.n_head,
                                            hp_.n_head_kv, hd, d_attn_, s()));
        TANDEM_TRY(linear(l.wo, d_attn_, d_delta_));
        TANDEM_CUDA_TRY(cuda::add(d_x_, d_delta_, n_ * D, s()));
        return {};
    }

    // Device scratch and pinned staging for batches of up to n tokens and `table` page entries;
    // grown (never shrunk) by reallocating, after the stream has drained.
    Status reserve(int64_t n, int64_t table) {
        if (n <= cap_tok_ && table <= cap_table_) return {};
        TANDEM_TRY(stream_->synchronize());
        graphs_.clear();  // they address the old scratch
        cap_tok_ = std::max({n, cap_tok_ * 2, (int64_t)64});
        cap_table_ = std::max({table, cap_table_ * 2, (int64_t)256});
        const int64_t T = cap_tok_, D = hp_.n_embd, K = std::max<int64_t>(hp_.n_expert_used, 1);
        const int64_t ffn = std::max(hp_.n_expert, 2 * hp_.n_ff);
        scratch_.reset();
        const size_t f = sizeof(float);
        const size_t bytes = (size_t)T * f * (3 * D + 2 * hp_.n_q() + 2 * hp_.n_kv() + ffn + K) +
                             (size_t)T * (sizeof(int32_t) * (K + 4) + (size_t)max_in_ + 8) +
                             (size_t)(5 * T + cap_table_) * sizeof(int32_t) +
                             (size_t)cuda::kSplitMaxRows * hp_.n_head * (hp_.head_dim + 2) * f + 18 * 256;
        TANDEM_ASSIGN(scratch_, be_->make_arena(bytes));
        auto take = [&](size_t b, const char* what) -> Result<void*> { return scratch_->alloc(std::max<size_t>(b, 4), what); };
        TANDEM_ASSIGN(void* x, take((size_t)(T * D) * f, "x"));
        TANDEM_ASSIGN(void* cur, take((size_t)(T * D) * f, "cur"));
        TANDEM_ASSIGN(void* delta, take((size_t)(T * D) * f, "delta"));
        TANDEM_ASSIGN(void* q, take((size_t)(T * hp_.n_q()) * f, "q"));
        TANDEM_ASSIGN(void* attn, take((size_t)(T * hp_.n_q()) * f, "attn"));
        TANDEM_ASSIGN(void* k, take((size_t)(T * hp_.n_kv()) * f, "k"));
        TANDEM_ASSIGN(void* v, take((size_t)(T * hp_.n_kv()) * f, "v"));
        TANDEM_ASSIGN(void* fb, take((size_t)(T * ffn) * f, "ffn"));
        TANDEM_ASSIGN(void* w, take((size_t)(T * K) * f, "router weights"));
        TANDEM_ASSIGN(void* ids, take((size_t)(T * K) * sizeof(int32_t), "router ids"));
        TANDEM_ASSIGN(void* xq, take((size_t)(T * max_in_), "int8 activations"));
        TANDEM_ASSIGN(void* xs, take((size_t)T * f, "int8 scales"));
        TANDEM_ASSIGN(void* xsum, take((size_t)T * sizeof(int32_t), "int8 sums"));
        TANDEM_ASSIGN(void* meta, take((size_t)(5 * T + cap_table_) * sizeof(int32_t), "batch"));
        TANDEM_ASSIGN(void* po, take((size_t)cuda::kSplitMaxRows * hp_.n_q() * f, "attention parts"));
        TANDEM_ASSIGN(void* pml, take((size_t)cuda::kSplitMaxRows * hp_.n_head * 2 * f, "attention part sums"));
        d_part_o_ = (float*)po, d_part_ml_ = (float*)pml;
        d_x_ = (float*)x, d_cur_ = (float*)cur, d_delta_ = (float*)delta, d_q_ = (float*)q, d_attn_ = (float*)attn;
        d_k_ = (float*)k, d_v_ = (float*)v, d_ffn_ = (float*)fb, d_w_ = (float*)w, d_ids_ = (int32_t*)ids;
        d_xq_ = (int8_t*)xq, d_xs_ = (float*)xs, d_xsum_ = (int32_t*)xsum, d_meta_ = (int32_t*)meta;
        // pinned: cur, out (T x D floats), ids, weights, the batch's integers
        if (pinned_) be_->free_pinned(pinned_);
        pinned_ = nullptr;
        const size_t pb = (size_t)(2 * T * D) * f + (size_t)(T * K) * (f + sizeof(int32_t)) +
                          (size_t)(5 * T + cap_table_) * sizeof(int32_t) + 64;
        TANDEM_ASSIGN(pinned_, be_->alloc_pinned(pb));
        uint8_t* p = static_cast<uint8_t*>(pinned_);
        h_cur_ = (float*)p, p += (size_t)(T * D) * f;
        h_out_ = (float*)p, p += (size_t)(T * D) * f;
        h_w_ = (float*)p, p += (size_t)(T * K) * f;
        h_ids_ = (int32_t*)p, p += (size_t)(T * K) * sizeof(int32_t);
        h_meta_ = (int32_t*)p;
        return {};
    }

    Status reserve_logits(int64_t n_out) {
        if (n_out <= cap_logits_) return {};
        TANDEM_TRY(stream_->synchronize());
        cap_logits_ = std::max(n_out, cap_logits_ * 2);
        logits_arena_.reset();
        const size_t lb = (size_t)(cap_logits_ * hp_.n_vocab) * sizeof(float);
        TANDEM_ASSIGN(logits_arena_, be_->make_arena(lb + (size_t)cap_logits_ * sizeof(int32_t) + 512));
        TANDEM_ASSIGN(void* lg, logits_arena_->alloc(lb, "logits"));
        TANDEM_ASSIGN(void* rows, logits_arena_->alloc((size_t)cap_logits_ * sizeof(int32_t), "logit rows"));
        d_logits_ = (float*)lg;
        d_rows_ = (int32_t*)rows;
        h_rows_store_.resize((size_t)cap_logits_);
        h_rows_ = h_rows_store_.data();
        return {};
    }

    const Model& m_;
    const HParams& hp_;
    const ref::RopeFreqs rope_;
    std::unique_ptr<backend::Backend> be_;
    std::string name_;
    CudaLayerOptions opt_;
    // recorded attention_and_route per (layer, tokens, with the previous layer's add first)
    using GraphKey = std::tuple<int, int64_t, bool, int64_t>;  // layer, tokens, pending add, attention parts
    std::map<GraphKey, std::unique_ptr<backend::Graph>> graphs_;
    bool pending_add_ = false;  // graphed: add_ffn's work waits for the next layer's graph

    // routed experts on the device (place_experts): per layer, the held experts' stacks
    struct DevExperts {
        std::vector<uint8_t> on;     // per expert: held
        std::vector<int32_t> slot;   // per expert: its index in the stacks, -1
        struct Mat {
            DType type = DType::F32;
            const void* base = nullptr;  // the held experts' matrices back to back
            size_t expert_bytes = 0, row_bytes = 0;
        } mat[3];                     // gate, up, down
    };
    std::vector<DevExperts> dev_experts_;
    std::unique_ptr<backend::Arena> experts_arena_, pairs_arena_;
    // --gpu-prefill: two staging buffers of a whole layer's experts, filled on a copy stream
    struct Staged {
        int layer = -1;  // what the buffer holds (or is being filled with)
        DevExperts d;    // every expert, slot e = e
    };
    Staged staged_[2];
    void* stage_base_[2] = {};
    std::unique_ptr<backend::Arena> stage_arena_;
    std::unique_ptr<backend::Stream> copy_;
    std::unique_ptr<backend::Event> uploaded_[2], released_[2];
    std::vector<const void*> registered_;  // page-locked host ranges
    int64_t stream_from_ = 0;
    int streamed_ = -1, streamed_buf_ = 0;  // the layer stream_experts() made whole, and its buffer
    std::vector<std::pair<int64_t, bool>> chunk_tiles_;  // per chunk of pairs: tiles, for the mma kernel
    int route_layer_ = -1;  // the layer attention_and_route ran last
    int64_t cap_pairs_ = 0;
    static constexpr int64_t kPairChunk = 4096;  // pairs per pass of the device expert kernels
    int32_t* d_pairs_ = nullptr;
    float* d_pair_f_ = nullptr;
    void* h_pairs_ = nullptr;
    std::unique_ptr<backend::Stream> stream_;
    std::unique_ptr<backend::Arena> weights_, kv_, scratch_, logits_arena_;
    std::vector<DevLayer> layers_;
    DevMat embd_, output_;
    const float* output_norm_ = nullptr;
    int64_t max_in_ = 0;  // widest int8 matrix input

    uint16_t *kv_k_ = nullptr, *kv_v_ = nullptr;
    int64_t kv_page_size_ = 0, kv_n_pages_ = 0;

    // the batch
    int64_t n_ = 0, max_pages_ = 0;
    const int32_t *d_tokens_ = nullptr, *d_pos_ = nullptr, *d_tok_seq_ = nullptr, *d_tables_ = nullptr;
    const int32_t* d_tiles_ = nullptr;
    int64_t n_tiles_ = 0;  // > 0: this batch's attention runs tiled (prefill)
    int64_t n_parts_ = 1;  // decode attention: parts of the positions (split_parts)
    float *d_part_o_ = nullptr, *d_part_ml_ = nullptr;  // their partial results (kSplitMaxRows token-parts)
    // decode attention runs split (split_attention.cu) where the model's GQA group allows
    bool split_decode() const {
        const int64_t hd = hp_.head_dim;
        return hp_.n_head_kv > 0 && hp_.n_head % hp_.n_head_kv == 0 && hp_.n_head / hp_.n_head_kv <= cuda::kSplitMaxGroup &&
               (hd == 32 || hd == 64 || hd == 128 || hd == 256);
    }
    // batches above this many tokens run the tiled attention (at or below: decode-sized, and
    // what CUDA graphs record)
    static constexpr int64_t kTiledAttentionFrom = CudaLayerOptions::kMaxGraphTokens;
    int64_t cap_tok_ = 0, cap_table_ = 0, cap_logits_ = 0;
    float *d_x_ = nullptr, *d_cur_ = nullptr, *d_delta_ = nullptr, *d_q_ = nullptr, *d_attn_ = nullptr;
    float *d_k_ = nullptr, *d_v_ = nullptr, *d_ffn_ = nullptr, *d_w_ = nullptr, *d_xs_ = nullptr;
    float* d_logits_ = nullptr;
    int32_t *d_ids_ = nullptr, *d_xsum_ = nullptr, *d_meta_ = nullptr, *d_rows_ = nullptr;
    int8_t* d_xq_ = nullptr;
    void* pinned_ = nullptr;
    float *h_cur_ = nullptr, *h_out_ = nullptr, *h_w_ = nullptr;
    int32_t *h_ids_ = nullptr, *h_meta_ = nullptr, *h_rows_ = nullptr;
    std::vector<int32_t> h_rows_store_;
};

}  // namespace

Result<std::unique_ptr<DeviceLayers>> make_cuda_layers(const Model& model, int index, const CudaLayerOptions& opt) {
    const HParams& hp = model.hparams();
    if (hp.head_dim % 32 != 0 || hp.head_dim > 256 || (hp.head_dim & (hp.head_dim - 1)) != 0)
        return make_error("cuda:{}: head_dim {} is not one the attention kernel takes (32, 64, 128, 256)", index,
                          hp.head_dim);
    TANDEM_ASSIGN(auto be, backend::make_cuda_backend(index));
    auto layers = std::make_unique<CudaLayers>(model, std::move(be), opt);
    TANDEM_TRY(layers->init());
    return std::unique_ptr<DeviceLayers>(std::move(layers));
}

}  // namespace tandem
