// The CUDA kernels' weight decoders (src/backend/cuda/decode.h), compiled for the host: element
// by element and 32-element chunk by chunk they must give the reference dequantization bit for
// bit, for every weight type the GPU reads. Runs everywhere (no GPU needed): the decoders are
// the part of the CUDA kernels whose logic this checks before any GPU has run them.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "backend/cuda/decode.h"
#include "kernels/reference/quants.h"

namespace tandem {
namespace {

const DType kTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0,   DType::Q4_K,   DType::Q5_K, DType::Q6_K,
                        DType::Q4_1, DType::Q5_1, DType::IQ4_NL, DType::IQ4_XS, DType::Q2_K, DType::Q3_K};

// rows x n of type t: quantized from gaussian values with outliers, or random blocks (every bit
// pattern) for the types Tandem only reads
std::vector<uint8_t> make_rows(DType t, int64_t rows, int64_t n, uint32_t seed) {
    std::vector<uint8_t> w(row_bytes(t, n) * (size_t)rows);
    if (!ref::can_quantize(t)) {
        ref::random_blocks(t, seed, w.data(), rows * n);
        return w;
    }
    std::mt19937 rng(seed);
    std::normal_distribution<float> g(0.0f, 0.5f);
    std::vector<float> x((size_t)n);
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t i = 0; i < n; ++i) x[(size_t)i] = g(rng) * (i % 37 == 0 ? 20.0f : 1.0f);
        ref::quantize_row(t, x.data(), w.data() + (size_t)r * row_bytes(t, n), n);
    }
    return w;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

TEST(CudaDecode, ElementsAndChunksAreTheReferenceBitForBit) {
    const int64_t rows = 3, n = 512;
    for (DType t : kTypes) {
        const std::vector<uint8_t> w = make_rows(t, rows, n, 11 + (uint32_t)t);
        const size_t rb = row_bytes(t, n);
        std::vector<float> want((size_t)n);
        for (int64_t r = 0; r < rows; ++r) {
            const uint8_t* row = w.data() + (size_t)r * rb;
            ref::dequantize_row(t, row, want.data(), n);
            const bool known = cuda::with_weight_type(t, [&]<DType T>() {
                int64_t bad = 0;
                for (int64_t e = 0; e < n; ++e) bad += !same_bits(cuda::elem<T>(row, e), want[(size_t)e]);
                EXPECT_EQ(bad, 0) << dtype_name(t) << " row " << r << ": elements unlike the reference";
                float chunk[32];
                bad = 0;
                for (int64_t c = 0; c < n / 32; ++c) {
                    cuda::chunk32<T>(row, c, chunk);
                    for (int l = 0; l < 32; ++l) bad += !same_bits(chunk[l], want[(size_t)(32 * c + l)]);
                }
                EXPECT_EQ(bad, 0) << dtype_name(t) << " row " << r << ": chunk32 unlike the reference";
            });
            EXPECT_TRUE(known) << "no decoder for " << dtype_name(t);
        }
    }
}

// A row width that is not a multiple of 32 (F16/BF16/F32 only): the last chunk is partial,
// read as zeros past the end
TEST(CudaDecode, PartialLastChunkReadsZerosPastTheEnd) {
    const int64_t n = 300;
    const std::vector<uint8_t> w = make_rows(DType::F16, 1, n, 5);
    std::vector<float> want((size_t)n);
    ref::dequantize_row(DType::F16, w.data(), want.data(), n);
    float chunk[32];
    cuda::chunk32_tail<DType::F16>(w.data(), n / 32, n, chunk);
    for (int l = 0; l < 32; ++l) {
        const int64_t e = 32 * (n / 32) + l;
        if (e < n) EXPECT_TRUE(same_bits(chunk[l], want[(size_t)e])) << "element " << e;
        else EXPECT_EQ(chunk[l], 0.0f) << "element " << e << " past the end";
    }
}

}  // namespace
}  // namespace tandem
