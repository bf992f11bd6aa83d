// Every CPU kernel of every ISA this machine supports, against the scalar reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/fp16.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/kernels.h"
#include "kernels/reference/ops.h"
#include "kernels/reference/quants.h"
#include "test_util.h"

namespace tandem::cpu {
namespace {

const DType kWeightTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0,   DType::Q5_0,
                              DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K,   DType::Q4_1,
                              DType::Q5_1, DType::Q2_K, DType::Q3_K, DType::IQ4_NL, DType::IQ4_XS};

// `rows` weight rows of n elements: quantized gaussians, or for the types Tandem reads but does
// not write (no quantizer), random blocks (every level and scale pattern) with small f16 scales.
std::vector<uint8_t> weight_rows(DType wt, int64_t n, int64_t rows, uint32_t seed) {
    const size_t rb = row_bytes(wt, n);
    std::vector<uint8_t> w(rb * (size_t)rows);
    if (ref::can_quantize(wt)) {
        const auto wf = gaussian((size_t)(n * rows), seed, 0.05f);
        for (int64_t r = 0; r < rows; ++r) ref::quantize_row(wt, wf.data() + r * n, w.data() + r * rb, n);
        return w;
    }
    ref::random_blocks(wt, seed, w.data(), n * rows);
    return w;
}

class CpuKernels : public ::testing::TestWithParam<Isa> {};

TEST(CpuKernelsInfo, ReportsIsas) {
    std::string s;
    for (Isa i : kAllIsas) s += std::string(isa_name(i)) + (isa_supported(i) ? "+ " : "- ");
    std::printf("cpu features: %s\nisas: %s\nchosen: %s\n", cpu_features().describe().c_str(), s.c_str(),
                isa_name(kernels().isa));
    EXPECT_TRUE(isa_supported(kernels().isa));
    // CI names the ISA it expects on its (emulated) CPU, so that kernels skipped as "not
    // supported" cannot pass unnoticed
    if (const char* want = std::getenv("TANDEM_EXPECT_ISA")) {
        EXPECT_STREQ(want, isa_name(kernels().isa));
        EXPECT_TRUE(isa_supported(kernels().isa));
    }
}

TEST_P(CpuKernels, ActivationConversionMatchesReference) {
    if (!isa_supported(GetParam())) GTEST_SKIP() << isa_name(GetParam()) << " not supported by this CPU";
    const KernelTable& k = kernels_for(GetParam());
    const int64_t n = 1024;
    for (uint32_t seed : {1u, 2u, 3u}) {
        auto x = gaussian(n, seed, seed == 3 ? 1e-3f : 2.0f);
        x[5] = 0.0f;
        std::fill(x.begin() + 256, x.begin() + 512, 0.0f);  // an all-zero block
        // both signs of a block's largest magnitude: the first one found sets the Q8_K scale's sign
        x[600] = -9.0f, x[620] = 9.0f, x[900] = 9.0f, x[901] = -9.0f;
        // Q8_K and F16: byte-identical to the reference
        for (DType t : {DType::Q8_K, DType::F16}) {
            std::vector<uint8_t> a(row_bytes(t, n)), b(row_bytes(t, n));
            k.convert[(int)t](x.data(), a.data(), n);
            ref::convert_activation(t, x.data(), b.data(), n);
            EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size())) << dtype_name(t);
        }
        // Q8_0: SIMD rounds ties to even (as llama.cpp's SIMD path), the reference away from
        // zero: same scales, values within one step
        std::vector<ref::BlockQ8_0> a(n / 32), b(n / 32);
        k.convert[(int)DType::Q8_0](x.data(), a.data(), n);
        ref::convert_activation(DType::Q8_0, x.data(), b.data(), n);
        for (size_t i = 0; i < a.size(); ++i) {
            ASSERT_EQ(a[i].d, b[i].d);
            for (int j = 0; j < 32; ++j) ASSERT_LE(std::abs(a[i].qs[j] - b[i].qs[j]), 1);
        }
        // NEON rounds half away from zero (FCVTAS) like the reference: byte-identical
        if (GetParam() == Isa::neon || GetParam() == Isa::neon_v8) {
            EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(a[0])));
        }
    }
}

TEST_P(CpuKernels, GemvMatchesReference) {
    if (!isa_supported(GetParam())) GTEST_SKIP() << isa_name(GetParam()) << " not supported by this CPU";
    const KernelTable& k = kernels_for(GetParam());
    for (DType wt : kWeightTypes) {
        for (int64_t n : {256, 768, 2048}) {
            const int64_t rows = 37;
            const DType at = ref::vec_dot_type(wt);
            const size_t rb = row_bytes(wt, n);
            const std::vector<uint8_t> w = weight_rows(wt, n, rows, 10 + (uint32_t)n);
            const auto x = gaussian((size_t)n, 99);
            std::vector<uint8_t> act(row_bytes(at, n));
            ref::convert_activation(at, x.data(), act.data(), n);  // same activation for both
            std::vector<float> got(rows), want(rows);
            k.gemv[(int)wt](w.data(), rb, rows, n, act.data(), got.data());
            ref::gemv_rows(wt, w.data(), rb, rows, n, act.data(), want.data());
            // tolerance: float summation order; relative to the sum of |products|
            std::vector<float> wrow(n), arow(n);
            ref::dequantize_row(at, act.data(), arow.data(), n);
            for (int64_t r = 0; r < rows; ++r) {
                ref::dequantize_row(wt, w.data() + r * rb, wrow.data(), n);
                double mag = 0;
                for (int64_t i = 0; i < n; ++i) mag += std::fabs((double)wrow[i] * arow[i]);
                ASSERT_NEAR(got[r], want[r], 2e-5 * mag + 1e-6)
                    << isa_name(GetParam()) << " " << dtype_name(wt) << " n=" << n << " row " << r;
            }
        }
    }
}

// n_tok tokens of gaussian activations (seed) as the table converts them for wt, through the
// table's gemm over the rows: got[t * rows + r]; the activations kept for the per-token gemv
struct GemmRun {
    std::vector<uint8_t> acts;
    std::vector<const void*> ptrs;
    std::vector<float> got;
};
GemmRun run_gemm(const KernelTable& k, DType wt, const std::vector<uint8_t>& w, int64_t n, int64_t rows, int64_t n_tok,
                 uint32_t seed) {
    const DType at = ref::vec_dot_type(wt);
    const size_t ab = row_bytes(at, n);
    GemmRun g;
    g.acts.resize(ab * n_tok);
    g.got.assign((size_t)(rows * n_tok), -1.0f);
    const auto xf = gaussian((size_t)(n * n_tok), seed);
    std::vector<float*> yp;
    for (int64_t t = 0; t < n_tok; ++t) {
        k.convert[(int)at](xf.data() + t * n, g.acts.data() + t * ab, n);
        g.ptrs.push_back(g.acts.data() + t * ab);
        yp.push_back(g.got.data() + t * rows);
    }
    k.gemm[(int)wt](w.data(), row_bytes(wt, n), rows, n, g.ptrs.data(), n_tok, yp.data());
    return g;
}

TEST_P(CpuKernels, GemmEqualsGemvPerToken) {
    if (!isa_supported(GetParam())) GTEST_SKIP() << isa_name(GetParam()) << " not supported by this CPU";
    const KernelTable& k = kernels_for(GetParam());
    for (DType wt : kWeightTypes) {
        const int64_t n = 512, rows = 19, n_tok = 7;  // 7 tokens: one tile of 4 and a remainder
        const std::vector<uint8_t> w = weight_rows(wt, n, rows, 21);
        const GemmRun g = run_gemm(k, wt, w, n, rows, n_tok, 22);
        std::vector<float> want((size_t)rows);
        for (int64_t t = 0; t < n_tok; ++t) {
            k.gemv[(int)wt](w.data(), row_bytes(wt, n), rows, n, g.ptrs[(size_t)t], want.data());
            for (int64_t r = 0; r < rows; ++r)
                ASSERT_NEAR(g.got[(size_t)(t * rows + r)], want[(size_t)r], 1e-4f * (std::fabs(want[(size_t)r]) + 1.0f))
                    << isa_name(GetParam()) << " " << dtype_name(wt) << " token " << t << " row " << r;
        }
    }
}

// The float weight types (F16, BF16, F32): a batched token computes what it computes alone, bit for
// bit: the multi-token kernel repeats the gemv's operations per (row, token). Row counts that are
// not a multiple of the 16-row blocks, widths with a tail past the 32-element steps, token counts
// below, at and past the 8-token tile. (The amx table's AMX-BF16 tiles take BF16 from 16 tokens
// and widths that are multiples of 32, summing in another order: 17 tokens come here with a width
// of 1000 only; GemmManyTokensMatchesReference checks those tiles.)
TEST_P(CpuKernels, FloatGemmIsTheGemvBitForBit) {
    if (!isa_supported(GetParam())) GTEST_SKIP() << isa_name(GetParam()) << " not supported by this CPU";
    const KernelTable& k = kernels_for(GetParam());
    for (DType wt : {DType::F16, DType::BF16, DType::F32})
        for (auto [n, n_tok] : {std::pair<int64_t, int64_t>{512, 1}, {520, 3}, {33, 8}, {256, 11}, {1000, 17}}) {
            const int64_t rows = 37;
            const std::vector<uint8_t> w = weight_rows(wt, n, rows, 41 + (uint32_t)n);
            const GemmRun g = run_gemm(k, wt, w, n, rows, n_tok, 42);
            std::vector<float> want((size_t)rows);
            for (int64_t t = 0; t < n_tok; ++t) {
                k.gemv[(int)wt](w.data(), row_bytes(wt, n), rows, n, g.ptrs[(size_t)t], want.data());
                for (int64_t r = 0; r < rows; ++r)
                    ASSERT_EQ(g.got[(size_t)(t * rows + r)], want[(size_t)r])
                        << isa_name(GetParam()) << " " << dtype_name(wt) << " n=" << n << " token " << t << " row " << r;
            }
        }
}

// The float kernels' results against the reference (the gemv is their tile of one, so
// FloatGemmIsTheGemvBitForBit alone would not see a wrong sum): widths with tails past the vector
// steps, token counts below, at and past the tiles, with GemvMatchesReference's tolerance.
void expect_float_gemm_matches_reference(const KernelTable& k, const std::string& label) {
    for (DType wt : {DType::F16, DType::BF16, DType::F32})
        for (auto [n, n_tok] : {std::pair<int64_t, int64_t>{33, 1}, {520, 3}, {1000, 8}, {2056, 11}, {96, 5}}) {
            const int64_t rows = 37;
            const std::vector<uint8_t> w = weight_rows(wt, n, rows, 51 + (uint32_t)n);
            const GemmRun g = run_gemm(k, wt, w, n, rows, n_tok, 52);
            const DType at = ref::vec_dot_type(wt);
            std::vector<float> want((size_t)rows), wrow(n), arow(n);
            for (int64_t t = 0; t < n_tok; ++t) {
                ref::gemv_rows(wt, w.data(), row_bytes(wt, n), rows, n, g.ptrs[(size_t)t], want.data());
                ref::dequantize_row(at, g.ptrs[(size_t)t], arow.data(), n);
                for (int64_t r = 0; r < rows; ++r) {
                    ref::dequantize_row(wt, w.data() + r * row_bytes(wt, n), wrow.data(), n);
                    double mag = 0;
                    for (int64_t i = 0; i < n; ++i) mag += std::fabs((double)wrow[i] * arow[i]);
                    ASSERT_NEAR(g.got[(size_t)(t * rows + r)], want[(size_t)r], 2e-5 * mag + 1e-6)
                        << label << " " << dtype_name(wt) << " n=" << n << " token " << t << " row " << r;
                }
            }
        }
}

TEST_P(CpuKernels, FloatGemmMatchesReference) {
    if (!isa_supported(GetParam())) GTEST_SKIP() << isa_name(GetParam()) << " not supported by this CPU";
    expect_float_gemm_matches_reference(kernels_for(GetParam()), isa_name(GetParam()));
}

#if defined(__x86_64__)
// AVX-512 tables take BF16 through VDPBF16PS where the CPU has AVX512-BF16, else through the
// widening kernel: both checked here where the CPU can run them (the tables hold only one)
TEST(CpuKernelsBf16, WideningAndDotProductKernelsMatchReference) {
    const CpuFeatures& f = cpu_features();
    if (!f.has_avx512()) GTEST_SKIP() << "AVX-512 not supported by this CPU";
    KernelTable wide = kernels_for(Isa::generic);
    fill_avx2(wide);
    fill_avx512(wide);
    EXPECT_EQ(kernels_for(Isa::avx512).gemm[(int)DType::BF16] != wide.gemm[(int)DType::BF16], f.avx512bf16)
        << "the avx512 table takes the VDPBF16PS kernel exactly where the CPU has AVX512-BF16";
    if (isa_supported(Isa::amx)) {
        EXPECT_EQ(kernels_for(Isa::amx).gemm[(int)DType::BF16] != kernels_for(Isa::avx512).gemm[(int)DType::BF16],
                  f.amx_bf16)
            << "the amx table takes the AMX-BF16 tiles exactly where the CPU has AMX-BF16";
    }
    expect_float_gemm_matches_reference(wide, "avx512 (widening)");
    if (!f.avx512bf16) GTEST_SKIP() << "AVX512-BF16 not supported by this CPU: the VDPBF16PS kernel not run";
    KernelTable dp = wide;
    fill_avx512_bf16(dp);
    expect_float_gemm_matches_reference(dp, "avx512 (VDPBF16PS)");
}
#endif

// Prefill-sized GEMM (AMX tiles from 8 or 16 tokens on): many tokens, partial tiles of rows (37 =
// 2 x 16 + 5; 53 = 3 x 16 + 5: an odd block, which AMX-BF16 runs without a partner) and of tokens,
// against the reference per token with GemvMatchesReference's tolerance.
TEST_P(CpuKernels, GemmManyTokensMatchesReference) {
    if (!isa_supported(GetParam())) GTEST_SKIP() << isa_name(GetParam()) << " not supported by this CPU";
    const KernelTable& k = kernels_for(GetParam());
    for (DType wt : kWeightTypes) {
        for (auto [n, n_tok, rows] : {std::tuple<int64_t, int64_t, int64_t>{256, 16, 37}, {768, 37, 37}, {2048, 9, 37},
                                      {512, 21, 53}}) {
            const DType at = ref::vec_dot_type(wt);
            const size_t rb = row_bytes(wt, n), ab = row_bytes(at, n);
            std::vector<uint8_t> acts(ab * n_tok);
            const std::vector<uint8_t> w = weight_rows(wt, n, rows, 31 + (uint32_t)n);
            const auto xf = gaussian((size_t)(n * n_tok), 32);
            std::vector<const void*> ap;
            std::vector<float*> yp;
            std::vector<float> got((size_t)(rows * n_tok), -1.0f), want((size_t)rows), wrow(n), arow(n);
            for (int64_t t = 0; t < n_tok; ++t) {
                ref::convert_activation(at, xf.data() + t * n, acts.data() + t * ab, n);
                ap.push_back(acts.data() + t * ab);
                yp.push_back(got.data() + t * rows);
            }
            k.gemm[(int)wt](w.data(), rb, rows, n, ap.data(), n_tok, yp.data());
            for (int64_t t = 0; t < n_tok; ++t) {
                ref::gemv_rows(wt, w.data(), rb, rows, n, ap[(size_t)t], want.data());
                ref::dequantize_row(at, ap[(size_t)t], arow.data(), n);
                for (int64_t r = 0; r < rows; ++r) {
                    ref::dequantize_row(wt, w.data() + r * rb, wrow.data(), n);
                    double mag = 0;
                    for (int64_t i = 0; i < n; ++i) mag += std::fabs((double)wrow[i] * arow[i]);
                    ASSERT_NEAR(got[(size_t)(t * rows + r)], want[(size_t)r], 2e-5 * mag + 1e-6)
                        << isa_name(GetParam()) << " " << dtype_name(wt) << " n=" << n << " token " << t << " row " << r;
                }
            }
        }
    }
}

TEST_P(CpuKernels, AttentionOverF16CacheMatchesReference) {
    if (!isa_supported(GetParam())) GTEST_SKIP() << isa_name(GetParam()) << " not supported by this CPU";
    const KernelTable& k = kernels_for(GetParam()), &g = kernels_for(Isa::generic);
    // AVX-512 needs head_dim % 16 == 0 (the forward falls back to generic otherwise); the NEON
    // kernels take any head_dim (68: a tail of 4 after the 8-wide steps)
    const bool any_hd = GetParam() == Isa::neon || GetParam() == Isa::neon_v8;
    for (int64_t hd : {128, 68}) {
        if (hd % 16 != 0 && !any_hd) continue;
        const int64_t stride = 512, n_pos = 77;  // 77: a tail after 16- and 8-wide steps
        // room for hd key rows and n_pos value rows of `stride`
        const auto q = gaussian(hd, 5), kvf = gaussian((size_t)(stride * (std::max(hd, n_pos) + 1)), 6), w = gaussian(n_pos, 7);
        std::vector<uint16_t> kv(kvf.size());
        for (size_t i = 0; i < kv.size(); ++i) kv[i] = fp32_to_fp16(kvf[i]);
        std::vector<float> s1(n_pos), s2(n_pos), o1(hd, 0.5f), o2(hd, 0.5f);
        // keys transposed (hd rows of `stride` positions), values as n_pos rows of `stride`
        k.attn_scores(q.data(), kv.data() + 3, stride, n_pos, hd, s1.data());
        g.attn_scores(q.data(), kv.data() + 3, stride, n_pos, hd, s2.data());
        for (int64_t p = 0; p < n_pos; ++p) ASSERT_NEAR(s1[p], s2[p], 1e-4f * 12) << "hd " << hd << " pos " << p;
        k.attn_values(w.data(), kv.data() + 128, stride, n_pos, hd, o1.data());
        g.attn_values(w.data(), kv.data() + 128, stride, n_pos, hd, o2.data());
        for (int64_t i = 0; i < hd; ++i) ASSERT_NEAR(o1[i], o2[i], 1e-4f * 9) << "hd " << hd << " i " << i;
    }
}

TEST_P(CpuKernels, RowOpsMatchReference) {
    if (!isa_supported(GetParam())) GTEST_SKIP() << isa_name(GetParam()) << " not supported by this CPU";
    const KernelTable& k = kernels_for(GetParam());
    ASSERT_TRUE(k.rms_norm && k.swiglu && k.axpy);
    for (int64_t n : {1, 15, 64, 2048, 2051}) {
        auto x = gaussian((size_t)n, 51, 3.0f), w = gaussian((size_t)n, 52), u = gaussian((size_t)n, 53);
        x[0] = 40.0f;  // silu far out on both sides
        if (n > 1) x[1] = -40.0f;
        std::vector<float> want((size_t)n), got((size_t)n);
        for (const float* wp : {(const float*)w.data(), (const float*)nullptr}) {
            ref::rms_norm(x.data(), wp, n, 1e-6f, want.data());
            k.rms_norm(x.data(), wp, n, 1e-6f, got.data());
            for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(got[i], want[i], 1e-6f * (1 + std::fabs(want[i]))) << "rms_norm n=" << n;
        }
        ref::swiglu(x.data(), u.data(), want.data(), n);
        k.swiglu(x.data(), u.data(), got.data(), n);
        for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(got[i], want[i], 1e-5f * (1 + std::fabs(want[i]))) << "swiglu n=" << n;
        want = u;
        got = u;
        for (int64_t i = 0; i < n; ++i) want[i] += 0.37f * x[i];
        k.axpy(0.37f, x.data(), got.data(), n);
        for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(got[i], want[i], 1e-6f * (1 + std::fabs(want[i]))) << "axpy n=" << n;
    }
}

TEST(CpuKernels, FastKernelsExistForTheHotTypes) {
    int n_checked = 0;
    for (Isa isa : {Isa::avx512, Isa::amx, Isa::neon, Isa::neon_v8}) {
        if (!isa_supported(isa)) continue;
        const KernelTable& k = kernels_for(isa);
        for (DType t : {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::F16, DType::F32})
            EXPECT_TRUE(k.fast[(int)t]) << isa_name(isa) << " " << dtype_name(t);
        if (isa == Isa::avx512 || isa == Isa::amx) {
            EXPECT_TRUE(k.fast[(int)DType::BF16]);  // no NEON BF16 kernel yet
            // the low-bit GGUF types of llama.cpp's Q2_K / Q3_K / IQ4_XS mixes (no NEON kernels yet)
            for (DType t : {DType::Q2_K, DType::Q3_K, DType::IQ4_XS, DType::IQ4_NL, DType::Q4_1, DType::Q5_1})
                EXPECT_TRUE(k.fast[(int)t]) << isa_name(isa) << " " << dtype_name(t);
        }
        ++n_checked;
    }
    if (n_checked == 0) GTEST_SKIP() << "neither avx512 nor neon supported by this CPU";
}

// The tables of the ISAs this build does not have are copies of the generic one (their tests
// skip); on aarch64 the test below checks the NEON tables are really NEON kernels.
TEST(CpuKernels, NeonTablesHaveTheirOwnKernels) {
    for (Isa isa : {Isa::neon, Isa::neon_v8}) {
        if (!isa_supported(isa)) continue;
        const KernelTable& k = kernels_for(isa), &g = kernels_for(Isa::generic);
        for (DType t : {DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_0, DType::Q4_0, DType::Q5_0, DType::F16,
                        DType::Q3_K, DType::Q2_K, DType::IQ4_XS, DType::IQ4_NL})
            EXPECT_NE((void*)k.gemv[(int)t], (void*)g.gemv[(int)t]) << isa_name(isa) << " " << dtype_name(t);
        for (DType t : {DType::Q8_K, DType::Q8_0, DType::F16})
            EXPECT_NE((void*)k.convert[(int)t], (void*)g.convert[(int)t]) << isa_name(isa) << " " << dtype_name(t);
        EXPECT_NE((void*)k.attn_scores, (void*)g.attn_scores);
        EXPECT_NE((void*)k.attn_values, (void*)g.attn_values);
        EXPECT_NE((void*)k.gemv_i8, (void*)g.gemv_i8);
    }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, CpuKernels, ::testing::ValuesIn(kAllIsas),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

}  // namespace
}  // namespace tandem::cpu
