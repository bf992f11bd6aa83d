// Sampler: greedy, truncations (top-k, top-p, min-p) and seeded reproducibility.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
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

// The first of the largest, at every position and length around the 16-lane blocks, with ties.
TEST(Sampler, ArgmaxIsTheFirstLargest) {
    std::mt19937 gen(5);
    for (int64_t n : {1, 15, 16, 17, 33, 64, 1000, 1001}) {
        std::vector<float> v((size_t)n);
        for (int64_t at = 0; at < n; at += std::max<int64_t>(1, n / 37)) {
            for (auto& x : v) x = (float)(gen() % 50) - 60.0f;
            v[(size_t)at] = 5.0f;
            if (at + 3 < n) v[(size_t)at + 3] = 5.0f;  // a later tie
            EXPECT_EQ(argmax(v.data(), n), at) << "n " << n;
        }
    }
}

// The logprobs' helpers: log-sum-exp against a double-precision sum, the top ids against a
// sort (ties to the lower id), with masked (-inf) logits and lengths off the 16-lane blocks.
TEST(Sampler, LogSumExpAndTopIds) {
    std::mt19937 gen(9);
    std::normal_distribution<float> g(0.0f, 3.0f);
    for (int64_t n : {1, 7, 16, 100, 40007}) {
        std::vector<float> v((size_t)n);
        for (auto& x : v) x = std::round(g(gen) * 8.0f) / 8.0f;  // (ties)
        if (n > 10) v[3] = v[9] = -std::numeric_limits<float>::infinity();
        const float mx = *std::max_element(v.begin(), v.end());
        double sum = 0.0;
        for (float x : v) sum += std::exp((double)x - mx);
        EXPECT_NEAR(log_sum_exp(v.data(), n), mx + std::log(sum), 2e-6 * (1.0 + std::fabs(mx))) << n;
        std::vector<int32_t> order((size_t)n);
        for (int64_t i = 0; i < n; ++i) order[(size_t)i] = (int32_t)i;
        std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return v[a] > v[b]; });
        for (int64_t k : {1, 5, 300}) {
            std::vector<int32_t> got;
            top_ids(v.data(), n, k, got);
            ASSERT_EQ((int64_t)got.size(), std::min(k, n));
            for (size_t j = 0; j < got.size(); ++j) EXPECT_EQ(got[j], order[j]) << "n " << n << " k " << k << " at " << j;
        }
    }
    const float masked[2] = {-std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()};
    EXPECT_EQ(log_sum_exp(masked, 2), -std::numeric_limits<float>::infinity());
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

// The definition (sampler.h), plainly: every candidate sorted best first (logit / temperature,
// ties to the lower id), top-k, weights sampler_exp(x - best), min-p's floor on x, top-p's
// prefix; then each draw walks that order.
class ReferenceSampler {
public:
    ReferenceSampler(const std::vector<float>& logits, const SamplerParams& p) : rng_(p.seed) {
        for (size_t i = 0; i < logits.size(); ++i) c_.push_back({logits[i] / p.temperature, (int32_t)i});
        std::sort(c_.begin(), c_.end(), [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
        n_ = p.top_k > 0 ? std::min(c_.size(), (size_t)p.top_k) : c_.size();
        const float mx = c_[0].first;
        double sum = 0.0;
        for (size_t i = 0; i < n_; ++i) w_.push_back(sampler_exp(c_[i].first - mx)), sum += w_.back();
        if (p.min_p > 0.0f) {
            size_t keep = 0;
            while (keep < n_ && c_[keep].first >= mx + std::log(p.min_p)) ++keep;
            n_ = keep;
        }
        if (p.top_p < 1.0f) {
            double cum = 0.0;
            size_t keep = 0;
            while (keep < n_ && (cum += w_[keep++]) < (double)p.top_p * sum) {
            }
            n_ = keep;
        }
    }
    int32_t draw() {
        double total = 0.0;
        for (size_t i = 0; i < n_; ++i) total += w_[i];
        const double r = rng_.uniform() * total;
        double cum = 0.0;
        for (size_t i = 0; i < n_; ++i)
            if ((cum += w_[i]) > r) return c_[i].second;
        return c_[n_ - 1].second;
    }

private:
    Rng rng_;
    std::vector<std::pair<float, int32_t>> c_;
    std::vector<float> w_;
    size_t n_ = 0;
};

TEST(Sampler, ExpIsExpToAFewUlp) {
    EXPECT_EQ(sampler_exp(0.0f), 1.0f);
    EXPECT_EQ(sampler_exp(-88.0f), 0.0f);
    EXPECT_EQ(sampler_exp(-std::numeric_limits<float>::infinity()), 0.0f);
    EXPECT_EQ(sampler_exp(std::numeric_limits<float>::quiet_NaN()), 0.0f);
    float worst = 0.0f;
    for (float x = -87.0f; x <= 0.0f; x += 1.0f / 1024) {
        const float e = sampler_exp(x), want = std::exp(x);
        worst = std::max(worst, std::fabs(e - want) / want);
    }
    EXPECT_LT(worst, 4e-7f);
}

// Degenerate logits: all equal (every candidate tied: the full-sort reference still decides),
// one finite among -inf, NaNs (never drawn), extreme temperatures and truncations.
TEST(Sampler, DegenerateLogits) {
    const int64_t V = 1000;
    const float inf = std::numeric_limits<float>::infinity();
    std::vector<float> flat((size_t)V, 0.5f);
    for (SamplerParams p : {SamplerParams{1.0f, 0, 1.0f, 0.0f, 3}, SamplerParams{1.0f, 0, 0.5f, 0.0f, 4},
                            SamplerParams{1.0f, 0, 1.0f, 1.0f, 5}, SamplerParams{1e-6f, 0, 1.0f, 0.0f, 6}}) {
        Sampler s(p);
        ReferenceSampler ref(flat, p);
        for (int d = 0; d < 50; ++d) ASSERT_EQ(s.sample(flat.data(), V), ref.draw());
    }
    std::vector<float> one((size_t)V, -inf);
    one[777] = -3.0f;
    std::vector<float> nans((size_t)V, std::numeric_limits<float>::quiet_NaN());
    nans[5] = 1.0f;
    nans[900] = 1.5f;
    for (SamplerParams p : {SamplerParams{1.0f}, SamplerParams{2.0f, 0, 0.01f}, SamplerParams{0.7f, 40, 0.9f, 0.1f}}) {
        Sampler s(p);
        for (int d = 0; d < 50; ++d) {
            ASSERT_EQ(s.sample(one.data(), V), 777);
            const int32_t t = s.sample(nans.data(), V);
            ASSERT_TRUE(t == 5 || t == 900) << t;
        }
    }
}

// The sampler orders only a head of 64 and walks past it by buckets when it must: the same token
// as the full sort, draw for draw, over peaked and flat vocabularies of 40K with repeated logits
// (ties) and every truncation.
TEST(Sampler, HeadAndBucketsDrawWhatTheFullSortDraws) {
    std::mt19937 gen(11);
    const int64_t V = 40007;  // (not a multiple of the 16 lanes)
    int cases = 0;
    for (float spread : {0.05f, 1.0f, 3.0f}) {
        std::vector<float> lg((size_t)V);
        std::normal_distribution<float> g(0.0f, spread);
        for (auto& x : lg) x = std::round(g(gen) * 64.0f) / 64.0f;  // (coarse: many exact ties)
        for (int i = 0; i < 10; ++i) lg[gen() % V] += 8.0f * spread;
        for (int i = 0; i < 100; ++i) lg[gen() % V] = -std::numeric_limits<float>::infinity();  // masked
        for (SamplerParams p : {SamplerParams{1.0f}, SamplerParams{0.7f, 0, 0.9f}, SamplerParams{1.0f, 0, 0.999f},
                                SamplerParams{0.6f, 20, 0.95f}, SamplerParams{1.0f, 0, 1.0f, 0.05f},
                                SamplerParams{1.3f, 0, 0.8f, 0.001f}, SamplerParams{1.0f, 5000, 1.0f, 0.0f},
                                SamplerParams{2.0f, 0, 1.0f, 0.5f}}) {
            p.seed = 100 + (uint64_t)cases++;
            Sampler s(p);
            ReferenceSampler ref(lg, p);
            for (int d = 0; d < 50; ++d)
                ASSERT_EQ(s.sample(lg.data(), V), ref.draw())
                    << "spread " << spread << ", T " << p.temperature << " top_k " << p.top_k << " top_p " << p.top_p
                    << " min_p " << p.min_p << ", draw " << d;
        }
    }
}

}  // namespace
}  // namespace tandem
