// Sampler: greedy, truncations (top-k, top-p, min-p) and seeded reproducibility.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "core/rng.h"
#include "runtime/sampler.h"

namespace tandem {
namespace {

const std::vector<float> kLogits = {1.0f, 3.0f, 2.5f, -1.0f, 2.9f, 0.0f};

TEST(Sampler, GreedyIsArgmax) {
    Sampler s({});
    EXPECT_EQ(s.sample(kLogits.data(), (int64_t)kLogits.size()), 1);
    EXPECT_EQ(argmax(kLogits.data(), (int64_t)kLogits.size()), 1);
}

TEST(Sampler, TopKOneIsGreedy) {
    SamplerParams p;
    p.temperature = 2.0f;
    p.top_k = 1;
    Sampler s(p);
    for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(kLogits.data(), (int64_t)kLogits.size()), 1);
}

TEST(Sampler, TruncationsKeepOnlyAllowedTokens) {
    SamplerParams p;
    p.temperature = 1.0f;
    p.top_k = 3;  // tokens 1, 4, 2
    p.seed = 7;
    Sampler s(p);
    for (int i = 0; i < 300; ++i) {
        const int t = s.sample(kLogits.data(), (int64_t)kLogits.size());
        EXPECT_TRUE(t == 1 || t == 4 || t == 2) << t;
    }
    p.top_k = 0;
    p.min_p = 0.8f;  // keeps tokens within 80% of the best probability: 1 (p=1) and 4 (e^-0.1 = 0.905)
    Sampler m(p);
    for (int i = 0; i < 300; ++i) {
        const int t = m.sample(kLogits.data(), (int64_t)kLogits.size());
        EXPECT_TRUE(t == 1 || t == 4) << t;
    }
    p.min_p = 0.0f;
    p.top_p = 0.01f;  // the smallest prefix reaching 1%: the best token alone
    Sampler tp(p);
    for (int i = 0; i < 50; ++i) EXPECT_EQ(tp.sample(kLogits.data(), (int64_t)kLogits.size()), 1);
}

TEST(Sampler, FrequenciesFollowSoftmaxAndSeedReproduces) {
    SamplerParams p;
    p.temperature = 1.0f;
    p.seed = 42;
    Sampler a(p), b(p);
    std::map<int, int> count;
    const int n = 20000;
    for (int i = 0; i < n; ++i) {
        const int t = a.sample(kLogits.data(), (int64_t)kLogits.size());
        ASSERT_EQ(t, b.sample(kLogits.data(), (int64_t)kLogits.size()));
        ++count[t];
    }
    double z = 0;
    for (float l : kLogits) z += std::exp(l);
    for (size_t i = 0; i < kLogits.size(); ++i) {
        const double expect = std::exp(kLogits[i]) / z;
        EXPECT_NEAR(count[(int)i] / (double)n, expect, 0.015) << "token " << i;
    }
}

// The definition, plainly: every candidate sorted best first (logit / temperature, ties to the
// lower id), softmax, min-p floor, top-p prefix, then the draw walking that order.
int32_t reference_sample(const std::vector<float>& logits, const SamplerParams& p, Rng& rng) {
    std::vector<std::pair<float, int32_t>> c(logits.size());
    for (size_t i = 0; i < logits.size(); ++i) c[i] = {logits[i] / p.temperature, (int32_t)i};
    std::sort(c.begin(), c.end(), [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
    size_t n = p.top_k > 0 ? std::min(c.size(), (size_t)p.top_k) : c.size();
    const float mx = c[0].first;
    double sum = 0.0;
    for (size_t i = 0; i < n; ++i) sum += (c[i].first = std::exp(c[i].first - mx));
    for (size_t i = 0; i < n; ++i) c[i].first = (float)(c[i].first / sum);
    if (p.min_p > 0.0f) {
        size_t keep = 1;
        while (keep < n && c[keep].first >= p.min_p * c[0].first) ++keep;
        n = keep;
    }
    if (p.top_p < 1.0f) {
        double cum = 0.0;
        size_t keep = 0;
        while (keep < n && (cum += c[keep++].first) < p.top_p) {
        }
        n = std::max<size_t>(1, keep);
    }
    double total = 0.0;
    for (size_t i = 0; i < n; ++i) total += c[i].first;
    double r = rng.uniform() * total;
    for (size_t i = 0; i < n; ++i)
        if ((r -= c[i].first) < 0.0) return c[i].second;
    return c[n - 1].second;
}

// The sampler orders the candidates lazily (the head first, more only when the walk needs it):
// the same token as the full sort, draw for draw, over peaked and flat vocabularies of 40K with
// repeated logits (ties) and every truncation.
TEST(Sampler, LazyOrderDrawsWhatTheFullSortDraws) {
    std::mt19937 gen(11);
    const int64_t V = 40000;
    int cases = 0;
    for (float spread : {0.05f, 1.0f, 3.0f}) {
        std::vector<float> lg((size_t)V);
        std::normal_distribution<float> g(0.0f, spread);
        for (auto& x : lg) x = std::round(g(gen) * 64.0f) / 64.0f;  // (coarse: many exact ties)
        for (int i = 0; i < 10; ++i) lg[gen() % V] += 8.0f * spread;
        for (SamplerParams p : {SamplerParams{1.0f}, SamplerParams{0.7f, 0, 0.9f}, SamplerParams{1.0f, 0, 0.999f},
                                SamplerParams{0.6f, 20, 0.95f}, SamplerParams{1.0f, 0, 1.0f, 0.05f},
                                SamplerParams{1.3f, 0, 0.8f, 0.001f}, SamplerParams{1.0f, 5000, 1.0f, 0.0f},
                                SamplerParams{2.0f, 0, 1.0f, 0.5f}}) {
            p.seed = 100 + (uint64_t)cases++;
            Sampler s(p);
            Rng ref(p.seed);
            for (int d = 0; d < 10; ++d)
                ASSERT_EQ(s.sample(lg.data(), V), reference_sample(lg, p, ref))
                    << "spread " << spread << ", T " << p.temperature << " top_k " << p.top_k << " top_p " << p.top_p
                    << " min_p " << p.min_p << ", draw " << d;
        }
    }
}

}  // namespace
}  // namespace tandem
