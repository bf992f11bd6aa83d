#include "model/cpu_device_layers.h"

#include <algorithm>
#include <optional>

#include "model/forward.h"

namespace tandem {

// A friend of Forward: it drives a CPU Forward's blocks in the order of Forward::layer().
class CpuDeviceLayers final : public DeviceLayers {
public:
    CpuDeviceLayers(const Model& m, ThreadPool& pool) : m_(m), hp_(m.hparams()), f_(m, pool) {}

    std::string name() const override { return "cpu-split (the device half on the CPU forward's blocks)"; }
    bool on_host() const override { return true; }

    Status make_pool(int64_t page_size, int64_t n_pages) override {
        if (kv_ && kv_->page_size() == page_size && kv_->n_pages() == n_pages) return {};
        kv_.emplace(f_.make_pool(page_size, n_pages));
        return {};
    }

    Status begin(const std::vector<int32_t>& tokens, const std::vector<int64_t>& pos,
                 const std::vector<const int32_t*>& pages) override {
        if (!kv_) return make_error("{}: no KV cache (make_pool first)", name());
        n_ = (int64_t)tokens.size();
        f_.pool_kv_ = &*kv_;
        f_.tokens_ = tokens;
        f_.tok_pos_ = pos;
        f_.tok_pages_ = pages;
        f_.rope_table(n_);
        f_.embed(tokens.data(), n_, grow(x_, (size_t)(n_ * hp_.n_embd)));
        return {};
    }

    Result<Routed> attention_and_route(int il) override {
        const int64_t D = hp_.n_embd, K = hp_.n_expert_used;
        streamed_ = -1;
        const float* cur = f_.attention_block(il, x_.data(), n_);  // (f_'s scratch: valid until the next call)
        il_ = il;
        cur_ = cur;
        f_.route(il, cur, n_);
        int32_t* ids = grow(ids_, (size_t)(n_ * K));
        float* w = grow(w_, (size_t)(n_ * K));
        for (size_t i = 0; i < f_.moe_slots_.size(); ++i) {  // token order, best first
            ids[i] = (int32_t)f_.moe_slots_[i].expert;
            w[i] = f_.moe_slots_[i].weight;
        }
        return Routed{cur, ids, w, grow(out_, (size_t)(n_ * D))};
    }

    Status add_ffn(bool with_cpu_share) override {
        if (with_cpu_share) f_.add(x_.data(), out_.data(), n_);
        return {};
    }

    Status place_experts(const std::vector<std::vector<int32_t>>& experts) override {
        on_device_.assign((size_t)hp_.n_layer, {});
        for (size_t il = 0; il < experts.size() && il < (size_t)hp_.n_layer; ++il) {
            if (experts[il].empty()) continue;
            on_device_[il].assign((size_t)hp_.n_expert, 0);
            for (int32_t e : experts[il]) {
                if (e < 0 || e >= hp_.n_expert) return make_error("{}: layer {}: no expert {}", name(), il, e);
                on_device_[il][(size_t)e] = 1;
            }
        }
        return {};
    }
    uint64_t expert_bytes() const override {
        const LayerWeights& l = m_.layer(0);
        uint64_t b = 0;
        for (const Tensor* t : {&l.ffn_gate_exps, &l.ffn_up_exps, &l.ffn_down_exps})
            if (t->data) b += (uint64_t)t->ne[1] * t->row_bytes;
        return b;
    }
    Status enable_expert_streaming(int64_t min_tokens) override {
        stream_from_ = std::max<int64_t>(min_tokens, 0);
        return {};
    }
    int64_t stream_experts_from() const override { return stream_from_; }
    Status stream_experts(int il) override {
        if (il != il_) return make_error("{}: stream_experts({}) after attention_and_route({})", name(), il, il_);
        streamed_ = il;  // (this "device" computes any expert: nothing to upload)
        return {};
    }
    const std::vector<uint8_t>* experts_on_device(int il) const override {
        return (size_t)il < on_device_.size() && !on_device_[(size_t)il].empty() ? &on_device_[(size_t)il] : nullptr;
    }
    // the "device's" share with the CPU forward's expert code, into the residual at once
    Status run_device_experts(const std::vector<ExpertPair>& pairs) override {
        const std::vector<uint8_t>* held = streamed_ == il_ ? nullptr : experts_on_device(il_);
        f_.moe_slots_.clear();
        for (const ExpertPair& p : pairs) {
            if (streamed_ != il_ && (!held || !(*held)[(size_t)p.expert]))
                return make_error("{}: layer {}: expert {} is not on the device", name(), il_, p.expert);
            f_.moe_slots_.push_back({p.expert, p.token, p.weight});
        }
        float* out = grow(dev_out_, (size_t)(n_ * hp_.n_embd));
        f_.moe_experts(il_, cur_, n_, out);
        f_.add(x_.data(), out, n_);
        return {};
    }

    Status dense_layer(int il) override {
        f_.layer(il, x_.data(), n_);
        return {};
    }

    Status logits(const std::vector<int64_t>& rows, float* out) override {
        f_.logits_of_rows(x_.data(), rows, out);
        return {};
    }

private:
    const Model& m_;
    const HParams& hp_;
    Forward f_;
    std::optional<KvPool> kv_;
    int64_t n_ = 0;
    int il_ = 0;                 // the layer attention_and_route ran last,
    const float* cur_ = nullptr;  // and its FFN input
    std::vector<std::vector<uint8_t>> on_device_;  // place_experts: per layer, per expert
    int64_t stream_from_ = 0;  // enable_expert_streaming
    int streamed_ = -1;        // the layer stream_experts() made whole
    std::vector<float> x_, out_, w_, dev_out_;
    std::vector<int32_t> ids_;
};

std::unique_ptr<DeviceLayers> make_cpu_device_layers(const Model& model, ThreadPool& pool) {
    return std::make_unique<CpuDeviceLayers>(model, pool);
}

}  // namespace tandem
