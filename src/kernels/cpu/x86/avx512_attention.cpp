// AVX-512 causal attention over the paged f16 KV cache (kernels/reference/attention.h), flash-
// attention style, two ways:
// - Many rows (a prompt's tokens x the GQA heads of one KV head): the positions in blocks of up to
//   kBk inside one page; per block the keys (the pages hold them transposed) are converted once
//   into a float tile Kt[d][p] shared by every row; per 8 rows the scores are 2 x 8 accumulators
//   of 16 positions (one Kt load feeds 8 FMAs), then an online softmax (running max and sum per
//   row; the rows' rescaling factors in one vector exp) and the values accumulated into the rows'
//   outputs, converted from f16 on the fly, 32 dimensions per pass (one broadcast weight feeds
//   two FMAs). The walk over blocks and rows is attention_driver.h's (shared with AVX2 and NEON).
// - At most 16 rows (a decode token's GQA group): attention_driver.h's direct_attention with the
//   loops of Direct below: no tile (it would be read once), chunks of up to 128 positions, the
//   next chunk prefetched into L2 a line per loop iteration. kernels_bench attention/avx512/ctx4096/tok1 (Xeon with AVX512-FP16, one core):
//   keys and values in cache 271-277 -> 141-148 us per KV head, from DRAM 412-427 -> 258-263.
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

// o[r][d0, d0 + 16 C) = corr[r] * o[r] + sum_i p[r * PS + i] * v_i over the block's n positions
template <int R, int C, int PS>
inline void values_pass(const float* p, const uint16_t* const* vp, int n, const float* corr, float* const* o,
                        int64_t d0, const char* pv = nullptr, int64_t pv_lines = 0) {
    __m512 a[R][C];
    for (int r = 0; r < R; ++r) {
        const __m512 c = _mm512_set1_ps(corr[r]);
        for (int j = 0; j < C; ++j) a[r][j] = _mm512_mul_ps(_mm512_loadu_ps(o[r] + d0 + 16 * j), c);
    }
    for (int i = 0; i < n; ++i) {
        if (i < pv_lines) _mm_prefetch(pv + 64 * i, _MM_HINT_T1);
        __m512 v[C];
        for (int j = 0; j < C; ++j) v[j] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(vp[i] + d0 + 16 * j)));
        for (int r = 0; r < R; ++r) {
            const __m512 w = _mm512_set1_ps(p[r * PS + i]);
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
    for (; d0 + 32 <= hd; d0 += 32) values_pass<R, 2, kBk>(&p[0][0], vp, n, corr, o, d0);
    if (d0 < hd) values_pass<R, 1, kBk>(&p[0][0], vp, n, corr, o, d0);
}

constexpr AttnRowsFn kRowsFns[kRows] = {rows_block<1>, rows_block<2>, rows_block<3>, rows_block<4>,
                                        rows_block<5>, rows_block<6>, rows_block<7>, rows_block<8>};

// ---- Few rows (a decode token's GQA group): attention_driver.h's direct_attention -------------
struct Direct {
    static constexpr int kMaxDirect = 16;
    template <int R>
    static constexpr int width() { return R <= 8 ? 32 : 16; }  // score accumulators: 16 at most

    // sc[r * kDirectChunk + p] = q_r . k_p for the width<R>() positions of keys at k (dimension d at
    // k + d * stride), n of them present (the others read as 0); pk: a line of each row prefetched
    template <int R, bool Full>
    static void scores(const float* qt, const uint16_t* k, int64_t stride, int n, int64_t hd, float* sc, const uint16_t* pk) {
        constexpr int NV = width<R>() / 16;
        __m512 s[R][NV];
        for (int r = 0; r < R; ++r)
            for (int j = 0; j < NV; ++j) s[r][j] = _mm512_setzero_ps();
        __mmask16 mk[NV];
        for (int j = 0; j < NV; ++j) {
            const int left = n - 16 * j;
            mk[j] = Full || left >= 16 ? (__mmask16)0xFFFF : left > 0 ? (__mmask16)((1u << left) - 1) : (__mmask16)0;
        }
        for (int64_t d = 0; d < hd; ++d) {
            const uint16_t* row = k + d * stride;
            if (pk) _mm_prefetch((const char*)(pk + d * stride), _MM_HINT_T1);
            __m512 kv[NV];
            for (int j = 0; j < NV; ++j)
                kv[j] = Full ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(row + 16 * j)))
                             : _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk[j], row + 16 * j));
            const float* qd = qt + d * kMaxDirect;
            for (int r = 0; r < R; ++r) {
                const __m512 b = _mm512_set1_ps(qd[r]);
                for (int j = 0; j < NV; ++j) s[r][j] = _mm512_fmadd_ps(b, kv[j], s[r][j]);
            }
        }
        for (int r = 0; r < R; ++r)
            for (int j = 0; j < NV; ++j) _mm512_storeu_ps(sc + r * kDirectChunk + 16 * j, s[r][j]);
    }

    // One row's softmax step over a chunk of n positions of which the first vis are visible: x
    // (the scores) becomes the weights exp(x - m') (0 past vis), m -> m' = max(m, max x), l -> l *
    // c + sum; returns the rescaling c = exp(m - m') of what was summed before (0 when nothing was)
    static float softmax(float* x, int n, int vis, float& m, float& l) {
        if (vis <= 0) {
            for (int i = 0; i < n; i += 16) _mm512_storeu_ps(x + i, _mm512_setzero_ps());
            return 1.0f;
        }
        auto visible = [&](int i) {
            return vis - i >= 16 ? (__mmask16)0xFFFF : vis > i ? (__mmask16)((1u << (vis - i)) - 1) : (__mmask16)0;
        };
        __m512 mx = _mm512_set1_ps(-INFINITY);
        for (int i = 0; i < vis; i += 16) mx = _mm512_mask_max_ps(mx, visible(i), mx, _mm512_loadu_ps(x + i));
        const float m_new = std::max(m, _mm512_reduce_max_ps(mx));
        const float corr = m == -INFINITY ? 0.0f : std::exp(m - m_new);
        const __m512 mn = _mm512_set1_ps(m_new);
        __m512 sum = _mm512_setzero_ps();
        for (int i = 0; i < n; i += 16) {
            const __m512 e = _mm512_maskz_mov_ps(visible(i), exp_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), mn)));
            sum = _mm512_add_ps(sum, e);
            _mm512_storeu_ps(x + i, e);
        }
        l = l * corr + _mm512_reduce_add_ps(sum);
        m = m_new;
        return corr;
    }

    // one values pass from dimension d0 (32 dimensions, or 16 past 8 rows or at the end); returns
    // how many it took
    template <int R>
    static int64_t values(const float* p, const uint16_t* const* vp, int n, const float* corr, float* const* o, int64_t d0,
                          int64_t hd, const char* pv, int64_t pv_lines) {
        if (R <= 8 && d0 + 32 <= hd) {
            values_pass<R, 2, kDirectChunk>(p, vp, n, corr, o, d0, pv, pv_lines);
            return 32;
        }
        values_pass<R, 1, kDirectChunk>(p, vp, n, corr, o, d0, pv, pv_lines);
        return 16;
    }
};

void attention(const AttnJob& jb) {
    const int64_t n_rows = jb.n_tok * jb.n_head;
    if (n_rows >= 1 && n_rows <= Direct::kMaxDirect) kDirectFns<Direct>[(size_t)(n_rows - 1)](jb);
    else flash_attention<kBk, kRows, kAhead>(jb, load_kt, kRowsFns);
}

}  // namespace

void fill_avx512_attention(KernelTable& t) { t.attention = attention; }

}  // namespace tandem::cpu
