// Reference quantization: f16/bf16 conversions checked against hand-computed values, round trips
// of every type, vec_dot against the dot of the dequantized rows. The cross-check against
// llama.cpp's own library is in quants_ggml_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/fp16.h"
#include "kernels/reference/quants.h"

namespace tandem::ref {
namespace {

std::vector<float> gaussian(int64_t n, uint32_t seed, float sigma = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, sigma);
    std::vector<float> x((size_t)n);
    for (auto& v : x) v = dist(rng);
    return x;
}

std::vector<uint8_t> quantize(DType t, const std::vector<float>& x) {
    std::vector<uint8_t> q(row_bytes(t, (int64_t)x.size()));
    quantize_row(t, x.data(), q.data(), (int64_t)x.size());
    return q;
}

std::vector<float> dequantize(DType t, const std::vector<uint8_t>& q, int64_t n) {
    std::vector<float> y((size_t)n);
    dequantize_row(t, q.data(), y.data(), n);
    return y;
}

double rms(const std::vector<float>& x) {
    double s = 0;
    for (float v : x) s += (double)v * v;
    return std::sqrt(s / (double)x.size());
}

double rmse(const std::vector<float>& x, const std::vector<float>& y) {
    double s = 0;
    for (size_t i = 0; i < x.size(); ++i) s += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return std::sqrt(s / (double)x.size());
}

float pow2(int e) {
    return std::ldexp(1.0f, e);
}

// ---- f16 / bf16 conversions, expected values worked out by hand.

TEST(QuantsFp16, ToHalfByHand) {
    EXPECT_EQ(fp32_to_fp16(0.0f), 0x0000);
    EXPECT_EQ(fp32_to_fp16(-0.0f), 0x8000);
    EXPECT_EQ(fp32_to_fp16(1.0f), 0x3c00);
    EXPECT_EQ(fp32_to_fp16(-2.0f), 0xc000);
    EXPECT_EQ(fp32_to_fp16(0.5f), 0x3800);
    EXPECT_EQ(fp32_to_fp16(0.1f), 0x2e66);         // 0.0999755859375
    EXPECT_EQ(fp32_to_fp16(1.0f / 3.0f), 0x3555);  // 0.333251953125
    // largest finite, and the overflow threshold 65520 (halfway to 2^16) rounding to inf
    EXPECT_EQ(fp32_to_fp16(65504.0f), 0x7bff);
    EXPECT_EQ(fp32_to_fp16(65519.0f), 0x7bff);
    EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);
    EXPECT_EQ(fp32_to_fp16(-1e6f), 0xfc00);
    EXPECT_EQ(fp32_to_fp16(std::numeric_limits<float>::infinity()), 0x7c00);
    EXPECT_EQ(fp32_to_fp16(-std::numeric_limits<float>::infinity()), 0xfc00);
    const uint16_t nan = fp32_to_fp16(std::numeric_limits<float>::quiet_NaN());
    EXPECT_EQ(nan & 0x7c00, 0x7c00);
    EXPECT_NE(nan & 0x03ff, 0);
    EXPECT_NE(fp32_to_fp16(f32_from_bits(0x7f800001)) & 0x03ff, 0);  // signalling nan stays nan
    // ties to even in the normal range: spacing 2^-10 above 1, spacing 2 above 2048
    EXPECT_EQ(fp32_to_fp16(1.0f + pow2(-11)), 0x3c00);
    EXPECT_EQ(fp32_to_fp16(1.0f + 3 * pow2(-11)), 0x3c02);
    EXPECT_EQ(fp32_to_fp16(1.0f + pow2(-11) + pow2(-23)), 0x3c01);
    EXPECT_EQ(fp32_to_fp16(2049.0f), 0x6800);
    EXPECT_EQ(fp32_to_fp16(2051.0f), 0x6802);
    // subnormals: unit 2^-24
    EXPECT_EQ(fp32_to_fp16(pow2(-14)), 0x0400);
    EXPECT_EQ(fp32_to_fp16(pow2(-24)), 0x0001);
    EXPECT_EQ(fp32_to_fp16(-pow2(-24)), 0x8001);
    EXPECT_EQ(fp32_to_fp16(pow2(-25)), 0x0000);  // tie between 0 and 1 -> 0
    EXPECT_EQ(fp32_to_fp16(std::nextafter(pow2(-25), 1.0f)), 0x0001);
    EXPECT_EQ(fp32_to_fp16(pow2(-26)), 0x0000);
    EXPECT_EQ(fp32_to_fp16(3 * pow2(-25)), 0x0002);  // 1.5 units -> 2
    EXPECT_EQ(fp32_to_fp16(5 * pow2(-25)), 0x0002);  // 2.5 units -> 2
    EXPECT_EQ(fp32_to_fp16(7 * pow2(-25)), 0x0004);  // 3.5 units -> 4
    EXPECT_EQ(fp32_to_fp16(1023 * pow2(-24)), 0x03ff);
    EXPECT_EQ(fp32_to_fp16(pow2(-14) - pow2(-25)), 0x0400);  // 1023.5 units rounds up to normal
    EXPECT_EQ(fp32_to_fp16(f32_from_bits(1)), 0x0000);       // float subnormal
}

TEST(QuantsFp16, FromHalfByHand) {
    EXPECT_EQ(fp16_to_fp32(0x0001), pow2(-24));
    EXPECT_EQ(fp16_to_fp32(0x8001), -pow2(-24));
    EXPECT_EQ(fp16_to_fp32(0x03ff), 1023 * pow2(-24));
    EXPECT_EQ(fp16_to_fp32(0x0400), pow2(-14));
    EXPECT_EQ(fp16_to_fp32(0x3c00), 1.0f);
    EXPECT_EQ(fp16_to_fp32(0xc000), -2.0f);
    EXPECT_EQ(fp16_to_fp32(0x7bff), 65504.0f);
    EXPECT_EQ(fp16_to_fp32(0x3555), 0.333251953125f);
    EXPECT_EQ(fp16_to_fp32(0x2e66), 0.0999755859375f);
    EXPECT_EQ(fp16_to_fp32(0x7c00), std::numeric_limits<float>::infinity());
    EXPECT_EQ(fp16_to_fp32(0xfc00), -std::numeric_limits<float>::infinity());
    EXPECT_TRUE(std::isnan(fp16_to_fp32(0x7e00)));
    EXPECT_TRUE(std::isnan(fp16_to_fp32(0x7c01)));
    EXPECT_EQ(f32_bits(fp16_to_fp32(0x8000)), 0x80000000u);
}

TEST(QuantsFp16, Bf16ByHand) {
    EXPECT_EQ(fp32_to_bf16(1.0f), 0x3f80);
    EXPECT_EQ(fp32_to_bf16(1.0f + pow2(-8)), 0x3f80);      // tie -> even
    EXPECT_EQ(fp32_to_bf16(1.0f + 3 * pow2(-8)), 0x3f82);  // tie -> even
    EXPECT_EQ(fp32_to_bf16(1.0f + pow2(-8) + pow2(-20)), 0x3f81);
    EXPECT_EQ(fp32_to_bf16(f32_from_bits(0x7f7fffff)), 0x7f80);  // FLT_MAX rounds to inf
    EXPECT_EQ(fp32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
    EXPECT_EQ(fp32_to_bf16(-std::numeric_limits<float>::infinity()), 0xff80);
    EXPECT_EQ(fp32_to_bf16(f32_from_bits(0x7fc00000)), 0x7fc0);
    EXPECT_EQ(fp32_to_bf16(f32_from_bits(0x7f800001)), 0x7fc0);  // signalling nan -> quiet nan
    EXPECT_EQ(fp32_to_bf16(f32_from_bits(0x00008000)), 0x0000);  // subnormal tie -> even
    EXPECT_EQ(fp32_to_bf16(f32_from_bits(0x00018000)), 0x0002);
    EXPECT_EQ(fp32_to_bf16(f32_from_bits(0x00008001)), 0x0001);
    EXPECT_EQ(bf16_to_fp32(0x3f80), 1.0f);
    EXPECT_EQ(bf16_to_fp32(0xc049), -3.140625f);
    EXPECT_EQ(bf16_to_fp32(0x0001), f32_from_bits(0x00010000));
}

TEST(QuantsFp16, EveryHalfAndBf16RoundTrips) {
    for (uint32_t h = 0; h < 0x10000; ++h) {
        const float f = fp16_to_fp32((uint16_t)h);
        if (std::isnan(f)) continue;
        ASSERT_EQ(fp32_to_fp16(f), h) << std::hex << h;
        ASSERT_EQ(fp32_to_bf16(bf16_to_fp32((uint16_t)h)), h) << std::hex << h;
    }
}

// ---- Round trips.

TEST(QuantsRoundTrip, FloatTypesExactOnRepresentableValues) {
    const auto x = gaussian(1024, 1);
    EXPECT_EQ(dequantize(DType::F32, quantize(DType::F32, x), 1024), x);

    std::vector<float> h(x.size()), b(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        h[i] = fp16_to_fp32(fp32_to_fp16(x[i]));
        b[i] = bf16_to_fp32(fp32_to_bf16(x[i]));
        ASSERT_LE(std::fabs(h[i] - x[i]), std::fabs(x[i]) * pow2(-11) + pow2(-25));
        ASSERT_LE(std::fabs(b[i] - x[i]), std::fabs(x[i]) * pow2(-8));
    }
    EXPECT_EQ(dequantize(DType::F16, quantize(DType::F16, h), 1024), h);
    EXPECT_EQ(dequantize(DType::BF16, quantize(DType::BF16, b), 1024), b);
    EXPECT_EQ(dequantize(DType::F16, quantize(DType::F16, x), 1024), h);
    EXPECT_EQ(dequantize(DType::BF16, quantize(DType::BF16, x), 1024), b);
}

class QuantsTypeTest : public ::testing::TestWithParam<DType> {};

std::string type_name(const ::testing::TestParamInfo<DType>& info) {
    return std::string(dtype_name(info.param));
}

const DType all_types[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q5_0,
                           DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K};

// Measured with this quantizer on 64k N(0, 1) values: F16 2.1e-4, BF16 1.65e-3 (the rounding
// limits are 2^-11/sqrt(3) and 2^-8/sqrt(3)), Q4_0 0.082, Q5_0 0.040, Q8_0 0.0054, Q4_K 0.070,
// Q5_K 0.035, Q6_K 0.0167, Q8_K 0.0071. Bounds are ~10-15% above.
double rel_rmse_bound(DType t) {
    switch (t) {
        case DType::F32:
            return 0;
        case DType::F16:
            return 2.9e-4;
        case DType::BF16:
            return 2.3e-3;
        case DType::Q4_0:
            return 0.092;
        case DType::Q5_0:
            return 0.046;
        case DType::Q8_0:
            return 0.006;
        case DType::Q4_K:
            return 0.08;
        case DType::Q5_K:
            return 0.04;
        case DType::Q6_K:
            return 0.019;
        case DType::Q8_K:
            return 0.008;
        default:  // read-only types (can_quantize) and the integer types: not in all_types
            return 0;
    }
}

TEST_P(QuantsTypeTest, GaussianRoundTripWithinBound) {
    const DType t = GetParam();
    const int64_t n = 65536;
    const auto x = gaussian(n, 7);
    const auto y = dequantize(t, quantize(t, x), n);
    const double rel = rmse(x, y) / rms(x);
    std::printf("    %-5s relative rmse %.5f (bound %.5f)\n", dtype_name(t).data(), rel, rel_rmse_bound(t));
    EXPECT_LE(rel, rel_rmse_bound(t)) << dtype_name(t);
}

TEST_P(QuantsTypeTest, ScaleInvarianceAndZeros) {
    const DType t = GetParam();
    const int64_t n = 512;
    const std::vector<float> zeros((size_t)n, 0.0f);
    EXPECT_EQ(dequantize(t, quantize(t, zeros), n), zeros) << "all-zero row";

    // tiny and large magnitudes: the relative error stays bounded (no f16 scale underflow at 1e-3,
    // no overflow at 1e3)
    for (float sigma : {1e-3f, 1e3f}) {
        const auto x = gaussian(n, 11, sigma);
        const auto y = dequantize(t, quantize(t, x), n);
        EXPECT_LE(rmse(x, y) / rms(x), 1.2 * rel_rmse_bound(t) + 1e-6) << "sigma " << sigma;
    }
}

TEST_P(QuantsTypeTest, ConstantAndOneHotBlocks) {
    const DType t = GetParam();
    const int64_t n = 256;
    const std::vector<float> c((size_t)n, -0.75f);
    const auto yc = dequantize(t, quantize(t, c), n);
    EXPECT_LE(rmse(c, yc), 0.75 * 2e-3) << "constant";

    std::vector<float> one_hot((size_t)n, 0.0f);
    one_hot[37] = 3.0f;
    const auto y1 = dequantize(t, quantize(t, one_hot), n);
    EXPECT_NEAR(y1[37], 3.0f, 3.0f * 2e-3);
    for (int64_t i = 0; i < n; ++i) {
        if (i == 37) continue;
        ASSERT_EQ(y1[(size_t)i], 0.0f) << "element " << i;
    }
}

TEST_P(QuantsTypeTest, NonFiniteInputGivesValidBlocks) {
    // Garbage in, but the call must not crash or invoke UB (the sanitizer build checks the latter).
    const DType t = GetParam();
    auto x = gaussian(256, 3);
    x[5] = std::numeric_limits<float>::quiet_NaN();
    x[9] = std::numeric_limits<float>::infinity();
    const auto y = dequantize(t, quantize(t, x), 256);
    EXPECT_EQ(y.size(), 256u);
}

TEST(QuantsVecDot, VecDotTypes) {
    EXPECT_EQ(vec_dot_type(DType::F32), DType::F32);
    EXPECT_EQ(vec_dot_type(DType::F16), DType::F16);
    EXPECT_EQ(vec_dot_type(DType::BF16), DType::BF16);
    for (DType t : {DType::Q4_0, DType::Q5_0, DType::Q8_0}) EXPECT_EQ(vec_dot_type(t), DType::Q8_0);
    for (DType t : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) EXPECT_EQ(vec_dot_type(t), DType::Q8_K);
}

// Dot of the dequantized rows in double: vec_dot must agree up to float rounding of the
// dequantized values and of the result.
double dequantized_dot(DType wt, const std::vector<uint8_t>& w, DType at, const std::vector<uint8_t>& a,
                       int64_t n, double* abs_sum) {
    const auto wf = dequantize(wt, w, n);
    const auto af = dequantize(at, a, n);
    double dot = 0;
    *abs_sum = 0;
    for (int64_t i = 0; i < n; ++i) {
        dot += (double)wf[(size_t)i] * af[(size_t)i];
        *abs_sum += std::fabs((double)wf[(size_t)i] * af[(size_t)i]);
    }
    return dot;
}

TEST_P(QuantsTypeTest, VecDotMatchesDequantizedDot) {
    const DType t = GetParam();
    const DType at = vec_dot_type(t);
    const int64_t n = 4096;
    for (uint32_t seed = 0; seed < 4; ++seed) {
        const auto w = quantize(t, gaussian(n, 100 + seed));
        const auto a = quantize(at, gaussian(n, 200 + seed, 0.5f + (float)seed));
        double abs_sum = 0;
        const double expect = dequantized_dot(t, w, at, a, n, &abs_sum);
        EXPECT_NEAR(vec_dot(t, w.data(), a.data(), n), expect, 1e-6 * abs_sum) << "seed " << seed;
    }
}

TEST_P(QuantsTypeTest, VecDotApproximatesFloatDot) {
    const DType t = GetParam();
    const int64_t n = 4096;
    const auto xw = gaussian(n, 5), xa = gaussian(n, 6);
    double dot = 0;
    for (int64_t i = 0; i < n; ++i) dot += (double)xw[(size_t)i] * xa[(size_t)i];
    const auto w = quantize(t, xw);
    const auto a = quantize(vec_dot_type(t), xa);
    // error ~ (rel_w + rel_a) * sqrt(n) for unit gaussians; 6 sigma
    const double tol =
        6 * (rel_rmse_bound(t) + rel_rmse_bound(vec_dot_type(t))) * std::sqrt((double)n) + 1e-3;
    EXPECT_NEAR(vec_dot(t, w.data(), a.data(), n), dot, tol);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, QuantsTypeTest, ::testing::ValuesIn(all_types), type_name);

}  // namespace
}  // namespace tandem::ref
