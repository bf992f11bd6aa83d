// AVX-512 causal attention over the paged f16 KV cache (kernels/reference/attention.h), flash-
// attention style: the positions in blocks of up to kBk inside one page; per block the keys (the
// pages hold them transposed) are converted once into a float tile Kt[d][p], shared by every query
// row of the job (the GQA heads of the KV head times the job's tokens); per 8 query rows the
// scores are 2 x 8 accumulators of 16
// positions (one Kt load feeds 8 FMAs), then an online softmax (running max and sum per row; the
// rows' rescaling factors in one vector exp) and the values accumulated into the rows' outputs,
// converted from f16 on the fly, 32 dimensions per pass (one broadcast weight feeds two FMAs:
// decode from cache 20.5-23 -> 16.4-17.6 us per 512 positions, 32-token prefill at 4K positions
// 4.0-4.3 -> 3.4 ms per KV head; kernels_bench attention/avx512/...).
// The walk over blocks and rows is attention_driver.h's (shared with the AVX2 and NEON kernels).
// Compiled with the avx512.cpp flags; head_dim must be a multiple of 16.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/attention_driver.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/x86/avx512_math.h"
#include "kernels/reference/attention.h"

namespace tandem::cpu {
namespace {

using ref::AttnJob;

constexpr int kBk = 32;    // positions per block (2 vectors of scores per row)
constexpr int kRows = 8;   // query rows per pass over a block's Kt tile
constexpr int kAhead = 2;  // blocks ahead whose keys and values are prefetched

// kt[d * kBk + p] = key p of the block as f32, for n <= kBk positions of one page (the pages
// hold keys transposed: dimension d of the block's keys is n contiguous halves at k + d * stride);
// positions from n on are 0.
void load_kt(const uint16_t* k, int64_t stride, int n, int64_t hd, float* kt) {
    const __mmask16 m0 = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
    const __mmask16 m1 = n >= 32 ? (__mmask16)0xFFFF : n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
    for (int64_t d = 0; d < hd; ++d) {
        const uint16_t* row = k + d * stride;
        _mm512_storeu_ps(kt + d * kBk, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m0, row)));
        _mm512_storeu_ps(kt + d * kBk + 16, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m1, row + 16)));
    }
}

// o[r][d0, d0 + 16 C) = corr[r] * o[r] + sum_i p[r][i] * v_i over the block's n positions
template <int R, int C>
inline void values_pass(const float (*p)[kBk], const uint16_t* const* vp, int n, const float* corr, float* const* o,
                        int64_t d0) {
    __m512 a[R][C];
    for (int r = 0; r < R; ++r) {
        const __m512 c = _mm512_set1_ps(corr[r]);
        for (int j = 0; j < C; ++j) a[r][j] = _mm512_mul_ps(_mm512_loadu_ps(o[r] + d0 + 16 * j), c);
    }
    for (int i = 0; i < n; ++i) {
        __m512 v[C];
        for (int j = 0; j < C; ++j) v[j] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(vp[i] + d0 + 16 * j)));
        for (int r = 0; r < R; ++r) {
            const __m512 w = _mm512_set1_ps(p[r][i]);
            for (int j = 0; j < C; ++j) a[r][j] = _mm512_fmadd_ps(w, v[j], a[r][j]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < C; ++j) _mm512_storeu_ps(o[r] + d0 + 16 * j, a[r][j]);
}

// R query rows (q[r]: hd floats, already scaled) against one block of n keys/values. lim[r]: the
// row's last visible position in the block (< 0: none). m, l: running max and sum; o[r]: the
// unnormalised output rows.
template <int R>
void rows_block(const float* const* q, const float* kt, const uint16_t* const* vp, int n, int64_t hd, const int* lim,
                float* m, float* l, float* const* o) {
    __m512 s0[R], s1[R];
    for (int r = 0; r < R; ++r) s0[r] = s1[r] = _mm512_setzero_ps();
    for (int64_t d = 0; d < hd; ++d) {
        const __m512 k0 = _mm512_loadu_ps(kt + d * kBk), k1 = _mm512_loadu_ps(kt + d * kBk + 16);
        for (int r = 0; r < R; ++r) {
            const __m512 qd = _mm512_set1_ps(q[r][d]);
            s0[r] = _mm512_fmadd_ps(qd, k0, s0[r]);
            s1[r] = _mm512_fmadd_ps(qd, k1, s1[r]);
        }
    }
    alignas(64) float p[R][kBk];
    alignas(64) float m_old[16], m_new[16];
    int last[R];
    __m512 x0[R], x1[R];
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int r = 0; r < R; ++r) {  // masked scores and the rows' new maxima
        last[r] = std::min(lim[r], n - 1);
        const int lr = std::max(last[r], -1);
        const __mmask16 k0 = lr >= 15 ? (__mmask16)0xFFFF : (__mmask16)((1u << (lr + 1)) - 1);
        const __mmask16 k1 = lr >= 31 ? (__mmask16)0xFFFF : lr >= 16 ? (__mmask16)((1u << (lr - 15)) - 1) : 0;
        x0[r] = _mm512_mask_mov_ps(ninf, k0, s0[r]);
        x1[r] = _mm512_mask_mov_ps(ninf, k1, s1[r]);
        m_old[r] = m[r];
        m_new[r] = last[r] < 0 ? m[r] : std::max(m[r], _mm512_reduce_max_ps(_mm512_max_ps(x0[r], x1[r])));
    }
    // the rows' corrections exp(m_old - m_new) at once (1 where nothing changes; 0 from -inf)
    alignas(64) float corr[16];
    {
        const __mmask16 live = (__mmask16)((1u << R) - 1);
        const __m512 mo = _mm512_maskz_load_ps(live, m_old), mn = _mm512_maskz_load_ps(live, m_new);
        const __mmask16 fresh = _mm512_cmp_ps_mask(mo, ninf, _CMP_EQ_OQ);  // no max yet: nothing to scale
        const __mmask16 same = _mm512_cmp_ps_mask(mo, mn, _CMP_EQ_OQ);
        __m512 c = exp_ps(_mm512_sub_ps(mo, mn));
        c = _mm512_mask_mov_ps(c, same, _mm512_set1_ps(1.0f));
        c = _mm512_mask_mov_ps(c, fresh, _mm512_setzero_ps());
        _mm512_store_ps(corr, c);
    }
    for (int r = 0; r < R; ++r) {
        if (last[r] < 0) {
            corr[r] = 1.0f;
            _mm512_store_ps(p[r], _mm512_setzero_ps());
            _mm512_store_ps(p[r] + 16, _mm512_setzero_ps());
            continue;
        }
        const __m512 e0 = exp_ps(_mm512_sub_ps(x0[r], _mm512_set1_ps(m_new[r])));
        const __m512 e1 = exp_ps(_mm512_sub_ps(x1[r], _mm512_set1_ps(m_new[r])));
        l[r] = l[r] * corr[r] + _mm512_reduce_add_ps(_mm512_add_ps(e0, e1));
        m[r] = m_new[r];
        _mm512_store_ps(p[r], e0);
        _mm512_store_ps(p[r] + 16, e1);
    }
    // values: two 16-dimension chunks per pass (each broadcast weight feeds two FMAs)
    int64_t d0 = 0;
    for (; d0 + 32 <= hd; d0 += 32) values_pass<R, 2>(p, vp, n, corr, o, d0);
    if (d0 < hd) values_pass<R, 1>(p, vp, n, corr, o, d0);
}

constexpr AttnRowsFn kRowsFns[kRows] = {rows_block<1>, rows_block<2>, rows_block<3>, rows_block<4>,
                                        rows_block<5>, rows_block<6>, rows_block<7>, rows_block<8>};

void attention(const AttnJob& jb) { flash_attention<kBk, kRows, kAhead>(jb, load_kt, kRowsFns); }

}  // namespace

void fill_avx512_attention(KernelTable& t) { t.attention = attention; }

}  // namespace tandem::cpu
