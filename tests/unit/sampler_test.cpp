// Sampler: greedy, truncations (top-k, top-p, min-p) and seeded reproducibility.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

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

}  // namespace
}  // namespace tandem
