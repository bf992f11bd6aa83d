#include "model/cpu_device_layers.h"

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
        const float* cur = f_.attention_block(il, x_.data(), n_);  // (f_'s scratch: valid until the next call)
        f_.route(il, cur, n_);
        int32_t* ids = grow(ids_, (size_t)(n_ * K));
        float* w = grow(w_, (size_t)(n_ * K));
        for (size_t i = 0; i < f_.moe_slots_.size(); ++i) {  // token order, best first
            ids[i] = (int32_t)f_.moe_slots_[i].expert;
            w[i] = f_.moe_slots_[i].weight;
        }
        return Routed{cur, ids, w, grow(out_, (size_t)(n_ * D))};
    }

    Status add_ffn() override {
        f_.add(x_.data(), out_.data(), n_);
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
    std::vector<float> x_, out_, w_;
    std::vector<int32_t> ids_;
};

std::unique_ptr<DeviceLayers> make_cpu_device_layers(const Model& model, ThreadPool& pool) {
    return std::make_unique<CpuDeviceLayers>(model, pool);
}

}  // namespace tandem
