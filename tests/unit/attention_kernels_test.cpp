// Causal attention over a paged f16 KV cache: the reference (scores, softmax, sum) against
// splitting the positions and merging (flash-decoding), and every ISA's kernel against it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "kernels/cpu/kernels.h"
#include "kernels/reference/attention.h"
#include "test_util.h"

namespace tandem::cpu {
namespace {

using ref::AttnJob;

// The KvPool layout for n_kv heads, the pages in a shuffled order: per page and head, the keys
// transposed (head_dim rows of page_size positions) and the values as rows, here kv_stride =
// head_dim + 8 halves apart (the values' row stride need not be head_dim).
struct Cache {
    int64_t hd, page_size, n_kv = 3, head = 1;
    std::vector<uint16_t> k, v;
    std::vector<int32_t> pages;
    int64_t row() const { return hd + 8; }
    int64_t head_block() const { return page_size * row(); }
    Cache(int64_t n_pos, int64_t hd_, int64_t ps, uint32_t seed) : hd(hd_), page_size(ps) {
        const int64_t n_pages = (n_pos + ps - 1) / ps + 2;
        pages.resize((size_t)n_pages);
        std::iota(pages.begin(), pages.end(), 0);
        std::shuffle(pages.begin(), pages.end(), std::mt19937(seed));
        const auto kf = gaussian((size_t)(n_pages * n_kv * head_block()), seed + 1), vf = gaussian(kf.size(), seed + 2);
        for (float x : kf) k.push_back(fp32_to_fp16(x));
        for (float x : vf) v.push_back(fp32_to_fp16(x));
    }
    AttnJob job(const float* q, float* o, int64_t n_tok, int64_t n_head, int64_t pos0) const {
        AttnJob j;
        j.q = q;
        j.q_stride = n_head * hd + 5;  // tokens' rows need not be packed together
        j.o = o;
        j.o_stride = n_head * hd + 5;
        j.n_tok = n_tok;
        j.n_head = n_head;
        j.hd = hd;
        j.pos0 = pos0;
        j.p_begin = 0;
        j.p_end = pos0 + n_tok;
        j.k = k.data() + head * head_block();
        j.v = v.data() + head * head_block();
        j.pages = pages.data();
        j.page_size = page_size;
        j.page_stride = n_kv * head_block();
        j.kv_stride = row();
        j.scale = 1.0f / std::sqrt((float)hd);
        return j;
    }
};

struct Case {
    int64_t n_tok, n_head, hd, pos0, page_size;
};
const Case kCases[] = {
    {1, 8, 128, 0, 128},   // first decode step
    {1, 8, 128, 300, 16},  // decode, small pages
    {1, 16, 64, 999, 128}, // decode, A22B-like group
    {37, 8, 128, 0, 128},  // a prompt
    {20, 4, 64, 45, 16},   // a prompt chunk after cached pages
    {50, 2, 64, 10, 24},   // pages of 24: blocks cut at page ends
    {9, 1, 128, 70, 32},   // no GQA sharing
    {5, 3, 256, 130, 256}, // odd group, wide heads
    {1, 4, 64, 77, 48},    // one pass of rows (keys read from the pages directly), blocks of 32 + 16
    {2, 4, 128, 40, 256},  // two tokens in that one pass: each row its own limit
    {3, 8, 48, 60, 32},    // head_dim a multiple of 16, not of 32 (a last pass of 16 dimensions)
    // at most 16 rows (AVX-512: no key tile, chunks of 128 positions, scores of 16 or 32 positions)
    {1, 6, 48, 100, 32},     // odd group, a last values pass of 16 dimensions
    {1, 12, 80, 200, 64},    // 12 rows: score vectors of 16 positions, values 16 dimensions a pass
    {2, 8, 128, 500, 128},   // 16 rows of two tokens, each its own limit; chunks of whole pages
    {1, 8, 128, 700, 256},   // pages of 256: two chunks a page, the last one cut
    {1, 16, 64, 1300, 128},  // many chunks (each prefetching the next)
    {1, 3, 64, 400, 128},    // 3 rows (AVX2: score vectors of 16 positions, values 16 dimensions a pass)
};

TEST(AttentionReference, SplitPositionsMergeToTheWhole) {
    for (const Case& c : kCases) {
        Cache cache(c.pos0 + c.n_tok, c.hd, c.page_size, 5);
        const auto q = gaussian((size_t)(c.n_tok * (c.n_head * c.hd + 5)), 6);
        const int64_t rows = c.n_tok * c.n_head;
        std::vector<float> whole((size_t)(c.n_tok * (c.n_head * c.hd + 5)));
        AttnJob j = cache.job(q.data(), whole.data(), c.n_tok, c.n_head, c.pos0);
        ref::attention(j);
        // three parts of the positions (one may be empty for some rows), packed rows
        const int64_t end = c.pos0 + c.n_tok, cut1 = end / 3, cut2 = 2 * end / 3 + 1;
        const int64_t bounds[4] = {0, cut1, std::min(cut2, end), end};
        std::vector<std::vector<float>> o(3, std::vector<float>((size_t)(rows * c.hd))), lse(3, std::vector<float>((size_t)rows));
        for (int i = 0; i < 3; ++i) {
            AttnJob p = j;
            p.p_begin = bounds[i];
            p.p_end = bounds[i + 1];
            p.o = o[(size_t)i].data();
            p.o_stride = c.n_head * c.hd;
            p.lse = lse[(size_t)i].data();
            ref::attention(p);
        }
        const float* op[3] = {o[0].data(), o[1].data(), o[2].data()};
        const float* lp[3] = {lse[0].data(), lse[1].data(), lse[2].data()};
        std::vector<float> merged((size_t)(rows * c.hd));
        ref::merge_attention(op, lp, 3, rows, c.hd, merged.data());
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t d = 0; d < c.hd; ++d)
                ASSERT_NEAR(merged[(size_t)(r * c.hd + d)], whole[(size_t)((r / c.n_head) * j.o_stride + (r % c.n_head) * c.hd + d)],
                            2e-5)
                    << "n_tok " << c.n_tok << " row " << r << " d " << d;
    }
}

class AttentionKernels : public ::testing::TestWithParam<Isa> {};

TEST_P(AttentionKernels, MatchesTheReferenceWholeAndInParts) {
    if (!isa_supported(GetParam())) GTEST_SKIP() << isa_name(GetParam()) << " not supported by this CPU";
    const KernelTable& k = kernels_for(GetParam());
    if (!k.attention) GTEST_SKIP() << isa_name(GetParam()) << " has no attention kernel (the forward goes head by head)";
    for (const Case& c : kCases) {
        Cache cache(c.pos0 + c.n_tok, c.hd, c.page_size, 11);
        auto q = gaussian((size_t)(c.n_tok * (c.n_head * c.hd + 5)), 12, 2.0f);  // peaked softmax rows too
        const int64_t rows = c.n_tok * c.n_head;
        for (int64_t lo : {int64_t{0}, c.pos0 / 2}) {
            const int64_t hi = c.pos0 + c.n_tok;
            std::vector<float> want((size_t)(c.n_tok * (c.n_head * c.hd + 5)), -3.0f), got(want);
            std::vector<float> lse_want((size_t)rows), lse_got((size_t)rows);
            AttnJob j = cache.job(q.data(), want.data(), c.n_tok, c.n_head, c.pos0);
            j.p_begin = lo;
            j.p_end = hi;
            j.lse = lse_want.data();
            ref::attention(j);
            j.o = got.data();
            j.lse = lse_got.data();
            k.attention(j);
            for (int64_t r = 0; r < rows; ++r) {
                if (std::isinf(lse_want[(size_t)r])) EXPECT_TRUE(std::isinf(lse_got[(size_t)r]) && lse_got[(size_t)r] < 0);
                else ASSERT_NEAR(lse_got[(size_t)r], lse_want[(size_t)r], 1e-4f * (1 + std::fabs(lse_want[(size_t)r])));
            }
            for (size_t i = 0; i < want.size(); ++i)
                ASSERT_NEAR(got[i], want[i], 1e-4f) << isa_name(GetParam()) << " n_tok " << c.n_tok << " n_head " << c.n_head
                                                   << " hd " << c.hd << " pos0 " << c.pos0 << " from " << lo << " at " << i;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, AttentionKernels, ::testing::ValuesIn(kAllIsas),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

}  // namespace
}  // namespace tandem::cpu
