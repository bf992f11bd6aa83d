// W8A8 int8 kernels: the reference quantizers against hand-computed values, the W8A8 linear
// (reference quantizers + int8 product) against the float product it approximates, and every
// ISA's gemv_i8 against the reference, exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/kernels.h"
#include "kernels/reference/int8.h"

namespace tandem {
namespace {

std::vector<int8_t> random_i8(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> d(-128, 127);
    std::vector<int8_t> v(n);
    for (auto& x : v) x = (int8_t)d(rng);
    return v;
}

TEST(Int8Reference, DynamicActivationQuantization) {
    const float x[4] = {0.5f, -1.27f, 0.0f, 0.0049f};
    int8_t q[4];
    const float s = ref::quantize_act_dynamic(x, q, 4);
    EXPECT_FLOAT_EQ(s, 0.01f);
    EXPECT_EQ(q[0], 50);
    EXPECT_EQ(q[1], -127);
    EXPECT_EQ(q[2], 0);
    EXPECT_EQ(q[3], 0);
    const float z[3] = {0, 0, 0};
    EXPECT_EQ(ref::quantize_act_dynamic(z, q, 3), 0.0f);
    EXPECT_EQ(q[0] | q[1] | q[2], 0);
}

TEST(Int8Reference, StaticActivationQuantizationClampsAndRoundsHalfEven) {
    const float x[5] = {1.0f, -100.0f, 100.0f, 0.25f, 0.75f};
    int8_t q[5];
    ref::quantize_act_static(x, q, 5, 0.5f, 3.0f);  // x / 0.5 + 3
    EXPECT_EQ(q[0], 5);
    EXPECT_EQ(q[1], -128);
    EXPECT_EQ(q[2], 127);
    EXPECT_EQ(q[3], 4);  // 3.5 -> 4 (even)
    EXPECT_EQ(q[4], 4);  // 4.5 -> 4 (even)
}

TEST(Int8Reference, W8A8LinearApproximatesFloat) {
    const int64_t n = 512, rows = 32;
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> w((size_t)(n * rows)), x((size_t)n);
    for (auto& v : w) v = nd(rng) * 0.05f;
    for (auto& v : x) v = nd(rng);
    std::vector<int8_t> wq(w.size()), xq((size_t)n);
    std::vector<float> wscale((size_t)rows);
    for (int64_t r = 0; r < rows; ++r) wscale[(size_t)r] = ref::quantize_weight_row_i8(&w[(size_t)(r * n)], &wq[(size_t)(r * n)], n);
    std::vector<int32_t> acc((size_t)rows);
    // dynamic
    const float s = ref::quantize_act_dynamic(x.data(), xq.data(), n);
    ref::gemv_i8(wq.data(), (size_t)n, rows, n, xq.data(), acc.data());
    // static with an offset: quant_bias folds the offset back out
    const float in_scale = 4.0f / 127.0f, in_offset = 3.0f;
    std::vector<int8_t> xs((size_t)n);
    ref::quantize_act_static(x.data(), xs.data(), n, in_scale, in_offset);
    std::vector<int32_t> acc_s((size_t)rows);
    ref::gemv_i8(wq.data(), (size_t)n, rows, n, xs.data(), acc_s.data());
    for (int64_t r = 0; r < rows; ++r) {
        double exact = 0, norm = 0;
        int32_t wsum = 0;
        for (int64_t k = 0; k < n; ++k) {
            exact += (double)w[(size_t)(r * n + k)] * x[(size_t)k];
            norm += std::fabs((double)w[(size_t)(r * n + k)] * x[(size_t)k]);
            wsum += wq[(size_t)(r * n + k)];
        }
        const float dyn = (float)acc[(size_t)r] * s * wscale[(size_t)r];
        EXPECT_NEAR(dyn, exact, 0.02 * norm) << "row " << r;
        const int32_t quant_bias = (int32_t)std::nearbyint(-in_offset * (float)wsum);
        const float deq_scale = in_scale * wscale[(size_t)r];
        const float st = (float)(acc_s[(size_t)r] + quant_bias) * deq_scale;
        EXPECT_NEAR(st, exact, 0.03 * norm) << "row " << r;
    }
}

class Int8Kernels : public ::testing::TestWithParam<cpu::Isa> {};

TEST_P(Int8Kernels, GemvI8EqualsReferenceExactly) {
    if (!cpu::isa_supported(GetParam())) GTEST_SKIP() << cpu::isa_name(GetParam()) << " not supported by this CPU";
    const cpu::KernelTable& k = cpu::kernels_for(GetParam());
    ASSERT_NE(k.gemv_i8, nullptr);
    for (int64_t n : {1, 33, 64, 100, 2048, 4096 + 72}) {
        for (int64_t rows : {1, 3, 4, 9}) {
            const size_t stride = (size_t)n + 5;  // rows not packed
            const auto w = random_i8(stride * (size_t)rows, (uint32_t)(n * 31 + rows));
            const auto x = random_i8((size_t)n, (uint32_t)(n + 7));
            std::vector<int32_t> want((size_t)rows), got((size_t)rows, -1);
            ref::gemv_i8(w.data(), stride, rows, n, x.data(), want.data());
            k.gemv_i8(w.data(), stride, rows, n, x.data(), got.data());
            EXPECT_EQ(got, want) << cpu::isa_name(GetParam()) << " n=" << n << " rows=" << rows;
        }
    }
    // the extremes: -128 everywhere
    const int64_t n = 4096;
    std::vector<int8_t> w((size_t)n, -128), x((size_t)n, -128);
    int32_t got = 0;
    k.gemv_i8(w.data(), (size_t)n, 1, n, x.data(), &got);
    EXPECT_EQ(got, 128 * 128 * n);
}

INSTANTIATE_TEST_SUITE_P(AllIsas, Int8Kernels, ::testing::ValuesIn(cpu::kAllIsas),
                         [](const auto& info) { return std::string(cpu::isa_name(info.param)); });

}  // namespace
}  // namespace tandem
