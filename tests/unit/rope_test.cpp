// RoPE frequencies: plain, linear and YaRN (ref::RopeFreqs) against Hugging Face's definition,
// written here independently in double precision (transformers' `_compute_yarn_parameters`:
// inv_freq = interpolated * (1 - e) + original * e, e = 1 - clamp((i - low) / (high - low), 0, 1),
// low/high = floor/ceil of the pair index that turns beta_fast / beta_slow times over the original
// context, cos and sin times 0.1 ln(factor) + 1).
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <vector>

#include "kernels/reference/ops.h"
#include "model/hparams.h"

namespace tandem {
namespace {

struct Expected {
    std::vector<double> cos, sin;
};

Expected hf_yarn(int64_t d, double base, double factor, int64_t orig, int64_t pos) {
    auto corr = [&](double turns) { return d * std::log(orig / (turns * 2 * std::numbers::pi)) / (2 * std::log(base)); };
    const double low = std::max(0.0, std::floor(corr(32))), high = std::min<double>(d - 1, std::ceil(corr(1)));
    const double mscale = 0.1 * std::log(factor) + 1.0;
    Expected e;
    for (int64_t i = 0; i < d / 2; ++i) {
        const double orig_freq = std::pow(base, -2.0 * i / d);
        const double ramp = std::clamp((i - low) / (high == low ? 0.001 : high - low), 0.0, 1.0);
        const double keep = 1.0 - ramp;  // 1: original frequency, 0: interpolated
        const double f = orig_freq / factor * (1 - keep) + orig_freq * keep;
        e.cos.push_back(std::cos(pos * f) * mscale);
        e.sin.push_back(std::sin(pos * f) * mscale);
    }
    return e;
}

void expect_table(const std::vector<float>& cs, const Expected& e, double tol, const char* what) {
    const size_t half = e.cos.size();
    for (size_t i = 0; i < half; ++i) {
        EXPECT_NEAR(cs[i], e.cos[i], tol) << what << " cos " << i;
        EXPECT_NEAR(cs[half + i], e.sin[i], tol) << what << " sin " << i;
    }
}

TEST(Rope, YarnMatchesHuggingFacesDefinition) {
    // Qwen3's 4x over 32K (hd 128, base 1e6), and a small original context (many dims on the ramp)
    for (const auto& [hd, base, factor, orig] : std::vector<std::tuple<int64_t, float, float, int64_t>>{
             {128, 1e6f, 4.0f, 32768}, {64, 1e4f, 8.0f, 256}, {128, 1e6f, 2.0f, 4096}}) {
        const ref::RopeFreqs f = ref::RopeFreqs::yarn(hd, base, factor, orig);
        EXPECT_GT(f.corr_high, f.corr_low);
        EXPECT_NEAR(f.mscale, 0.1 * std::log(factor) + 1.0, 1e-6);
        for (int64_t pos : {0, 1, 5, 300, 2000}) {
            std::vector<float> cs((size_t)hd);
            ref::rope_neox_table(hd, pos, f, cs.data());
            // float angles by repeated multiplication (as llama.cpp): ~1e-6 relative per pair
            expect_table(cs, hf_yarn(hd, base, factor, orig, pos), 2e-6 * (double)pos + 1e-5, "yarn");
        }
    }
}

TEST(Rope, PlainAndLinear) {
    const int64_t hd = 64;
    std::vector<float> a((size_t)hd), b((size_t)hd);
    for (int64_t pos : {0, 3, 1000}) {
        // plain: the same floats as before RopeFreqs existed (theta by repeated multiplication)
        ref::rope_neox_table(hd, pos, ref::RopeFreqs::plain(1e4f), a.data());
        float theta = (float)pos;
        const float scale = std::pow(1e4f, -2.0f / (float)hd);
        for (int64_t i = 0; i < hd / 2; ++i, theta *= scale) {
            EXPECT_EQ(a[(size_t)i], std::cos(theta));
            EXPECT_EQ(a[(size_t)(hd / 2 + i)], std::sin(theta));
        }
        // linear 4x: position pos of the scaled model turns like pos / 4 of the plain one
        ref::rope_neox_table(hd, pos, ref::RopeFreqs::linear(1e4f, 4.0f), a.data());
        for (int64_t i = 0; i < hd / 2; ++i) {
            const double f = std::pow(1e4, -2.0 * i / hd) / 4.0;
            EXPECT_NEAR(a[(size_t)i], std::cos(pos * f), 2e-6 * pos + 1e-6);
            EXPECT_NEAR(a[(size_t)(hd / 2 + i)], std::sin(pos * f), 2e-6 * pos + 1e-6);
        }
    }
    // rope_neox (the whole rotation) = table + apply
    std::vector<float> x(2 * hd), y;
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * (float)i);
    y = x;
    const ref::RopeFreqs f = ref::RopeFreqs::yarn(hd, 1e4f, 4.0f, 512);
    ref::rope_neox(x.data(), 2, hd, 777, f);
    ref::rope_neox_table(hd, 777, f, b.data());
    ref::rope_neox_apply(y.data(), 2, hd, b.data());
    EXPECT_EQ(x, y);
}

TEST(Rope, HParamsChooseTheScaling) {
    HParams h;
    h.head_dim = 128;
    h.rope_base = 1e6f;
    h.n_ctx_train = 40960;
    EXPECT_EQ(h.rope_freqs().freq_scale, 1.0f);
    EXPECT_EQ(h.rope_freqs().ext_factor, 0.0f);
    EXPECT_TRUE(h.check_forward_support("m").ok());
    EXPECT_EQ(h.max_context(), 40960);
    h.rope_scaling = "yarn";
    h.rope_scaling_factor = 4.0f;
    h.rope_scaling_orig_ctx = 32768;
    EXPECT_TRUE(h.check_forward_support("m").ok());
    EXPECT_EQ(h.max_context(), 131072);  // Qwen3: 4 x 32768, past the trained 40960
    const ref::RopeFreqs y = h.rope_freqs(), want = ref::RopeFreqs::yarn(128, 1e6f, 4.0f, 32768);
    EXPECT_EQ(y.freq_scale, 0.25f);
    EXPECT_EQ(y.corr_low, want.corr_low);
    EXPECT_EQ(y.corr_high, want.corr_high);
    h.rope_scaling_orig_ctx = 0;  // llama.cpp's default: the training context
    EXPECT_EQ(h.rope_freqs().corr_high, ref::RopeFreqs::yarn(128, 1e6f, 4.0f, 40960).corr_high);
    h.rope_scaling = "linear";
    EXPECT_EQ(h.rope_freqs().ext_factor, 0.0f);
    EXPECT_EQ(h.rope_freqs().freq_scale, 0.25f);
    h.rope_scaling = "longrope";
    const auto st = h.check_forward_support("m.gguf");
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().message.find("RoPE scaling 'longrope' is not supported"), std::string::npos);
    h.rope_scaling = "yarn";
    h.rope_scaling_factor = 0.5f;
    EXPECT_FALSE(h.check_forward_support("m").ok());
}

}  // namespace
}  // namespace tandem
