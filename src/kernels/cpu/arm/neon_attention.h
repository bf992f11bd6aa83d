// NEON causal attention over the paged f16 KV cache (kernels/reference/attention.h), the
// flash-attention structure of the AVX-512 kernel (cpu/x86/avx512_attention.cpp) with NEON's
// sizes: blocks of up to 16 positions inside one page, whose keys (transposed in the pages) are
// converted once into a float tile Kt[d][p] shared by every query row of the job; per 4 query rows
// the scores are 4 x 4 accumulators (one FMA by lane per key vector and query element), then an
// online softmax (running max and sum per row) and the values accumulated into the rows'
// outputs, converted from f16 on the fly; the walk over blocks and rows is attention_driver.h's.
// Jobs of at most 8 rows (a decode token's GQA group) take attention_driver.h's direct_attention
// with the loops of AttDirect below instead (no tile, chunks of 128 positions, the next chunk
// prefetched), as the x86 kernels do; tested under qemu only, not measured on ARM hardware.
// Included by neon_kernels.h inside its anonymous
// namespace (compiled once per NEON table); head_dim a multiple of 8 (the forward asks 16).
// (No #include here: neon_kernels.h includes <algorithm>, <cmath> and attention_driver.h.)
#pragma once

constexpr int kAttBk = 16;   // positions per block (4 vectors of scores per row)
constexpr int kAttRows = 4;  // query rows per pass over a block's Kt tile

// e^x for x in [-87, 88] (~2 ulp: the AVX-512 exp_ps's reduction and polynomial); below -87 it
// gives ~1e-38, so masked positions are zeroed by the caller
inline float32x4_t exp4(float32x4_t x) {
    x = vmaxq_f32(vminq_f32(x, vdupq_n_f32(88.0f)), vdupq_n_f32(-87.0f));
    const float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504089f)));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693145751953125f));
    r = vfmsq_f32(r, n, vdupq_n_f32(1.428606765330187e-06f));
    float32x4_t p = vdupq_n_f32(1.0f / 5040);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 720), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);  // 2^n, n in [-126, 127]
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

// kt[d * kAttBk + p] = key p of the block as f32, for n <= kAttBk positions of one page (dimension
// d of the block's keys is n contiguous halves at k + d * stride); positions from n on are 0.
inline void load_kt(const uint16_t* k, int64_t stride, int n, int64_t hd, float* kt) {
    for (int64_t d = 0; d < hd; ++d) {
        const uint16_t* row = k + d * stride;
        float* dst = kt + d * kAttBk;
        if (n == kAttBk) {
            for (int j = 0; j < 4; ++j)
                vst1q_f32(dst + 4 * j, vcvt_f32_f16(vld1_f16(reinterpret_cast<const float16_t*>(row) + 4 * j)));
        } else {
            uint16_t tmp[kAttBk] = {};
            std::memcpy(tmp, row, sizeof(uint16_t) * (size_t)n);
            for (int j = 0; j < 4; ++j)
                vst1q_f32(dst + 4 * j, vcvt_f32_f16(vld1_f16(reinterpret_cast<const float16_t*>(tmp) + 4 * j)));
        }
    }
}

// s[j] += Kt rows d .. d + 3 (vectors j of each) times q's lane L .. (one lane per key row)
template <int L>
inline void att_fma(float32x4_t* s, const float* kr, float32x4_t qv) {
    for (int j = 0; j < 4; ++j) s[j] = vfmaq_laneq_f32(s[j], vld1q_f32(kr + 4 * j), qv, L);
}

// o[r][d0, d0 + 8 C) = corr[r] * o[r] + sum_i p[r * PS + i] * v_i over the block's n positions;
// pv: the next chunk's value lines, one prefetched per position (pv_lines of them)
template <int R, int C, int PS>
inline void att_values_pass(const float* p, const uint16_t* const* vp, int n, const float* corr, float* const* o,
                            int64_t d0, const char* pv = nullptr, int64_t pv_lines = 0) {
    float32x4_t a[R][2 * C];
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < 2 * C; ++j) a[r][j] = vmulq_n_f32(vld1q_f32(o[r] + d0 + 4 * j), corr[r]);
    for (int i = 0; i < n; ++i) {
        if (i < pv_lines) __builtin_prefetch(pv + 64 * i, 0, 2);
        float32x4_t v[2 * C];
        for (int j = 0; j < C; ++j) {
            const float16x8_t vh = vld1q_f16(reinterpret_cast<const float16_t*>(vp[i] + d0 + 8 * j));
            v[2 * j] = vcvt_f32_f16(vget_low_f16(vh));
            v[2 * j + 1] = vcvt_high_f32_f16(vh);
        }
        for (int r = 0; r < R; ++r) {
            const float w = p[r * PS + i];
            for (int j = 0; j < 2 * C; ++j) a[r][j] = vfmaq_n_f32(a[r][j], v[j], w);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < 2 * C; ++j) vst1q_f32(o[r] + d0 + 4 * j, a[r][j]);
}

// R query rows (q[r]: hd floats, already scaled) against one block of n keys/values. lim[r]: the
// row's last visible position in the block (< 0: none). m, l: running max and sum; o[r]: the
// unnormalised output rows.
template <int R>
void att_rows_block(const float* const* q, const float* kt, const uint16_t* const* vp, int n, int64_t hd,
                    const int* lim, float* m, float* l, float* const* o) {
    float32x4_t s[R][4];
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < 4; ++j) s[r][j] = vdupq_n_f32(0.0f);
    for (int64_t d = 0; d < hd; d += 4) {
        const float* kr = kt + d * kAttBk;
        for (int r = 0; r < R; ++r) {
            const float32x4_t qv = vld1q_f32(q[r] + d);
            att_fma<0>(s[r], kr, qv);
            att_fma<1>(s[r], kr + kAttBk, qv);
            att_fma<2>(s[r], kr + 2 * kAttBk, qv);
            att_fma<3>(s[r], kr + 3 * kAttBk, qv);
        }
    }
    alignas(16) float p[R][kAttBk];
    float corr[R];
    static const uint32_t kIdx[kAttBk] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    const float32x4_t ninf = vdupq_n_f32(-INFINITY), zero = vdupq_n_f32(0.0f);
    for (int r = 0; r < R; ++r) {
        const int last = std::min(lim[r], n - 1);
        if (last < 0) {
            corr[r] = 1.0f;
            for (int j = 0; j < 4; ++j) vst1q_f32(p[r] + 4 * j, zero);
            continue;
        }
        uint32x4_t vis[4];
        float32x4_t x[4];
        float32x4_t mx = ninf;
        for (int j = 0; j < 4; ++j) {
            vis[j] = vcleq_u32(vld1q_u32(kIdx + 4 * j), vdupq_n_u32((uint32_t)last));
            x[j] = vbslq_f32(vis[j], s[r][j], ninf);
            mx = vmaxq_f32(mx, x[j]);
        }
        const float m_new = std::max(m[r], vmaxvq_f32(mx));
        corr[r] = m[r] == -INFINITY ? 0.0f : std::exp(m[r] - m_new);
        float32x4_t sum = zero;
        for (int j = 0; j < 4; ++j) {
            const float32x4_t e = vbslq_f32(vis[j], exp4(vsubq_f32(x[j], vdupq_n_f32(m_new))), zero);
            sum = vaddq_f32(sum, e);
            vst1q_f32(p[r] + 4 * j, e);
        }
        l[r] = l[r] * corr[r] + vaddvq_f32(sum);
        m[r] = m_new;
    }
    for (int64_t d0 = 0; d0 < hd; d0 += 8) att_values_pass<R, 1, kAttBk>(&p[0][0], vp, n, corr, o, d0);
}

constexpr AttnRowsFn kAttRowsFns[kAttRows] = {att_rows_block<1>, att_rows_block<2>, att_rows_block<3>,
                                              att_rows_block<4>};

// ---- Few rows (a decode token's GQA group): attention_driver.h's direct_attention -------------
struct AttDirect {
    // Up to 16 rows (Qwen3-235B's 16 query heads per KV head): more than 8 go in two passes of
    // at most 8 over each chunk's keys and values (as the AVX2 kernel), the second reading them
    // from L1/L2
    static constexpr int kMaxDirect = 16;
    template <int R>
    static constexpr int width() { return R <= 4 ? 16 : 8; }  // score accumulators: 16 at most per pass

    // sc[r * kDirectChunk + p] = q_r . k_p for the width<R>() positions of keys at k (dimension d at
    // k + d * stride), n of them present (the others read as 0); pk: a line of each row prefetched
    template <int R, bool Full>
    static void scores(const float* qt, const uint16_t* k, int64_t stride, int n, int64_t hd, float* sc, const uint16_t* pk) {
        if constexpr (R > 8) {
            scores_rows<8, 2, Full>(qt, k, stride, n, hd, sc, pk);
            scores_rows<R - 8, 2, Full>(qt + 8, k, stride, n, hd, sc + 8 * kDirectChunk, nullptr);
        } else {
            scores_rows<R, width<R>() / 4, Full>(qt, k, stride, n, hd, sc, pk);
        }
    }

    // scores of R <= 8 rows (row r's query at qt[d * kMaxDirect + r]) for NV vectors of 4 positions
    template <int R, int NV, bool Full>
    static void scores_rows(const float* qt, const uint16_t* k, int64_t stride, int n, int64_t hd, float* sc,
                            const uint16_t* pk) {
        float32x4_t s[R][NV];
        for (int r = 0; r < R; ++r)
            for (int j = 0; j < NV; ++j) s[r][j] = vdupq_n_f32(0.0f);
        for (int64_t d = 0; d < hd; ++d) {
            const uint16_t* row = k + d * stride;
            if (pk) __builtin_prefetch(pk + d * stride, 0, 2);
            uint16_t tmp[4 * NV] = {};
            if (!Full) {
                std::memcpy(tmp, row, sizeof(uint16_t) * (size_t)n);
                row = tmp;
            }
            float32x4_t kv[NV];
            for (int j = 0; j < NV; j += 2) {
                const float16x8_t kh = vld1q_f16(reinterpret_cast<const float16_t*>(row) + 4 * j);
                kv[j] = vcvt_f32_f16(vget_low_f16(kh));
                kv[j + 1] = vcvt_high_f32_f16(kh);
            }
            const float* qd = qt + d * kMaxDirect;
            for (int r = 0; r < R; ++r)
                for (int j = 0; j < NV; ++j) s[r][j] = vfmaq_n_f32(s[r][j], kv[j], qd[r]);
        }
        for (int r = 0; r < R; ++r)
            for (int j = 0; j < NV; ++j) vst1q_f32(sc + r * kDirectChunk + 4 * j, s[r][j]);
    }

    // One row's softmax step over a chunk of n positions of which the first vis are visible (as
    // the AVX-512 kernel's); returns the rescaling of what was summed before
    static float softmax(float* x, int n, int vis, float& m, float& l) {
        const float32x4_t zero = vdupq_n_f32(0.0f);
        if (vis <= 0) {
            for (int i = 0; i < n; i += 4) vst1q_f32(x + i, zero);
            return 1.0f;
        }
        static const uint32_t kIdx[4] = {0, 1, 2, 3};
        const uint32x4_t idx = vld1q_u32(kIdx);
        auto visible = [&](int i) { return vcltq_u32(idx, vdupq_n_u32((uint32_t)std::max(vis - i, 0))); };
        float32x4_t mx = vdupq_n_f32(-INFINITY);
        for (int i = 0; i < vis; i += 4) mx = vbslq_f32(visible(i), vmaxq_f32(mx, vld1q_f32(x + i)), mx);
        const float m_new = std::max(m, vmaxvq_f32(mx));
        const float corr = m == -INFINITY ? 0.0f : std::exp(m - m_new);
        const float32x4_t mn = vdupq_n_f32(m_new);
        float32x4_t sum = zero;
        for (int i = 0; i < n; i += 4) {
            const float32x4_t e = vbslq_f32(visible(i), exp4(vsubq_f32(vld1q_f32(x + i), mn)), zero);
            sum = vaddq_f32(sum, e);
            vst1q_f32(x + i, e);
        }
        l = l * corr + vaddvq_f32(sum);
        m = m_new;
        return corr;
    }

    // one values pass from dimension d0 (16 dimensions up to 4 rows, else 8); returns how many it took
    template <int R>
    static int64_t values(const float* p, const uint16_t* const* vp, int n, const float* corr, float* const* o, int64_t d0,
                          int64_t hd, const char* pv, int64_t pv_lines) {
        if constexpr (R > 8) {
            att_values_pass<8, 1, kDirectChunk>(p, vp, n, corr, o, d0, pv, pv_lines);
            att_values_pass<R - 8, 1, kDirectChunk>(p + 8 * kDirectChunk, vp, n, corr + 8, o + 8, d0);
            return 8;
        } else {
            if (R <= 4 && d0 + 16 <= hd) {
                att_values_pass<R, 2, kDirectChunk>(p, vp, n, corr, o, d0, pv, pv_lines);
                return 16;
            }
            att_values_pass<R, 1, kDirectChunk>(p, vp, n, corr, o, d0, pv, pv_lines);
            return 8;
        }
    }
};

void attention_neon(const ref::AttnJob& jb) {
    const int64_t n_rows = jb.n_tok * jb.n_head;
    if (n_rows >= 1 && n_rows <= AttDirect::kMaxDirect) kDirectFns<AttDirect>[(size_t)(n_rows - 1)](jb);
    else flash_attention<kAttBk, kAttRows, 1>(jb, load_kt, kAttRowsFns);
}
