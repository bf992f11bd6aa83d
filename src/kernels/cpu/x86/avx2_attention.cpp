// AVX2 causal attention over the paged f16 KV cache (kernels/reference/attention.h): the
// flash-attention structure of the AVX-512 kernel (avx512_attention.cpp) at AVX2's sizes, for
// the CPUs without AVX-512. Blocks of up to 16 positions inside one page, whose keys (transposed
// in the pages) are converted once into a float tile Kt[d][p] shared by every query row of the
// job; per 4 query rows the scores are 4 x 2 accumulators of 8 positions; an online softmax
// (running max and sum per row); the values accumulated into the rows' outputs, converted from
// f16 (F16C) on the fly. Jobs of at most 16 rows (a decode token's GQA group) take
// attention_driver.h's direct_attention with the loops of Direct below instead (no tile, chunks
// of 128 positions, the next chunk prefetched): kernels_bench attention/avx2/ctx4096/tok1 (Xeon
// VM, one core) cached 389-394 -> 252-260 us per KV head, from DRAM 533-537 -> 379-384.
// Compiled with the avx2.cpp flags; head_dim a multiple of 16.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/attention_driver.h"
#include "kernels/cpu/kernels.h"
#include "kernels/reference/attention.h"

namespace tandem::cpu {
namespace {

using ref::AttnJob;

constexpr int kBk = 16;   // positions per block (2 vectors of scores per row)
constexpr int kRows = 6;  // query rows per pass over a block's Kt tile

// e^x for x in [-87, 88] (the AVX-512 exp_ps's reduction and polynomial, 2^n built from its
// exponent bits); below -87 it gives ~1e-38, so masked positions are zeroed by the caller
inline __m256 exp8(__m256 x) {
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0f)), _mm256_set1_ps(-87.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504089f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

inline float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}
inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

// kt[d * kBk + p] = key p of the block as f32, for n <= kBk positions of one page (dimension d of
// the block's keys is n contiguous halves at k + d * stride); positions from n on are 0.
void load_kt(const uint16_t* k, int64_t stride, int n, int64_t hd, float* kt) {
    for (int64_t d = 0; d < hd; ++d) {
        const uint16_t* row = k + d * stride;
        uint16_t tmp[kBk] = {};
        if (n < kBk) {
            std::memcpy(tmp, row, sizeof(uint16_t) * (size_t)n);
            row = tmp;
        }
        _mm256_storeu_ps(kt + d * kBk, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)row)));
        _mm256_storeu_ps(kt + d * kBk + 8, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(row + 8))));
    }
}

// o[r][d0, d0 + 8 C) = corr[r] * o[r] + sum_i p[r * PS + i] * v_i over the block's n positions;
// pv: the next chunk's value lines, one prefetched per position (pv_lines of them)
template <int R, int C, int PS>
inline void values_pass(const float* p, const uint16_t* const* vp, int n, const float* corr, float* const* o,
                        int64_t d0, const char* pv = nullptr, int64_t pv_lines = 0) {
    __m256 a[R][C];
    for (int r = 0; r < R; ++r) {
        const __m256 c = _mm256_set1_ps(corr[r]);
        for (int j = 0; j < C; ++j) a[r][j] = _mm256_mul_ps(_mm256_loadu_ps(o[r] + d0 + 8 * j), c);
    }
    for (int i = 0; i < n; ++i) {
        if (i < pv_lines) _mm_prefetch(pv + 64 * i, _MM_HINT_T1);
        __m256 v[C];
        for (int j = 0; j < C; ++j) v[j] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(vp[i] + d0 + 8 * j)));
        for (int r = 0; r < R; ++r) {
            const __m256 w = _mm256_broadcast_ss(p + r * PS + i);
            for (int j = 0; j < C; ++j) a[r][j] = _mm256_fmadd_ps(w, v[j], a[r][j]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < C; ++j) _mm256_storeu_ps(o[r] + d0 + 8 * j, a[r][j]);
}

// R query rows (q[r]: hd floats, already scaled) against one block of n keys/values. lim[r]: the
// row's last visible position in the block (< 0: none). m, l: running max and sum; o[r]: the
// unnormalised output rows.
template <int R>
void rows_block(const float* const* q, const float* kt, const uint16_t* const* vp, int n, int64_t hd, const int* lim,
                float* m, float* l, float* const* o) {
    alignas(32) float sc[R][kBk];  // the scores, stored once after the loop (the accumulators stay
    {                              // in registers: indexed later by a runtime loop they were kept in
        __m256 s0[R], s1[R];       // memory and stored on every step)
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) s0[r] = s1[r] = _mm256_setzero_ps();
        for (int64_t d = 0; d < hd; ++d) {
            const __m256 k0 = _mm256_loadu_ps(kt + d * kBk), k1 = _mm256_loadu_ps(kt + d * kBk + 8);
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) {
                const __m256 qd = _mm256_broadcast_ss(q[r] + d);
                s0[r] = _mm256_fmadd_ps(qd, k0, s0[r]);
                s1[r] = _mm256_fmadd_ps(qd, k1, s1[r]);
            }
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            _mm256_store_ps(sc[r], s0[r]);
            _mm256_store_ps(sc[r] + 8, s1[r]);
        }
    }
    alignas(32) float p[R][kBk];
    float corr[R];
    const __m256 ninf = _mm256_set1_ps(-INFINITY), zero = _mm256_setzero_ps();
    const __m256i idx0 = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), idx1 = _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15);
    for (int r = 0; r < R; ++r) {
        const int last = std::min(lim[r], n - 1);
        if (last < 0) {
            corr[r] = 1.0f;
            _mm256_store_ps(p[r], zero);
            _mm256_store_ps(p[r] + 8, zero);
            continue;
        }
        const __m256i lv = _mm256_set1_epi32(last + 1);  // visible: index < last + 1
        const __m256 v0 = _mm256_castsi256_ps(_mm256_cmpgt_epi32(lv, idx0));
        const __m256 v1 = _mm256_castsi256_ps(_mm256_cmpgt_epi32(lv, idx1));
        const __m256 x0 = _mm256_blendv_ps(ninf, _mm256_load_ps(sc[r]), v0), x1 = _mm256_blendv_ps(ninf, _mm256_load_ps(sc[r] + 8), v1);
        const float m_new = std::max(m[r], hmax(_mm256_max_ps(x0, x1)));
        corr[r] = m[r] == -INFINITY ? 0.0f : std::exp(m[r] - m_new);
        const __m256 mn = _mm256_set1_ps(m_new);
        const __m256 e0 = _mm256_and_ps(exp8(_mm256_sub_ps(x0, mn)), v0);
        const __m256 e1 = _mm256_and_ps(exp8(_mm256_sub_ps(x1, mn)), v1);
        l[r] = l[r] * corr[r] + hsum(_mm256_add_ps(e0, e1));
        m[r] = m_new;
        _mm256_store_ps(p[r], e0);
        _mm256_store_ps(p[r] + 8, e1);
    }
    for (int64_t d0 = 0; d0 < hd; d0 += 16) values_pass<R, 2, kBk>(&p[0][0], vp, n, corr, o, d0);
}

constexpr AttnRowsFn kRowsFns[kRows] = {rows_block<1>, rows_block<2>, rows_block<3>, rows_block<4>, rows_block<5>, rows_block<6>};

// ---- Few rows (a decode token's GQA group): attention_driver.h's direct_attention -------------
struct Direct {
    // Up to 16 rows (Qwen3-235B's 16 query heads per KV head): more than 8 go in two passes of
    // at most 8 over each chunk's keys and values (16 rows' accumulators would not fit the 16
    // registers), the second reading them from L1/L2
    static constexpr int kMaxDirect = 16;
    template <int R>
    static constexpr int width() { return R <= 4 ? 16 : 8; }  // score accumulators: 8 at most per pass

    // sc[r * kDirectChunk + p] = q_r . k_p for the width<R>() positions of keys at k (dimension d at
    // k + d * stride), n of them present (the others read as 0); pk: a line of each row prefetched
    template <int R, bool Full>
    static void scores(const float* qt, const uint16_t* k, int64_t stride, int n, int64_t hd, float* sc, const uint16_t* pk) {
        if constexpr (R > 8) {
            scores_rows<8, 1, Full>(qt, k, stride, n, hd, sc, pk);
            scores_rows<R - 8, 1, Full>(qt + 8, k, stride, n, hd, sc + 8 * kDirectChunk, nullptr);
        } else {
            scores_rows<R, width<R>() / 8, Full>(qt, k, stride, n, hd, sc, pk);
        }
    }

    // scores of R <= 8 rows (row r's query at qt[d * kMaxDirect + r]) for NV vectors of 8 positions
    template <int R, int NV, bool Full>
    static void scores_rows(const float* qt, const uint16_t* k, int64_t stride, int n, int64_t hd, float* sc,
                            const uint16_t* pk) {
        __m256 s[R][NV];
        for (int r = 0; r < R; ++r)
            for (int j = 0; j < NV; ++j) s[r][j] = _mm256_setzero_ps();
        for (int64_t d = 0; d < hd; ++d) {
            const uint16_t* row = k + d * stride;
            if (pk) _mm_prefetch((const char*)(pk + d * stride), _MM_HINT_T1);
            uint16_t tmp[8 * NV] = {};
            if (!Full) {
                std::memcpy(tmp, row, sizeof(uint16_t) * (size_t)n);
                row = tmp;
            }
            __m256 kv[NV];
            for (int j = 0; j < NV; ++j) kv[j] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(row + 8 * j)));
            const float* qd = qt + d * kMaxDirect;
            for (int r = 0; r < R; ++r) {
                const __m256 b = _mm256_broadcast_ss(qd + r);
                for (int j = 0; j < NV; ++j) s[r][j] = _mm256_fmadd_ps(b, kv[j], s[r][j]);
            }
        }
        for (int r = 0; r < R; ++r)
            for (int j = 0; j < NV; ++j) _mm256_storeu_ps(sc + r * kDirectChunk + 8 * j, s[r][j]);
    }

    // One row's softmax step over a chunk of n positions of which the first vis are visible (as
    // the AVX-512 kernel's); returns the rescaling of what was summed before
    static float softmax(float* x, int n, int vis, float& m, float& l) {
        const __m256 zero = _mm256_setzero_ps();
        if (vis <= 0) {
            for (int i = 0; i < n; i += 8) _mm256_storeu_ps(x + i, zero);
            return 1.0f;
        }
        const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        auto visible = [&](int i) { return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(vis - i), idx)); };
        __m256 mx = _mm256_set1_ps(-INFINITY);
        for (int i = 0; i < vis; i += 8) mx = _mm256_max_ps(mx, _mm256_blendv_ps(mx, _mm256_loadu_ps(x + i), visible(i)));
        const float m_new = std::max(m, hmax(mx));
        const float corr = m == -INFINITY ? 0.0f : std::exp(m - m_new);
        const __m256 mn = _mm256_set1_ps(m_new);
        __m256 sum = zero;
        for (int i = 0; i < n; i += 8) {
            const __m256 e = _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mn)), visible(i));
            sum = _mm256_add_ps(sum, e);
            _mm256_storeu_ps(x + i, e);
        }
        l = l * corr + hsum(sum);
        m = m_new;
        return corr;
    }

    // one values pass from dimension d0 (16 dimensions, 8 past 4 rows); returns how many it took
    template <int R>
    static int64_t values(const float* p, const uint16_t* const* vp, int n, const float* corr, float* const* o, int64_t d0,
                          int64_t hd, const char* pv, int64_t pv_lines) {
        (void)hd;  // (a multiple of 16)
        if constexpr (R > 8) {
            values_pass<8, 1, kDirectChunk>(p, vp, n, corr, o, d0, pv, pv_lines);
            values_pass<R - 8, 1, kDirectChunk>(p + 8 * kDirectChunk, vp, n, corr + 8, o + 8, d0);
            return 8;
        } else {
            constexpr int C = R <= 4 ? 2 : 1;
            values_pass<R, C, kDirectChunk>(p, vp, n, corr, o, d0, pv, pv_lines);
            return 8 * C;
        }
    }
};

void attention(const AttnJob& jb) {
    const int64_t n_rows = jb.n_tok * jb.n_head;
    if (n_rows >= 1 && n_rows <= Direct::kMaxDirect) kDirectFns<Direct>[(size_t)(n_rows - 1)](jb);
    else flash_attention<kBk, kRows, 1>(jb, load_kt, kRowsFns);
}

}  // namespace

void fill_avx2_attention(KernelTable& t) { t.attention = attention; }

}  // namespace tandem::cpu
