// The host-side logic of the CUDA split-K decode attention (src/backend/cuda/split_attention.h),
// compiled for the CPU: how many parts a batch gets, which positions each part takes, and that
// merging the parts' partial softmax results gives the attention of the whole context. Runs
// everywhere; the kernel itself is checked against the reference in tests/cuda on a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "backend/cuda/split_attention.h"

namespace tandem {
namespace {

using cuda::split_parts;
using cuda::split_range;

TEST(SplitAttention, PartsFillTheGpuOnlyWhereTheContextIsLong) {
    // one sequence, 4 KV heads, 132 SMs: 32K positions -> 64 parts (256 blocks), 1000 -> 2 (a part
    // keeps 256 positions at least), 300 -> 1
    EXPECT_EQ(split_parts(1, 4, 32768, 132), 64);
    EXPECT_EQ(split_parts(1, 4, 1000, 132), 2);
    EXPECT_EQ(split_parts(1, 4, 300, 132), 1);
    // 64 tokens x 4 heads are 256 blocks already: one doubling to pass 2 per SM
    EXPECT_EQ(split_parts(64, 4, 32768, 132), 2);
    // enough blocks, or tokens x parts past the scratch: no split
    EXPECT_EQ(split_parts(256, 4, 32768, 132), 1);
    EXPECT_EQ(split_parts(200, 1, 32768, 1000), 1);
    for (int64_t n_tok : {1, 3, 16, 100})
        for (int64_t ctx : {1, 700, 5000, 200000}) {
            const int64_t p = split_parts(n_tok, 8, ctx, 132);
            EXPECT_GE(p, 1);
            EXPECT_LE(p, cuda::kSplitMaxParts);
            EXPECT_EQ(p & (p - 1), 0) << "a power of two";
            if (p > 1) {
                EXPECT_LE(p * n_tok, cuda::kSplitMaxRows);
                EXPECT_GE(ctx / p, cuda::kSplitMinPart);
            }
        }
}

TEST(SplitAttention, PartsCoverEveryPositionOnceOnChunkBoundaries) {
    for (int64_t parts : {1, 2, 4, 8, 64})
        for (int64_t n_pos : {1, 2, 31, 32, 33, 255, 256, 257, 1000, 4096, 4097}) {
            int64_t next = 0;
            for (int64_t z = 0; z < parts; ++z) {
                const cuda::PosRange r = split_range(n_pos, parts, z);
                EXPECT_EQ(r.begin, next) << n_pos << " positions, part " << z << " of " << parts;
                EXPECT_LE(r.begin, r.end);
                if (r.begin < n_pos) {
                    EXPECT_EQ(r.begin % cuda::kSplitChunk, 0);
                }
                next = r.end;
            }
            EXPECT_EQ(next, n_pos) << n_pos << " positions in " << parts << " parts";
            // the first part is never empty: a lone part writes the output itself
            EXPECT_GT(split_range(n_pos, parts, 0).end, 0);
        }
}

// The partial results as the kernel defines them, computed directly, merged by split_merge: the
// softmax-weighted sum of the whole context (a part per call, empty ones included).
TEST(SplitAttention, MergedPartsAreTheWholeSoftmax) {
    std::mt19937 rng(7);
    std::normal_distribution<float> g(0.0f, 3.0f);
    const int64_t hd = 8;
    for (int64_t n_pos : {1, 40, 300, 1111})
        for (int64_t parts : {1, 2, 8, 64}) {
            std::vector<float> s((size_t)n_pos), v((size_t)(n_pos * hd));
            for (auto& x : s) x = g(rng);
            for (auto& x : v) x = g(rng);
            // reference: softmax in double
            const double mx = *std::max_element(s.begin(), s.end());
            std::vector<double> want((size_t)hd, 0.0);
            double den = 0.0;
            for (int64_t p = 0; p < n_pos; ++p) den += std::exp(s[p] - mx);
            for (int64_t p = 0; p < n_pos; ++p)
                for (int64_t d = 0; d < hd; ++d) want[d] += std::exp(s[p] - mx) / den * v[p * hd + d];
            // parts: o (hd floats) and (m, l), strided as the kernel writes them for one row
            std::vector<float> o((size_t)(parts * hd), 0.0f), ml((size_t)(2 * parts), 0.0f);
            for (int64_t z = 0; z < parts; ++z) {
                const cuda::PosRange r = split_range(n_pos, parts, z);
                float m = -INFINITY, l = 0.0f;
                for (int64_t p = r.begin; p < r.end; ++p) m = std::max(m, s[p]);
                for (int64_t p = r.begin; p < r.end; ++p) {
                    const float w = std::exp(s[p] - m);
                    l += w;
                    for (int64_t d = 0; d < hd; ++d) o[z * hd + d] += w * v[p * hd + d];
                }
                ml[2 * z] = m, ml[2 * z + 1] = l;
            }
            for (int64_t d = 0; d < hd; ++d) {
                const float got = cuda::split_merge(o.data(), ml.data(), parts, hd, 2, d);
                EXPECT_NEAR(got, want[d], 1e-5 * std::max(1.0, std::fabs(want[d])))
                    << n_pos << " positions, " << parts << " parts, element " << d;
            }
        }
}

}  // namespace
}  // namespace tandem
