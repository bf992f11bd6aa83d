// Cross-check of the reference quantization against llama.cpp itself: libggml-base.so from the
// node-llama-cpp prebuilt (TANDEM_GGML_BASE_LIB), loaded with dlopen. Required, not optional: when
// the library is missing every test here fails and says how to install it.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "core/dtype.h"
#include "core/fp16.h"
#include "kernels/reference/quants.h"

namespace tandem::ref {
namespace {

// The plain-C entry points of libggml-base used here (ggml.h / ggml-quants.h). `error` is empty
// when the library and every symbol were found.
struct GgmlLib {
    using DequantizeRow = void (*)(const void* x, float* y, int64_t k);
    using QuantizeRowRef = void (*)(const float* x, void* y, int64_t k);
    using QuantizeChunk = size_t (*)(int type, const float* src, void* dst, int64_t start, int64_t nrows,
                                     int64_t n_per_row, const float* imatrix);
    using FloatToHalfRow = void (*)(const float* x, uint16_t* y, int64_t n);

    std::string error;
    DequantizeRow dequantize_q4_0 = nullptr, dequantize_q5_0 = nullptr, dequantize_q8_0 = nullptr;
    DequantizeRow dequantize_q4_k = nullptr, dequantize_q5_k = nullptr, dequantize_q6_k = nullptr;
    DequantizeRow dequantize_q8_k = nullptr;
    DequantizeRow dequantize_q4_1 = nullptr, dequantize_q5_1 = nullptr, dequantize_iq4_nl = nullptr;
    DequantizeRow dequantize_q2_k = nullptr, dequantize_q3_k = nullptr, dequantize_iq4_xs = nullptr;
    DequantizeRow fp16_to_fp32_row = nullptr, bf16_to_fp32_row = nullptr;  // x: f16 / bf16 bits
    FloatToHalfRow fp32_to_fp16_row = nullptr, fp32_to_bf16_row_ref = nullptr;
    QuantizeRowRef quantize_row_q8_k_ref = nullptr;
    QuantizeChunk quantize_chunk = nullptr;

    DequantizeRow dequantize(DType t) const {
        switch (t) {
            case DType::Q4_0:
                return dequantize_q4_0;
            case DType::Q5_0:
                return dequantize_q5_0;
            case DType::Q8_0:
                return dequantize_q8_0;
            case DType::Q4_K:
                return dequantize_q4_k;
            case DType::Q5_K:
                return dequantize_q5_k;
            case DType::Q6_K:
                return dequantize_q6_k;
            case DType::Q8_K:
                return dequantize_q8_k;
            case DType::Q4_1:
                return dequantize_q4_1;
            case DType::Q5_1:
                return dequantize_q5_1;
            case DType::IQ4_NL:
                return dequantize_iq4_nl;
            case DType::Q2_K:
                return dequantize_q2_k;
            case DType::Q3_K:
                return dequantize_q3_k;
            case DType::IQ4_XS:
                return dequantize_iq4_xs;
            case DType::F16:
                return fp16_to_fp32_row;
            case DType::BF16:
                return bf16_to_fp32_row;
            default:
                return nullptr;
        }
    }

    // ggml's own quantizer for whole rows (no importance matrix); Q8_K is not a ggml storage type
    // and has only the row function that the CPU backend uses for activations.
    void quantize(DType t, const float* src, void* dst, int64_t nrows, int64_t n_per_row) const {
        if (t == DType::Q8_K) {
            quantize_row_q8_k_ref(src, dst, nrows * n_per_row);
        } else {
            quantize_chunk((int)t, src, dst, 0, nrows, n_per_row, nullptr);
        }
    }
};

GgmlLib load_ggml(const char* path) {
    GgmlLib lib;
    void* handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char* why = dlerror();
        lib.error = std::string("cannot load llama.cpp's reference library ") + path + ": " +
                    (why ? why : "unknown error") +
                    "\nThis cross-check is required: run scripts/install-deps.sh to install it.";
        return lib;
    }
    auto bind = [&](auto& fn, const char* name) {
        fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(handle, name));
        if (!fn) lib.error += std::string("symbol ") + name + " missing from " + path + "\n";
    };
    bind(lib.dequantize_q4_0, "dequantize_row_q4_0");
    bind(lib.dequantize_q5_0, "dequantize_row_q5_0");
    bind(lib.dequantize_q8_0, "dequantize_row_q8_0");
    bind(lib.dequantize_q4_k, "dequantize_row_q4_K");
    bind(lib.dequantize_q5_k, "dequantize_row_q5_K");
    bind(lib.dequantize_q6_k, "dequantize_row_q6_K");
    bind(lib.dequantize_q8_k, "dequantize_row_q8_K");
    bind(lib.dequantize_q4_1, "dequantize_row_q4_1");
    bind(lib.dequantize_q5_1, "dequantize_row_q5_1");
    bind(lib.dequantize_iq4_nl, "dequantize_row_iq4_nl");
    bind(lib.dequantize_q2_k, "dequantize_row_q2_K");
    bind(lib.dequantize_q3_k, "dequantize_row_q3_K");
    bind(lib.dequantize_iq4_xs, "dequantize_row_iq4_xs");
    bind(lib.fp16_to_fp32_row, "ggml_fp16_to_fp32_row");
    bind(lib.bf16_to_fp32_row, "ggml_bf16_to_fp32_row");
    bind(lib.fp32_to_fp16_row, "ggml_fp32_to_fp16_row");
    bind(lib.fp32_to_bf16_row_ref, "ggml_fp32_to_bf16_row_ref");
    bind(lib.quantize_row_q8_k_ref, "quantize_row_q8_K_ref");
    bind(lib.quantize_chunk, "ggml_quantize_chunk");
    return lib;  // the handle stays open for the life of the process
}

// Loaded once per process, on first use.
const GgmlLib& ggml_lib() {
    static const GgmlLib lib = load_ggml(TANDEM_GGML_BASE_LIB);
    return lib;
}

std::vector<float> gaussian(int64_t n, uint32_t seed, float sigma = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, sigma);
    std::vector<float> x((size_t)n);
    for (auto& v : x) v = dist(rng);
    return x;
}

double sq_error(const std::vector<float>& x, const std::vector<float>& y) {
    double s = 0;
    for (size_t i = 0; i < x.size(); ++i) s += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return s;
}

// Bit-exact comparison of two float rows, reporting the first difference.
::testing::AssertionResult same_bits(const std::vector<float>& ours, const std::vector<float>& ggml) {
    if (ours.size() == ggml.size() && std::memcmp(ours.data(), ggml.data(), ours.size() * 4) == 0) {
        return ::testing::AssertionSuccess();
    }
    for (size_t i = 0; i < ours.size(); ++i) {
        if (f32_bits(ours[i]) != f32_bits(ggml[i])) {
            char buf[160];
            std::snprintf(buf, sizeof(buf), "element %zu: ours %.9g (0x%08x), ggml %.9g (0x%08x)", i, ours[i],
                          f32_bits(ours[i]), ggml[i], f32_bits(ggml[i]));
            return ::testing::AssertionFailure() << buf;
        }
    }
    return ::testing::AssertionFailure() << "size mismatch";
}

struct Rows {
    static constexpr int64_t n_rows = 8;
    static constexpr int64_t n_per_row = 4096;
    static constexpr int64_t n_total = n_rows * n_per_row;
};

std::vector<float> our_dequant(DType t, const std::vector<uint8_t>& q, int64_t n) {
    std::vector<float> y((size_t)n);
    dequantize_row(t, q.data(), y.data(), n);
    return y;
}

std::vector<float> ggml_dequant(const GgmlLib& lib, DType t, const std::vector<uint8_t>& q, int64_t n) {
    std::vector<float> y((size_t)n);
    lib.dequantize(t)(q.data(), y.data(), n);
    return y;
}

std::vector<uint8_t> our_quant(DType t, const std::vector<float>& x) {
    std::vector<uint8_t> q(row_bytes(t, (int64_t)x.size()));
    quantize_row(t, x.data(), q.data(), (int64_t)x.size());
    return q;
}

std::vector<uint8_t> ggml_quant(const GgmlLib& lib, DType t, const std::vector<float>& x, int64_t n_per_row) {
    std::vector<uint8_t> q(row_bytes(t, (int64_t)x.size()), 0);
    lib.quantize(t, x.data(), q.data(), (int64_t)x.size() / n_per_row, n_per_row);
    return q;
}

// Random bytes, with every f16 scale field made finite (so products stay finite and comparable).
std::vector<uint8_t> random_blocks(DType t, int64_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<uint8_t> q(row_bytes(t, n));
    for (auto& b : q) b = (uint8_t)rng();
    const DTypeTraits& tr = traits(t);
    auto finite_f16 = [](uint8_t* p) {
        uint16_t h;
        std::memcpy(&h, p, 2);
        if ((h & 0x7c00) == 0x7c00) h = (uint16_t)(h & ~0x4000);  // exponent 31 -> 15
        std::memcpy(p, &h, 2);
    };
    std::normal_distribution<float> dist;
    for (size_t off = 0; off < q.size(); off += tr.block_bytes) {
        uint8_t* b = q.data() + off;
        switch (t) {
            case DType::Q4_0:
            case DType::Q5_0:
            case DType::Q8_0:
            case DType::IQ4_NL:
            case DType::IQ4_XS:
                finite_f16(b);
                break;
            case DType::Q4_1:
            case DType::Q5_1:
                finite_f16(b);
                finite_f16(b + 2);
                break;
            case DType::Q2_K:
                finite_f16(b + offsetof(BlockQ2_K, d));
                finite_f16(b + offsetof(BlockQ2_K, dmin));
                break;
            case DType::Q3_K:
                finite_f16(b + offsetof(BlockQ3_K, d));
                break;
            case DType::Q4_K:
            case DType::Q5_K:
                finite_f16(b + offsetof(BlockQ4_K, d));
                finite_f16(b + offsetof(BlockQ4_K, dmin));
                break;
            case DType::Q6_K:
                finite_f16(b + offsetof(BlockQ6_K, d));
                break;
            case DType::Q8_K: {
                const float d = dist(rng);
                std::memcpy(b + offsetof(BlockQ8_K, d), &d, 4);
                break;
            }
            default:
                break;
        }
    }
    return q;
}

// vec_dot of weight row w (type t) with activations quantized by ggml equals the dot of ggml's
// dequantized rows (up to float rounding)
void expect_dot_with_ggml_activations(const GgmlLib& lib, DType t, const std::vector<uint8_t>& w, int64_t n,
                                      uint32_t seed) {
    const auto a = ggml_quant(lib, vec_dot_type(t), gaussian(n, 20 + seed, 2.0f), n);
    const auto wf = ggml_dequant(lib, t, w, n), af = ggml_dequant(lib, vec_dot_type(t), a, n);
    double dot = 0, abs_sum = 0;
    for (int64_t i = 0; i < n; ++i) {
        dot += (double)wf[(size_t)i] * af[(size_t)i];
        abs_sum += std::fabs((double)wf[(size_t)i] * af[(size_t)i]);
    }
    EXPECT_NEAR(vec_dot(t, w.data(), a.data(), n), dot, 1e-6 * abs_sum) << dtype_name(t) << " seed " << seed;
}

class QuantsGgmlTest : public ::testing::TestWithParam<DType> {};

std::string type_name(const ::testing::TestParamInfo<DType>& info) {
    return std::string(dtype_name(info.param));
}

// (a) ggml-quantized data: our dequantization is bit-identical to ggml's.
TEST_P(QuantsGgmlTest, DequantizeGgmlQuantizedBitExact) {
    const GgmlLib& lib = ggml_lib();
    ASSERT_TRUE(lib.error.empty()) << lib.error;
    const DType t = GetParam();
    const auto x = gaussian(Rows::n_total, 1);
    const auto q = ggml_quant(lib, t, x, Rows::n_per_row);
    EXPECT_TRUE(same_bits(our_dequant(t, q, Rows::n_total), ggml_dequant(lib, t, q, Rows::n_total)));
}

// (b) arbitrary bit patterns (every level, scale and sign combination): bit-identical.
TEST_P(QuantsGgmlTest, DequantizeRandomBytesBitExact) {
    const GgmlLib& lib = ggml_lib();
    ASSERT_TRUE(lib.error.empty()) << lib.error;
    const DType t = GetParam();
    for (uint32_t seed = 0; seed < 4; ++seed) {
        const auto q = random_blocks(t, Rows::n_total, 1000 + seed);
        EXPECT_TRUE(same_bits(our_dequant(t, q, Rows::n_total), ggml_dequant(lib, t, q, Rows::n_total)))
            << "seed " << seed;
    }
}

// (c) our blocks mean the same to ggml: ggml's dequantization of them equals ours.
TEST_P(QuantsGgmlTest, GgmlDequantizesOurBlocks) {
    const GgmlLib& lib = ggml_lib();
    ASSERT_TRUE(lib.error.empty()) << lib.error;
    const DType t = GetParam();
    const auto q = our_quant(t, gaussian(Rows::n_total, 2, 0.02f));
    EXPECT_TRUE(same_bits(ggml_dequant(lib, t, q, Rows::n_total), our_dequant(t, q, Rows::n_total)));
}

// (d) our quantizer is at most 10% worse (in RMSE) than ggml's reference quantizer, on gaussian
// rows and on rows with a non-zero mean and rare outliers.
TEST_P(QuantsGgmlTest, RmseCloseToGgml) {
    const GgmlLib& lib = ggml_lib();
    ASSERT_TRUE(lib.error.empty()) << lib.error;
    const DType t = GetParam();
    auto skewed = gaussian(Rows::n_total, 4, 0.5f);
    for (size_t i = 0; i < skewed.size(); ++i) skewed[i] += (i % 97 == 0 ? 6.0f : 0.3f);
    const std::pair<const char*, std::vector<float>> inputs[] = {{"gaussian", gaussian(Rows::n_total, 3)},
                                                                 {"skewed", skewed}};
    for (const auto& [name, x] : inputs) {
        const double ours =
            std::sqrt(sq_error(x, our_dequant(t, our_quant(t, x), Rows::n_total)) / Rows::n_total);
        const double ggml = std::sqrt(
            sq_error(x, ggml_dequant(lib, t, ggml_quant(lib, t, x, Rows::n_per_row), Rows::n_total)) /
            Rows::n_total);
        std::printf("    %-5s %-8s rmse ours %.6f ggml %.6f (ratio %.3f)\n", dtype_name(t).data(), name, ours,
                    ggml, ours / ggml);
        EXPECT_LE(ours, 1.10 * ggml) << name;
    }
}

// (e) dot products with activations quantized by ggml: vec_dot equals the dot of ggml's
// dequantized rows (up to float rounding).
TEST_P(QuantsGgmlTest, VecDotWithGgmlActivations) {
    const GgmlLib& lib = ggml_lib();
    ASSERT_TRUE(lib.error.empty()) << lib.error;
    const DType t = GetParam();
    const int64_t n = Rows::n_per_row;
    for (uint32_t seed = 0; seed < 4; ++seed) {
        const auto w = ggml_quant(lib, t, gaussian(n, 10 + seed, 0.05f), n);
        expect_dot_with_ggml_activations(lib, t, w, n, seed);
    }
}

INSTANTIATE_TEST_SUITE_P(QuantTypes, QuantsGgmlTest,
                         ::testing::Values(DType::Q4_0, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q5_K,
                                           DType::Q6_K, DType::Q8_K),
                         type_name);

// The types Tandem reads but does not write (llama-quantize makes them): ggml's quantizer makes
// the blocks; dequantization is bit-identical on them and on random bytes, and vec_dot equals
// the dot of ggml's dequantized rows.
class ReadOnlyQuantsGgmlTest : public ::testing::TestWithParam<DType> {};

TEST_P(ReadOnlyQuantsGgmlTest, DequantizeBitExactAndDotAgrees) {
    const GgmlLib& lib = ggml_lib();
    ASSERT_TRUE(lib.error.empty()) << lib.error;
    const DType t = GetParam();
    EXPECT_FALSE(can_quantize(t));
    const auto q = ggml_quant(lib, t, gaussian(Rows::n_total, 1), Rows::n_per_row);
    EXPECT_TRUE(same_bits(our_dequant(t, q, Rows::n_total), ggml_dequant(lib, t, q, Rows::n_total)));
    for (uint32_t seed = 0; seed < 4; ++seed) {
        const auto r = random_blocks(t, Rows::n_total, 1000 + seed);
        EXPECT_TRUE(same_bits(our_dequant(t, r, Rows::n_total), ggml_dequant(lib, t, r, Rows::n_total)))
            << "seed " << seed;
    }
    const int64_t n = Rows::n_per_row;
    for (uint32_t seed = 0; seed < 4; ++seed) {
        // ggml-quantized weights with a mean (the affine types' m / dmin matter), random bytes too
        auto x = gaussian(n, 10 + seed, 0.05f);
        for (auto& v : x) v += 0.02f;
        for (const auto& w : {ggml_quant(lib, t, x, n), random_blocks(t, n, 50 + seed)})
            expect_dot_with_ggml_activations(lib, t, w, n, seed);
    }
}

INSTANTIATE_TEST_SUITE_P(ReadOnlyTypes, ReadOnlyQuantsGgmlTest,
                         ::testing::Values(DType::Q4_1, DType::Q5_1, DType::IQ4_NL, DType::Q2_K, DType::Q3_K,
                                           DType::IQ4_XS),
                         type_name);

// The activation types are quantized exactly as llama.cpp does it, byte for byte.
TEST(QuantsGgml, ActivationQuantizationByteIdentical) {
    const GgmlLib& lib = ggml_lib();
    ASSERT_TRUE(lib.error.empty()) << lib.error;
    for (DType t : {DType::Q8_0, DType::Q8_K}) {
        for (float sigma : {1e-3f, 1.0f, 300.0f}) {
            auto x = gaussian(Rows::n_total, 5, sigma);
            std::fill(x.begin(), x.begin() + 256, 0.0f);  // an all-zero block
            x[300] = x[301];                              // ties for the largest magnitude
            EXPECT_EQ(our_quant(t, x), ggml_quant(lib, t, x, Rows::n_per_row))
                << dtype_name(t) << " sigma " << sigma;
        }
    }
}

TEST(QuantsGgml, HalfConversionsMatchGgml) {
    const GgmlLib& lib = ggml_lib();
    ASSERT_TRUE(lib.error.empty()) << lib.error;
    // every f16 and bf16 bit pattern to f32; nans only need to stay nans (ggml quiets them)
    std::vector<uint16_t> all(0x10000);
    for (uint32_t i = 0; i < all.size(); ++i) all[i] = (uint16_t)i;
    for (DType t : {DType::F16, DType::BF16}) {
        std::vector<uint8_t> bytes(all.size() * 2);
        std::memcpy(bytes.data(), all.data(), bytes.size());
        const auto ours = our_dequant(t, bytes, (int64_t)all.size());
        const auto ggml = ggml_dequant(lib, t, bytes, (int64_t)all.size());
        for (size_t i = 0; i < all.size(); ++i) {
            if (std::isnan(ggml[i])) {
                ASSERT_TRUE(std::isnan(ours[i])) << dtype_name(t) << " " << i;
            } else {
                ASSERT_EQ(f32_bits(ours[i]), f32_bits(ggml[i])) << dtype_name(t) << " " << i;
            }
        }
    }
    // f32 to f16 / bf16 over a sweep of f32 bit patterns (all exponents, signs, nan and inf)
    std::vector<float> x;
    for (uint64_t u = 0; u <= 0xffffffffull; u += 4093) x.push_back(f32_from_bits((uint32_t)u));
    for (uint32_t u : {0x7f800000u, 0xff800000u, 0x7f800001u, 0x477ff000u, 0x477fefffu, 0x33000000u,
                       0x33000001u, 0x38800000u, 0x387fffffu}) {
        x.push_back(f32_from_bits(u));
    }
    std::vector<uint16_t> h_ours(x.size()), h_ggml(x.size());
    quantize_row(DType::F16, x.data(), h_ours.data(), (int64_t)x.size());
    lib.fp32_to_fp16_row(x.data(), h_ggml.data(), (int64_t)x.size());
    EXPECT_EQ(h_ours, h_ggml);
    quantize_row(DType::BF16, x.data(), h_ours.data(), (int64_t)x.size());
    lib.fp32_to_bf16_row_ref(x.data(), h_ggml.data(), (int64_t)x.size());
    EXPECT_EQ(h_ours, h_ggml);
}

}  // namespace
}  // namespace tandem::ref
