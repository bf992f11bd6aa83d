// The CPU forward pass: named building blocks over a batch of tokens from one or more sequences,
// and the per-architecture chain of them (qwen3moe.cpp). Activations are row-major
// [n_tokens][width]; the tokens of all sequences of a step go through every weight matrix
// together (the weights are read once per step), only attention looks at each sequence's pages.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "kernels/reference/attention.h"
#include "model/device_layers.h"
#include "model/model.h"
#include "runtime/kv_cache.h"

namespace tandem {

// Wall time per stage, accumulated over eval() calls (for `tandem bench`).
struct StageTimes {
    double attention = 0, router = 0, experts = 0, dense_ffn = 0, lm_head = 0, other = 0;  // seconds
    double total() const { return attention + router + experts + dense_ffn + lm_head + other; }
};

// Grows a scratch vector to at least n elements (never shrinks) and returns its data.
template <typename T>
T* grow(std::vector<T>& v, size_t n) {
    if (v.size() < n) v.resize(n);
    return v.data();
}

// One sequence's part of a batch: n tokens at positions pos0.. whose keys and values go to (and
// whose attention reads) the pages of its block table, which must cover pos0 + n positions.
struct SeqChunk {
    const int32_t* tokens = nullptr;
    int64_t n = 0;
    int64_t pos0 = 0;
    const int32_t* pages = nullptr;
    int64_t n_pages = 0;
    bool want_logits = false;  // logits of the chunk's last token
    bool all_logits = false;   // logits of every token of the chunk (prompt logprobs)
};

class Forward {
public:
    // device: the hybrid forward (model/device_layers.h): everything but the routed experts runs
    // there, the KV pages live there (make_cache/make_pool then hold the geometry only, and one
    // pool is served at a time: another pool's geometry reallocates the device pages). Null: all
    // on the CPU.
    Forward(const Model& model, ThreadPool& pool, DeviceLayers* device = nullptr);

    // Evaluates n tokens at positions kv.n_past.. and appends their keys/values to kv.
    // logits receives n_vocab floats for the last token, or for every token when all_logits.
    Status eval(KvCache& kv, const int32_t* tokens, int64_t n, std::vector<float>& logits, bool all_logits = false);

    // Evaluates the chunks of several sequences in one pass over the weights. logits receives
    // n_vocab floats for each chunk with want_logits (c.n rows for one with all_logits), in chunk order.
    Status eval_batch(KvPool& pool, const std::vector<SeqChunk>& chunks, std::vector<float>& logits);

    KvCache make_cache(int64_t n_ctx) const;
    KvPool make_pool(int64_t page_size, int64_t n_pages) const;

    StageTimes& stage_times() { return times_; }

    // Routing statistics: when on, every routed (token, expert) pair is counted per layer
    // (counts[il * n_expert + e]); --gpu-experts picks the most used experts from them.
    void count_experts(bool on) {
        count_experts_ = on;
        if (on) expert_counts_.assign((size_t)(hp_.n_layer * hp_.n_expert), 0);
    }
    const std::vector<int64_t>& expert_counts() const { return expert_counts_; }

    // Called with the input rows of every dense linear layer (x: n rows of w.ne[0]); for
    // calibrating static W8A8 activation ranges. Unset: nothing is called.
    using InputObserver = std::function<void(const Tensor& w, const float* x, int64_t n)>;
    void set_input_observer(InputObserver f) { observer_ = std::move(f); }

private:
    friend class CpuDeviceLayers;  // the device half on these blocks (cpu_device_layers.h)

    // fn(t) for t < n, over the pool when n is large enough to be worth it (t's are independent)
    void for_tokens(int64_t n, const std::function<void(int64_t)>& fn);
    // building blocks (builders.cpp)
    void embed(const int32_t* tokens, int64_t n, float* x);
    void norm(const float* x, const std::vector<float>& w, int64_t n, int64_t width, float* out,
              const std::vector<float>* bias = nullptr);
    // y[t][r] = W[row0 + r] . x[t] for r < n_rows; rows are ne[0] wide.
    void linear(const Tensor& w, int64_t row0, int64_t n_rows, const float* x, int64_t n, float* y);
    // W8A8 (int8_linear.cpp): linear() of an int8 matrix; activations quantized per token
    void linear_i8(const Tensor& w, int64_t row0, int64_t n_rows, const float* x, int64_t n, float* y);
    // int8 activation rows of n tokens of width `in` for w's scheme: into i8_x_ / i8_s_ / i8_sum_
    void quantize_i8(const Int8Linear& q, const float* x, int64_t n, int64_t in);
    // rows [row, row + nr) of int8 matrix w for activation rows xq[s] (scale xs[s], sum xsum[s]),
    // s in [s0, s1): y[s * ldy + r] for r < nr
    void rows_i8(const Tensor& w, int64_t row, int64_t nr, const int8_t* const* xq, const float* xs,
                 const int32_t* xsum, int64_t s0, int64_t s1, float* y, int64_t ldy);
    struct ExpertActs {  // one expert matrix's activation rows, per routed slot
        const void* const* conv = nullptr;  // converted to the weight's vec_dot_type
        const int8_t* const* q = nullptr;   // or int8 (W8A8), with each slot's scale and sum
        const float* scale = nullptr;
        const int32_t* sum = nullptr;
    };
    void expert_rows(const Tensor& w, int64_t row, int64_t nr, int64_t in, const ExpertActs& a, int64_t s0, int64_t s1,
                     float* y, int64_t ldy);
    void linear3(const std::array<const Tensor*, 3>& ws, const std::array<float*, 3>& ys, const float* x, int64_t n);
    void attention(int il, const float* x, int64_t n, float* out);
    void attend(int il, const float* q, int64_t n, float* o);  // attention's core on the kernel table's kernel
    void moe(int il, const float* x, int64_t n, float* out);  // route(), then moe_experts()
    // the router of layer il: moe_slots_ = K (expert, token, weight) per token, in token order,
    // best first, the weights renormalised to sum 1
    void route(int il, const float* x, int64_t n);
    // the routed experts of layer il over the routing in moe_slots_ (K slots per token, in
    // token order): out (n, D) = sum over a token's slots of weight * expert(x)
    void moe_experts(int il, const float* x, int64_t n, float* out);
    void dense_ffn(int il, const float* x, int64_t n, float* out);
    void lm_head(const float* x, int64_t n, float* logits);
    void add(float* x, const float* y, int64_t n);  // x += y for n token rows (the residual)

    void layer(int il, float* x, int64_t n);  // the per-architecture block
    // its first half: x += attention(norm(x)); cur_ then holds norm(x) of the FFN (its input)
    float* attention_block(int il, float* x, int64_t n);
    // the RoPE angles of every token of the batch (tok_pos_) into rope_cs_
    void rope_table(int64_t n);
    // logits (out_rows.size(), n_vocab) of the rows out_rows of x: gathered, final norm, LM head
    void logits_of_rows(const float* x, const std::vector<int64_t>& out_rows, float* logits);
    // runs the layers over the current batch (batch_ below) and the LM head on rows out_rows
    Status run(const std::vector<int32_t>& tokens, const std::vector<int64_t>& out_rows, std::vector<float>& logits);
    // run() of the hybrid forward: the device's layers with the routed experts in between
    Status run_hybrid(const std::vector<int32_t>& tokens, const std::vector<int64_t>& out_rows,
                      std::vector<float>& logits);

    const Model& model_;
    const HParams& hp_;
    const ref::RopeFreqs rope_;  // the model's RoPE frequencies (plain, linear or YaRN)
    ThreadPool& pool_;
    DeviceLayers* device_ = nullptr;
    StageTimes times_;
    InputObserver observer_;

    // the batch being evaluated: per token its position and its sequence's block table
    KvPool* pool_kv_ = nullptr;
    std::vector<int64_t> tok_pos_;
    std::vector<const int32_t*> tok_pages_;
    std::vector<int32_t> tokens_;
    std::vector<int64_t> out_rows_;
    std::vector<float> rope_cs_;  // per token: its position's RoPE cos/sin (ref::rope_neox_table)

    struct Slot {  // one routed (token, expert) pair
        int64_t expert;
        int64_t token;
        float weight;
    };

    // scratch, grown on demand and reused across calls (no allocation in a decode step)
    std::vector<float> x_, xout_, cur_, delta_, tmp_, q_, k_, v_, attn_, gate_, up_, ffn_out_, router_;
    std::vector<uint8_t> act_, act2_, act3_;  // activations converted to a weight's dot-product type
    std::vector<const void*> act_ptrs_;       // per token (or routed slot): its converted activations
    std::vector<int8_t> i8_x_;                // W8A8: int8 activation rows,
    std::vector<float> i8_s_;                 // their scales (dynamic) or 1 (static),
    std::vector<int32_t> i8_sum_;             // their sums (asymmetric weights)
    std::vector<const int8_t*> i8_ptrs_, moe_q8_ptrs_;
    std::vector<float> moe_q8_scale_;
    std::vector<int32_t> moe_q8_sum_;
    std::vector<ref::AttnJob> attn_jobs_;
    std::vector<int64_t> attn_part_row_;      // per job: its first row in attn_parts_, or -1 (not split)
    std::vector<float> attn_parts_;           // outputs, then lse, of the parts of split jobs
    struct AttnMerge {                        // jobs [first_job, first_job + parts) merged into out
        size_t first_job;
        int64_t parts;
        float* out;
    };
    std::vector<AttnMerge> attn_merges_;
    std::vector<Slot> moe_slots_;
    std::vector<DeviceLayers::ExpertPair> dev_pairs_;  // hybrid: this layer's pairs the device runs
    bool count_experts_ = false;
    std::vector<int64_t> expert_counts_;
    std::vector<std::pair<int64_t, int64_t>> moe_groups_;
    std::vector<int64_t> moe_idx_;
    std::vector<int64_t> moe_tok_slots_;
};

}  // namespace tandem
