// Packed (16-row interleaved) weight layouts: lossless packing, and every ISA's packed GEMM against
// the reference dot products on the original rows.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <utility>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/kernels.h"
#include "kernels/reference/ops.h"
#include "kernels/reference/packed.h"
#include "kernels/reference/quants.h"
#include "test_util.h"

namespace tandem::cpu {
namespace {

const DType kPackedTypes[] = {DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q3_K, DType::Q2_K, DType::IQ4_XS,
                              DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::IQ4_NL};

// rows x n quantized weights with a few outlier rows/columns, so scales and mins vary a lot (the
// types without a quantizer: random blocks, every bit pattern)
std::vector<uint8_t> make_rows(DType t, int64_t rows, int64_t n, uint32_t seed) {
    if (!ref::can_quantize(t)) {
        std::vector<uint8_t> w(row_bytes(t, n) * (size_t)rows);
        ref::random_blocks(t, seed, w.data(), rows * n);
        return w;
    }
    auto f = gaussian((size_t)(rows * n), seed, 0.05f);
    for (int64_t r = 0; r < rows; r += 5) f[(size_t)(r * n + (r * 37) % n)] *= 40.0f;
    for (int64_t r = 3; r < rows; r += 7)
        for (int64_t i = 0; i < n; ++i) f[(size_t)(r * n + i)] = std::fabs(f[(size_t)(r * n + i)]);  // all positive
    const size_t rb = row_bytes(t, n);
    std::vector<uint8_t> w(rb * (size_t)rows);
    for (int64_t r = 0; r < rows; ++r) ref::quantize_row(t, f.data() + r * n, w.data() + (size_t)r * rb, n);
    return w;
}

// groups x 16 rows of type wt (make_rows, seed) packed, and n_tok tokens of activations with a
// few outliers, converted to the type's activation type (ap: one pointer per token)
struct PackedCase {
    DType at;
    size_t rb;
    std::vector<uint8_t> w, packed, acts;
    std::vector<const void*> ap;
    PackedCase(DType wt, int64_t groups, int64_t n, int64_t n_tok, uint32_t seed)
        : at(ref::vec_dot_type(wt)), rb(row_bytes(wt, n)), w(make_rows(wt, groups * ref::kPackRows, n, seed)) {
        const size_t ab = row_bytes(at, n), gb = ref::packed_group_bytes(wt, n);
        packed.resize(gb * (size_t)groups);
        acts.resize(ab * (size_t)n_tok);
        for (int64_t g = 0; g < groups; ++g)
            ref::pack_group(wt, w.data() + (size_t)(g * ref::kPackRows) * rb, rb, n, packed.data() + g * gb);
        auto xf = gaussian((size_t)(n * n_tok), seed + 2);
        for (int64_t i = 0; i < n; i += 97) xf[(size_t)i] *= 30.0f;  // outlier activations
        for (int64_t t = 0; t < n_tok; ++t) {
            ref::convert_activation(at, xf.data() + t * n, acts.data() + t * ab, n);
            ap.push_back(acts.data() + t * ab);
        }
    }
};

TEST(PackedLayout, PackThenUnpackGivesTheSameBytes) {
    for (DType t : kPackedTypes) {
        for (int64_t n : {256, 768, 2048}) {
            const size_t rb = row_bytes(t, n);
            const auto w = make_rows(t, ref::kPackRows, n, 7 + (uint32_t)n);
            std::vector<uint8_t> packed(ref::packed_group_bytes(t, n)), back(w.size(), 0xAB);
            // Q6_K and the 32-element block types keep the size; Q4_K/Q5_K/Q3_K spread out their 12
            // packed scale bytes (+64 bytes per 16 rows x 256), Q2_K its 16 scale/min bytes (+256),
            // IQ4_XS holds its scales twice (+160)
            const bool same = t == DType::Q6_K || ref::q0_layout(t).bytes > 0;
            const size_t extra = same ? 0 : t == DType::Q2_K ? 256 : t == DType::IQ4_XS ? 160 : 64;
            EXPECT_EQ(packed.size(), w.size() + extra * (size_t)(n / 256));
            ref::pack_group(t, w.data(), rb, n, packed.data());
            ref::unpack_group(t, packed.data(), n, back.data(), rb);
            EXPECT_EQ(back, w) << dtype_name(t) << " n=" << n;
        }
    }
}

TEST(PackedLayout, EveryBlockQuantHasOne) {
    EXPECT_TRUE(ref::has_packed_layout(DType::Q4_K));
    EXPECT_TRUE(ref::has_packed_layout(DType::Q5_K));
    EXPECT_TRUE(ref::has_packed_layout(DType::Q6_K));
    EXPECT_TRUE(ref::has_packed_layout(DType::Q3_K));
    EXPECT_TRUE(ref::has_packed_layout(DType::Q2_K));
    EXPECT_TRUE(ref::has_packed_layout(DType::IQ4_XS));
    for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::IQ4_NL})
        EXPECT_TRUE(ref::has_packed_layout(t)) << dtype_name(t);
    for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_K}) EXPECT_FALSE(ref::has_packed_layout(t)) << dtype_name(t);
}

class PackedKernels : public ::testing::TestWithParam<Isa> {};

// Groups x tokens: one token (decode), 2-4 tokens (batched decode: pairs of groups, then one),
// a partial tile, several full tiles and a remainder (AMX: tiles of 16 tokens from 16 on).
TEST_P(PackedKernels, GemmMatchesTheReferenceOnTheOriginalRows) {
    if (!isa_supported(GetParam())) GTEST_SKIP() << isa_name(GetParam()) << " not supported by this CPU";
    const KernelTable& k = kernels_for(GetParam());
    for (DType wt : kPackedTypes) {
        ASSERT_NE(k.packed_gemm[(int)wt], nullptr) << isa_name(GetParam()) << " " << dtype_name(wt);
        for (auto [n, n_tok] : {std::pair<int64_t, int64_t>{256, 1}, {2048, 1}, {768, 5}, {2048, 19}, {4096, 8}, {64, 3},
                                {96, 9}, {512, 16}, {512, 37}, {512, 4}, {256, 2}}) {
            if (n % 256 != 0 && ref::q0_layout(wt).bytes == 0) continue;  // (the 32-element types only)
            const int64_t groups = 3, rows = groups * ref::kPackRows;
            const PackedCase c(wt, groups, n, n_tok, 41 + (uint32_t)n);
            const DType at = c.at;
            const size_t rb = c.rb;
            const auto& w = c.w;
            const auto& packed = c.packed;
            const auto& ap = c.ap;
            const int64_t ldy = rows + 3;  // a stride wider than the rows: nothing may be written there
            std::vector<float> got((size_t)(ldy * n_tok), -7.0f), want((size_t)rows), wrow((size_t)n), arow((size_t)n);
            k.packed_gemm[(int)wt](packed.data(), groups, n, ap.data(), n_tok, got.data(), ldy);
            for (int64_t t = 0; t < n_tok; ++t) {
                ref::gemv_rows(wt, w.data(), rb, rows, n, ap[(size_t)t], want.data());
                ref::dequantize_row(at, ap[(size_t)t], arow.data(), n);
                for (int64_t r = 0; r < rows; ++r) {
                    ref::dequantize_row(wt, w.data() + (size_t)r * rb, wrow.data(), n);
                    double mag = 0;
                    for (int64_t i = 0; i < n; ++i) mag += std::fabs((double)wrow[(size_t)i] * arow[(size_t)i]);
                    ASSERT_NEAR(got[(size_t)(t * ldy + r)], want[(size_t)r], 2e-5 * mag + 1e-6)
                        << isa_name(GetParam()) << " " << dtype_name(wt) << " n=" << n << " token " << t << " row " << r;
                }
                for (int64_t r = rows; r < ldy; ++r) ASSERT_EQ(got[(size_t)(t * ldy + r)], -7.0f) << "wrote past the rows";
            }
        }
    }
}

// Packed Q8_0 on x86 (AVX2, with AVX-VNNI, AVX-512) gives the GEMV's floats bit for bit (its 8 lanes and their
// final order): the GEMV is llama.cpp's dot, and a model's routing near-ties follow the last bit
// of these sums.
class PackedQ8_0X86 : public ::testing::TestWithParam<Isa> {};

TEST_P(PackedQ8_0X86, IsTheGemvBitForBit) {
    if (!isa_supported(GetParam())) GTEST_SKIP() << isa_name(GetParam()) << " not supported by this CPU";
    const KernelTable& k = kernels_for(GetParam());
    const DType wt = DType::Q8_0;
    for (auto [n, n_tok] : {std::pair<int64_t, int64_t>{256, 1}, {2048, 5}, {96, 3}, {4096, 2}, {512, 4}, {256, 8}}) {
        const int64_t groups = 2, rows = groups * ref::kPackRows;
        const size_t rb = row_bytes(wt, n), ab = row_bytes(wt, n), gb = ref::packed_group_bytes(wt, n);
        const auto w = make_rows(wt, rows, n, 51 + (uint32_t)n);
        std::vector<uint8_t> packed(gb * groups), acts(ab * (size_t)n_tok);
        for (int64_t g = 0; g < groups; ++g)
            ref::pack_group(wt, w.data() + (size_t)(g * ref::kPackRows) * rb, rb, n, packed.data() + g * gb);
        const auto xf = gaussian((size_t)(n * n_tok), 53);
        std::vector<const void*> ap;
        for (int64_t t = 0; t < n_tok; ++t) {
            k.convert[(int)wt](xf.data() + t * n, acts.data() + t * ab, n);
            ap.push_back(acts.data() + t * ab);
        }
        std::vector<float> got((size_t)(rows * n_tok)), want((size_t)rows);
        k.packed_gemm[(int)wt](packed.data(), groups, n, ap.data(), n_tok, got.data(), rows);
        for (int64_t t = 0; t < n_tok; ++t) {
            k.gemv[(int)wt](w.data(), rb, rows, n, ap[(size_t)t], want.data());
            for (int64_t r = 0; r < rows; ++r)
                ASSERT_EQ(got[(size_t)(t * rows + r)], want[(size_t)r])
                    << isa_name(GetParam()) << " n=" << n << " token " << t << " row " << r;
        }
    }
}

#if defined(__x86_64__)
// The AVX-512 table takes its packed kernels from the VBMI build on Intel CPUs with AVX512-VBMI;
// the build without it (Skylake-SP, Cascade Lake) must give the same floats bit for bit (only
// how the unpacking shifts bits differs), so the reference test above, run on the VBMI build,
// covers both.
TEST(PackedAvx512, WithAndWithoutVbmiAreBitForBitEqual) {
    const CpuFeatures& f = cpu_features();
    if (!f.has_avx512() || !f.avx512vbmi) GTEST_SKIP() << "AVX-512 with VBMI not supported by this CPU";
    KernelTable plain = kernels_for(Isa::generic), vbmi = plain;
    fill_avx512_packed(plain);
    fill_avx512_vbmi_packed(vbmi);
    EXPECT_EQ(kernels_for(Isa::avx512).packed_gemm[(int)DType::Q6_K],
              (f.intel ? vbmi : plain).packed_gemm[(int)DType::Q6_K])
        << "the avx512 table takes the VBMI build on Intel CPUs with VBMI, the other elsewhere";
    for (DType wt : kPackedTypes) {
        for (auto [n, n_tok] : {std::pair<int64_t, int64_t>{2048, 1}, {768, 4}, {512, 8}, {256, 19}, {96, 5}}) {
            if (n % 256 != 0 && ref::q0_layout(wt).bytes == 0) continue;
            const int64_t groups = 4, rows = groups * ref::kPackRows;
            const PackedCase c(wt, groups, n, n_tok, 61 + (uint32_t)n);
            std::vector<float> a((size_t)(rows * n_tok)), b((size_t)(rows * n_tok));
            plain.packed_gemm[(int)wt](c.packed.data(), groups, n, c.ap.data(), n_tok, a.data(), rows);
            vbmi.packed_gemm[(int)wt](c.packed.data(), groups, n, c.ap.data(), n_tok, b.data(), rows);
            for (size_t i = 0; i < a.size(); ++i)
                ASSERT_EQ(a[i], b[i]) << dtype_name(wt) << " n=" << n << " tokens " << n_tok << " output " << i;
        }
    }
}
#endif

INSTANTIATE_TEST_SUITE_P(X86, PackedQ8_0X86, ::testing::Values(Isa::avx2, Isa::avx2_vnni, Isa::avx512),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

INSTANTIATE_TEST_SUITE_P(AllIsas, PackedKernels, ::testing::ValuesIn(kAllIsas),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

}  // namespace
}  // namespace tandem::cpu
