// The hybrid driver (Forward::run_hybrid: the device half through DeviceLayers, the routed experts
// on the CPU in between) on the CPU's own device half (cpu_device_layers.h) gives the CPU
// forward's logits bit for bit: prefill of every position, decode steps, a two-sequence paged
// batch with steps in another order, for a MoE and a dense model. Runs everywhere; the CUDA
// device half is held to the same driver by tests/cuda/hybrid_forward_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "model/cpu_device_layers.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/synthetic.h"
#include "synthetic_model_util.h"
#include "test_util.h"

namespace tandem {
namespace {

std::unique_ptr<Model> make_model(bool moe, QuantMix quant, const TempDir& dir) {
    SyntheticSpec spec;
    spec.n_layer = 2;
    spec.n_ctx = 512;
    spec.moe = moe;
    spec.quant = quant;
    return write_and_load(spec, dir.path(moe ? "moe.gguf" : "dense.gguf"));
}

int32_t argmax(const float* x, int64_t n) { return (int32_t)(std::max_element(x, x + n) - x); }

// Logits of: a 23-token prompt (every position), 4 greedy steps, then two sequences in one batch
// over a shared pool of 16-position pages and one more step of each in reverse order.
std::vector<std::vector<float>> script(Forward& f, int64_t n_vocab) {
    std::vector<std::vector<float>> out;
    std::vector<int32_t> prompt;
    for (int i = 0; i < 23; ++i) prompt.push_back((int32_t)((i * 6007 + 11) % 150000));
    KvCache kv = f.make_cache(128);
    std::vector<float> logits;
    EXPECT_TRUE(f.eval(kv, prompt.data(), (int64_t)prompt.size(), logits, true).ok());
    out.push_back(logits);
    int32_t tok = argmax(logits.data() + (prompt.size() - 1) * n_vocab, n_vocab);
    for (int i = 0; i < 4; ++i) {
        EXPECT_TRUE(f.eval(kv, &tok, 1, logits).ok());
        out.push_back(logits);
        tok = argmax(logits.data(), n_vocab);
    }
    KvPool pool = f.make_pool(16, 6);
    const std::vector<int32_t> pa{4, 1}, pb{0, 5, 2};
    std::vector<int32_t> a(prompt.begin(), prompt.begin() + 17), b(prompt.rbegin(), prompt.rbegin() + 20);
    std::vector<SeqChunk> chunks{{a.data(), 17, 0, pa.data(), 2, true}, {b.data(), 20, 0, pb.data(), 3, true}};
    EXPECT_TRUE(f.eval_batch(pool, chunks, logits).ok());
    out.push_back(logits);
    const int32_t ta = argmax(logits.data(), n_vocab), tb = argmax(logits.data() + n_vocab, n_vocab);
    std::vector<SeqChunk> step{{&tb, 1, 20, pb.data(), 3, true}, {&ta, 1, 17, pa.data(), 2, true}};
    EXPECT_TRUE(f.eval_batch(pool, step, logits).ok());
    out.push_back(logits);
    return out;
}

// Every call's logits within 1e-4 of the largest |logit| of the reference's (the split sums the
// experts in another order)
void expect_close_calls(const std::vector<std::vector<float>>& got, const std::vector<std::vector<float>>& want,
                        const std::string& what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    for (size_t i = 0; i < want.size(); ++i) {
        ASSERT_EQ(got[i].size(), want[i].size()) << what;
        float worst = 0, mx = 0;
        for (size_t j = 0; j < want[i].size(); ++j) {
            worst = std::max(worst, std::fabs(got[i][j] - want[i][j]));
            mx = std::max(mx, std::fabs(want[i][j]));
        }
        EXPECT_LE(worst, 1e-4f * mx) << "call " << i << ", " << what;
    }
}

void expect_bitwise_same(bool moe, QuantMix quant) {
    TempDir dir;
    auto model = make_model(moe, quant, dir);
    ASSERT_TRUE(model);
    ThreadPool pool(2);
    ASSERT_TRUE(model->pack_for_cpu(pool).ok());
    Forward cpu(*model, pool);
    const auto want = script(cpu, model->hparams().n_vocab);

    auto dev = make_cpu_device_layers(*model, pool);
    Forward hybrid(*model, pool, dev.get());
    const auto got = script(hybrid, model->hparams().n_vocab);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
        ASSERT_EQ(got[i].size(), want[i].size()) << "call " << i;
        EXPECT_TRUE(got[i] == want[i]) << "call " << i << ": logits differ";
    }
    const StageTimes& t = hybrid.stage_times();
    EXPECT_GT(moe ? t.attention : t.dense_ffn, 0.0);
    if (moe) {
        EXPECT_GT(t.experts, 0.0);
    }
}

TEST(HybridDriver, MoeMatchesTheCpuForwardBitForBit) { expect_bitwise_same(true, QuantMix::q4_k_m); }
TEST(HybridDriver, DenseMatchesTheCpuForwardBitForBit) { expect_bitwise_same(false, QuantMix::q8_0); }

// --gpu-experts on the CPU's device half: the routed pairs of the experts placed there run
// there (into the residual), the rest on the CPU, summed in another order than the CPU forward
// does: the same logits up to float rounding (an F32 model: no activation quantization to amplify
// it), whatever the split, and the routing counts add up.
TEST(HybridDriver, DeviceExpertsShareTheWorkAndAgree) {
    TempDir dir;
    auto model = make_model(true, QuantMix::f32, dir);
    ASSERT_TRUE(model);
    const HParams& h = model->hparams();
    ThreadPool pool(2);
    Forward cpu(*model, pool);
    const auto want = script(cpu, h.n_vocab);
    std::vector<std::vector<int32_t>> all(h.n_layer);
    for (auto& l : all)
        for (int32_t e = 0; e < h.n_expert; ++e) l.push_back(e);
    for (const auto& placed : std::vector<std::vector<std::vector<int32_t>>>{{{0, 2, 5}, {1, 7}}, {{}, {3}}, all}) {
        auto dev = make_cpu_device_layers(*model, pool);
        ASSERT_TRUE(dev->place_experts(placed).ok());
        EXPECT_EQ(dev->experts_on_device(0) != nullptr, !placed[0].empty());
        Forward hybrid(*model, pool, dev.get());
        hybrid.count_experts(true);
        expect_close_calls(script(hybrid, h.n_vocab), want,
                           std::to_string(placed[0].size()) + "+" + std::to_string(placed[1].size()) +
                               " experts on the device");
        // 23 + 4 + 37 + 2 tokens went through each layer, K pairs each
        const auto& c = hybrid.expert_counts();
        for (int64_t il = 0; il < h.n_layer; ++il) {
            int64_t sum = 0;
            for (int64_t e = 0; e < h.n_expert; ++e) sum += c[(size_t)(il * h.n_expert + e)];
            EXPECT_EQ(sum, (23 + 4 + 37 + 2) * h.n_expert_used) << "layer " << il;
        }
    }
    auto dev = make_cpu_device_layers(*model, pool);
    EXPECT_FALSE(dev->place_experts({{0, 99}}).ok());
}

// --gpu-prefill on the CPU's device half: batches of 20+ tokens (the 23-token prompt, the
// 17 + 20-token paged batch) run every routed pair on the "device" after stream_experts(), the
// CPU none of them; smaller ones (decode steps) route as before, here with experts 0, 2, 5 of
// layer 0 placed too. Same logits as the CPU forward up to float rounding.
TEST(HybridDriver, StreamedPrefillRunsEveryExpertOnTheDevice) {
    struct Counting final : DeviceLayers {
        std::unique_ptr<DeviceLayers> in;
        int64_t streamed = 0, device_pairs = 0, n = 0;
        std::string name() const override { return "counting"; }
        bool on_host() const override { return true; }
        Status make_pool(int64_t a, int64_t b) override { return in->make_pool(a, b); }
        Status begin(const std::vector<int32_t>& t, const std::vector<int64_t>& p,
                     const std::vector<const int32_t*>& pg) override {
            n = (int64_t)t.size();
            return in->begin(t, p, pg);
        }
        Result<Routed> attention_and_route(int il) override { return in->attention_and_route(il); }
        Status add_ffn(bool c) override { return in->add_ffn(c); }
        Status dense_layer(int il) override { return in->dense_layer(il); }
        Status place_experts(const std::vector<std::vector<int32_t>>& e) override { return in->place_experts(e); }
        const std::vector<uint8_t>* experts_on_device(int il) const override { return in->experts_on_device(il); }
        Status enable_expert_streaming(int64_t m) override { return in->enable_expert_streaming(m); }
        int64_t stream_experts_from() const override { return in->stream_experts_from(); }
        Status stream_experts(int il) override {
            EXPECT_GE(n, 20);
            ++streamed;
            return in->stream_experts(il);
        }
        Status run_device_experts(const std::vector<ExpertPair>& pairs) override {
            device_pairs += (int64_t)pairs.size();
            return in->run_device_experts(pairs);
        }
        Status logits(const std::vector<int64_t>& rows, float* out) override { return in->logits(rows, out); }
    };
    TempDir dir;
    auto model = make_model(true, QuantMix::f32, dir);
    ASSERT_TRUE(model);
    const HParams& h = model->hparams();
    ThreadPool pool(2);
    Forward cpu(*model, pool);
    const auto want = script(cpu, h.n_vocab);
    Counting dev;
    dev.in = make_cpu_device_layers(*model, pool);
    ASSERT_TRUE(dev.place_experts({{0, 2, 5}}).ok());
    ASSERT_TRUE(dev.enable_expert_streaming(20).ok());
    EXPECT_EQ(dev.stream_experts_from(), 20);
    Forward hybrid(*model, pool, &dev);
    expect_close_calls(script(hybrid, h.n_vocab), want, "streamed prefill");
    // two streamed batches (23 and 37 tokens) x every layer; all their pairs on the device, plus
    // the decode steps' pairs of experts 0, 2, 5 of layer 0
    EXPECT_EQ(dev.streamed, 2 * h.n_layer);
    EXPECT_GE(dev.device_pairs, (23 + 37) * h.n_expert_used * h.n_layer);
    EXPECT_LT(dev.device_pairs, (23 + 37 + 6) * h.n_expert_used * h.n_layer);
    // a device that cannot: a clear error (the base class), and 0 turns it off
    struct NoExperts final : DeviceLayers {
        std::string name() const override { return "plain"; }
        Status make_pool(int64_t, int64_t) override { return {}; }
        Status begin(const std::vector<int32_t>&, const std::vector<int64_t>&, const std::vector<const int32_t*>&) override {
            return {};
        }
        Result<Routed> attention_and_route(int) override { return make_error("no"); }
        Status add_ffn(bool) override { return {}; }
        Status dense_layer(int) override { return {}; }
        Status logits(const std::vector<int64_t>&, float*) override { return {}; }
    } plain;
    EXPECT_FALSE(plain.enable_expert_streaming(64).ok());
    EXPECT_TRUE(plain.enable_expert_streaming(0).ok());
}

TEST(HybridDriver, ExpertIdsOutOfRangeAreAnError) {
    // a device half that routes to an expert that does not exist: one clear error, no crash
    struct Bad final : DeviceLayers {
        std::unique_ptr<DeviceLayers> inner;
        std::vector<int32_t> ids;
        std::string name() const override { return "bad"; }
        Status make_pool(int64_t a, int64_t b) override { return inner->make_pool(a, b); }
        Status begin(const std::vector<int32_t>& t, const std::vector<int64_t>& p,
                     const std::vector<const int32_t*>& pg) override {
            return inner->begin(t, p, pg);
        }
        Result<Routed> attention_and_route(int il) override {
            TANDEM_ASSIGN(Routed r, inner->attention_and_route(il));
            ids.assign(r.ids, r.ids + 2);
            ids[1] = 999;
            r.ids = ids.data();
            return r;
        }
        Status add_ffn(bool c) override { return inner->add_ffn(c); }
        Status dense_layer(int il) override { return inner->dense_layer(il); }
        Status logits(const std::vector<int64_t>& rows, float* out) override { return inner->logits(rows, out); }
    };
    TempDir dir;
    auto model = make_model(true, QuantMix::f16, dir);
    ASSERT_TRUE(model);
    ThreadPool pool(1);
    Bad bad;
    bad.inner = make_cpu_device_layers(*model, pool);
    Forward f(*model, pool, &bad);
    KvCache kv = f.make_cache(64);
    std::vector<float> logits;
    const int32_t tok = 42;
    Status st = f.eval(kv, &tok, 1, logits);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().message.find("router chose expert 999 of 8"), std::string::npos) << st.error().message;
}

}  // namespace
}  // namespace tandem
