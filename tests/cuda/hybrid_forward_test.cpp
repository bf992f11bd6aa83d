// The hybrid forward (routed experts on the CPU, the rest on CUDA) against the CPU forward on
// synthetic models: prefill logits of every position, greedy decode steps, and two sequences in
// one batch over a shared paged pool. The CPU side runs everywhere; the hybrid side skips where
// there is no device. Tolerance: the CPU quantizes activations for its dot products (Q8_K/Q8_0)
// where the GPU keeps them in f32, so logits agree to a few percent of their range, and the
// greedy tokens agree wherever the top two logits are further apart than the difference seen.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "model/device_layers.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/synthetic.h"
#include "../unit/synthetic_model_util.h"
#include "../unit/test_util.h"

namespace tandem {
namespace {

struct Case {
    const char* name;
    QuantMix quant;
    ModelFormat format;
    bool moe;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::unique_ptr<Model> make_model(const Case& c, const TempDir& dir) {
    SyntheticSpec spec;
    spec.n_layer = 3;
    spec.n_ctx = 1024;
    spec.moe = c.moe;
    spec.quant = c.quant;
    spec.format = c.format;
    spec.seed = 7;
    return write_and_load(spec, dir.path(std::string(c.name) + (c.format == ModelFormat::gguf ? ".gguf" : "")));
}

int32_t argmax(const float* x, int64_t n) { return (int32_t)(std::max_element(x, x + n) - x); }

// Logit rows of width V: close to a few percent of the range, same greedy token where clear.
void expect_same_logits(const std::vector<float>& hyb, const std::vector<float>& cpu, int64_t V, const std::string& what) {
    ASSERT_EQ(hyb.size(), cpu.size()) << what;
    for (size_t r = 0; r < cpu.size() / (size_t)V; ++r) {
        const float* a = hyb.data() + r * V;
        const float* b = cpu.data() + r * V;
        float range = 0, diff = 0;
        for (int64_t i = 0; i < V; ++i) {
            if (std::isfinite(b[i])) range = std::max(range, std::fabs(b[i]));
            diff = std::isfinite(a[i]) ? std::max(diff, std::fabs(a[i] - b[i])) : INFINITY;  // (max drops NaN)
        }
        EXPECT_LE(diff, 0.03f * range + 1e-3f) << what << " row " << r;
        std::vector<float> s(b, b + V);
        std::partial_sort(s.begin(), s.begin() + 2, s.end(), std::greater<float>());
        if (s[0] - s[1] > 2.5f * diff) {
            EXPECT_EQ(argmax(a, V), argmax(b, V)) << what << " row " << r;
        }
    }
}

class HybridForward : public ::testing::TestWithParam<Case> {};

TEST_P(HybridForward, MatchesTheCpuForward) {
    TempDir dir;
    auto model = make_model(GetParam(), dir);
    ASSERT_TRUE(model);
    const HParams& h = model->hparams();
    ThreadPool pool(2);
    ASSERT_TRUE(model->pack_for_cpu(pool, /*experts_only=*/false).ok());

    // CPU side: 37 prompt tokens (all positions' logits), then 6 greedy steps
    std::vector<int32_t> prompt;
    for (int i = 0; i < 37; ++i) prompt.push_back((int32_t)((i * 7919 + 13) % 150000));
    Forward cpu(*model, pool);
    KvCache kv_cpu = cpu.make_cache(256);
    std::vector<float> prefill_cpu, logits;
    ASSERT_TRUE(cpu.eval(kv_cpu, prompt.data(), (int64_t)prompt.size(), prefill_cpu, /*all_logits=*/true).ok());
    std::vector<int32_t> steps{argmax(prefill_cpu.data() + (prompt.size() - 1) * h.n_vocab, h.n_vocab)};
    std::vector<std::vector<float>> decode_cpu;
    for (int i = 0; i < 6; ++i) {
        ASSERT_TRUE(cpu.eval(kv_cpu, &steps.back(), 1, logits).ok());
        decode_cpu.push_back(logits);
        steps.push_back(argmax(logits.data(), h.n_vocab));
    }
    // two sequences in one batch over a shared pool of 16-position pages (out of order)
    const std::vector<int32_t> pages_a{5, 2, 7, 0}, pages_b{1, 6, 3};
    std::vector<int32_t> a(prompt.begin(), prompt.begin() + 29), b(prompt.rbegin(), prompt.rbegin() + 21);
    auto batch = [&](Forward& f, KvPool& kv, std::vector<float>& out) {
        std::vector<SeqChunk> chunks{{a.data(), (int64_t)a.size(), 0, pages_a.data(), (int64_t)pages_a.size(), true},
                                     {b.data(), (int64_t)b.size(), 0, pages_b.data(), (int64_t)pages_b.size(), true}};
        if (Status st = f.eval_batch(kv, chunks, out); !st) return st;
        // one more step of each, the second sequence first this time
        const int32_t ta = argmax(out.data(), h.n_vocab), tb = argmax(out.data() + h.n_vocab, h.n_vocab);
        std::vector<SeqChunk> step{{&tb, 1, (int64_t)b.size(), pages_b.data(), (int64_t)pages_b.size(), true},
                                   {&ta, 1, (int64_t)a.size(), pages_a.data(), (int64_t)pages_a.size(), true}};
        std::vector<float> more;
        if (Status st = f.eval_batch(kv, step, more); !st) return st;
        out.insert(out.end(), more.begin(), more.end());
        return Status{};
    };
    KvPool pool_cpu = cpu.make_pool(16, 8);
    std::vector<float> batch_cpu;
    ASSERT_TRUE(batch(cpu, pool_cpu, batch_cpu).ok());

    // hybrid side: kernel by kernel, then with decode steps as recorded CUDA graphs (recorded on
    // the first step of each batch size, replayed after; the batch's pool reallocates the pages,
    // so its graphs are recorded anew)
    // then graphed with half the routed experts of every layer on the device as well (their pairs
    // run there, the rest on the CPU meanwhile)
    // and last with --gpu-prefill 20: the 37-token prompt and the 50-token batch run every routed
    // expert on the device, each layer's experts uploaded as the batch reaches it
    for (const int mode : {0, 1, 2, 3}) {
        const bool graphs = mode == 1 || mode == 2, experts = mode == 2, streamed = mode == 3;
        if (streamed && !(h.is_moe() && GetParam().format == ModelFormat::gguf)) continue;
        const std::string how = experts ? " (CUDA graphs, experts on the device)" : graphs ? " (CUDA graphs)"
                                : streamed ? " (prefill experts streamed to the device)" : "";
        CudaLayerOptions opt;
        opt.graphs = graphs;
        auto dev = make_cuda_layers(*model, 0, opt);
        if (!dev) GTEST_SKIP() << dev.error().message << " (hybrid part skipped; the CPU side ran)";
        if (experts && h.is_moe() && GetParam().format == ModelFormat::gguf) {  // (W8A8 experts stay on the CPU)
            std::vector<std::vector<int32_t>> half((size_t)h.n_layer);
            for (int64_t il = 0; il < h.n_layer; ++il)
                for (int32_t e = (int32_t)(il % 2); e < h.n_expert; e += 2) half[(size_t)il].push_back(e);
            ASSERT_TRUE((*dev)->place_experts(half).ok());
            ASSERT_NE((*dev)->experts_on_device(0), nullptr);
        }
        if (streamed) {
            ASSERT_TRUE((*dev)->enable_expert_streaming(20).ok());
            ASSERT_EQ((*dev)->stream_experts_from(), 20);
        }
        Forward hyb(*model, pool, dev->get());
        KvCache kv_hyb = hyb.make_cache(256);
        EXPECT_FALSE(kv_hyb.pool.has_storage());  // the pages live on the device
        std::vector<float> prefill_hyb;
        ASSERT_TRUE(hyb.eval(kv_hyb, prompt.data(), (int64_t)prompt.size(), prefill_hyb, true).ok());
        expect_same_logits(prefill_hyb, prefill_cpu, h.n_vocab, "prefill" + how);
        for (int i = 0; i < 6; ++i) {  // fed the CPU's tokens, so both read the same history
            ASSERT_TRUE(hyb.eval(kv_hyb, &steps[(size_t)i], 1, logits).ok());
            expect_same_logits(logits, decode_cpu[(size_t)i], h.n_vocab, "decode step " + std::to_string(i) + how);
        }
        KvPool pool_hyb = hyb.make_pool(16, 8);
        std::vector<float> batch_hyb;
        ASSERT_TRUE(batch(hyb, pool_hyb, batch_hyb).ok());
        expect_same_logits(batch_hyb, batch_cpu, h.n_vocab, "batch" + how);
        const StageTimes& t = hyb.stage_times();
        EXPECT_GT(t.attention, 0.0);
        if (h.is_moe()) {
            EXPECT_GT(t.experts, 0.0);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Models, HybridForward,
                         ::testing::Values(Case{"f16", QuantMix::f16, ModelFormat::gguf, true},
                                           Case{"q8_0", QuantMix::q8_0, ModelFormat::gguf, true},
                                           Case{"q4_k_m", QuantMix::q4_k_m, ModelFormat::gguf, true},
                                           Case{"dense_q4_k_m", QuantMix::q4_k_m, ModelFormat::gguf, false},
                                           Case{"w8a8_ct", QuantMix::bf16, ModelFormat::hf_w8a8_ct, true}),
                         [](const ::testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

// Runs everywhere: a CPU forward refuses a pool made for a hybrid one (no storage), and without
// a device make_cuda_layers says why in one line.
TEST(HybridForwardNoDevice, GeometryOnlyPoolsAndTheNoDeviceError) {
    TempDir dir;
    auto model = make_model(Case{"f16", QuantMix::f16, ModelFormat::gguf, true}, dir);
    ASSERT_TRUE(model);
    ThreadPool pool(1);
    Forward cpu(*model, pool);
    KvCache kv(model->hparams().n_layer, 64, model->hparams().n_head_kv, model->hparams().head_dim,
               /*with_storage=*/false);
    EXPECT_EQ(kv.pool.bytes(), 0u);
    std::vector<float> logits;
    const int32_t tok = 100;
    Status st = cpu.eval(kv, &tok, 1, logits);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().message.find("without storage"), std::string::npos) << st.error().message;
    auto dev = make_cuda_layers(*model, 0);
    if (dev) GTEST_SKIP() << "a CUDA device is here: " << (*dev)->name();
    EXPECT_EQ(dev.error().message.find('\n'), std::string::npos);
    EXPECT_NE(dev.error().message.find("CUDA"), std::string::npos) << dev.error().message;
}

}  // namespace
}  // namespace tandem
