// AVX-512 (F/BW/VL/DQ + VNNI) kernels. Compiled with -mavx512f -mavx512bw -mavx512vl
// -mavx512dq -mavx512vnni -mfma -mf16c; only called after cpu_features() says the CPU has them.
//
// Integer dot products use VPDPBUSD (u8 x s8 -> s32, four products per lane): the weight side
// must be unsigned, so signed weights are offset (Q6_K: q in 0..63, the -32 comes back through
// the Q8_K block sums) or their sign is moved onto the activations (Q8_0).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/fp16.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/x86/act_scratch.h"
#include "kernels/cpu/x86/float_tiles.h"
#include "kernels/cpu/x86/k_scales.h"
#include "kernels/cpu/x86/q0_dots.h"
#include "kernels/reference/quants.h"

namespace tandem::cpu {
namespace {

using ref::BlockQ4_K;
using ref::BlockQ6_K;
using ref::BlockQ8_0;
using ref::BlockQ8_K;
using ref::kQK_K;

inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

inline float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }

// ---- activations ------------------------------------------------------------------------

// Q8_K exactly as the reference: x_max = element of largest |x| (first on ties), d = 1/iscale
// with iscale = -127/x_max, q = min(127, nearest-even(iscale * x)), bsums over 16.
void convert_q8_k(const float* x, void* out, int64_t n) {
    auto* y = static_cast<BlockQ8_K*>(out);
    const __m512 sign_mask = _mm512_set1_ps(-0.0f);
    for (int64_t ib = 0; ib < n / kQK_K; ++ib, x += kQK_K) {
        __m512 vmax = _mm512_setzero_ps();
        for (int i = 0; i < kQK_K; i += 16) vmax = _mm512_max_ps(vmax, _mm512_andnot_ps(sign_mask, _mm512_loadu_ps(x + i)));
        const float amax = _mm512_reduce_max_ps(vmax);
        if (amax == 0.0f) {
            std::memset(&y[ib], 0, sizeof(BlockQ8_K));
            continue;
        }
        float xmax = 0.0f;  // the first value of magnitude amax, with its sign
        const __m512 va = _mm512_set1_ps(amax);
        for (int i = 0; i < kQK_K; i += 16) {
            const __mmask16 hit =
                _mm512_cmp_ps_mask(_mm512_andnot_ps(sign_mask, _mm512_loadu_ps(x + i)), va, _CMP_EQ_OQ);
            if (hit) {
                xmax = x[i + __builtin_ctz((unsigned)hit)];
                break;
            }
        }
        const float iscale = -127.0f / xmax;
        const __m512 vs = _mm512_set1_ps(iscale);
        const __m512i v127 = _mm512_set1_epi32(127);
        for (int i = 0; i < kQK_K; i += 16) {
            __m512i q = _mm512_cvt_roundps_epi32(_mm512_mul_ps(vs, _mm512_loadu_ps(x + i)),
                                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            q = _mm512_min_epi32(q, v127);
            _mm_storeu_si128((__m128i*)(y[ib].qs + i), _mm512_cvtepi32_epi8(q));
            y[ib].bsums[i / 16] = (int16_t)_mm512_reduce_add_epi32(q);
        }
        y[ib].d = 1.0f / iscale;
    }
}

// Q8_0 activations as llama.cpp's SIMD path makes them: d = amax/127 stored as f16,
// q = nearest-even(x * 127/amax).
void convert_q8_0(const float* x, void* out, int64_t n) {
    auto* y = static_cast<BlockQ8_0*>(out);
    const __m512 sign_mask = _mm512_set1_ps(-0.0f);
    for (int64_t ib = 0; ib < n / 32; ++ib, x += 32) {
        const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign_mask, a), _mm512_andnot_ps(sign_mask, b)));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[ib].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        const __m512 vid = _mm512_set1_ps(id);
        const int rn = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        _mm_storeu_si128((__m128i*)y[ib].qs, _mm512_cvtepi32_epi8(_mm512_cvt_roundps_epi32(_mm512_mul_ps(a, vid), rn)));
        _mm_storeu_si128((__m128i*)(y[ib].qs + 16), _mm512_cvtepi32_epi8(_mm512_cvt_roundps_epi32(_mm512_mul_ps(b, vid), rn)));
    }
}

void convert_f16(const float* x, void* out, int64_t n) {
    auto* y = static_cast<uint16_t*>(out);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i*)(y + i), _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; ++i) y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

// ---- weights ----------------------------------------------------------------------------


// Q4_K row . Q8_K. Per 64-byte load of qs (chunks 2h, 2h+1): low nibbles hold sub-blocks 4h and
// 4h+2, high nibbles 4h+1 and 4h+3. vpmaddubsw gives 16-bit pair sums (|sum| <= 2*15*127), and
// vpmaddwd applies the sub-block scales at 16 bits. The mins come from the Q8_K block sums.
// `ap` holds each block's activations re-ordered once per GEMV (see arrange_q4_k_acts) so that the
// partner of every 64-byte weight load is one 64-byte activation load.
float dot_q4_k(const BlockQ4_K* w, const BlockQ8_K* a, const int8_t* ap, int64_t nb) {
    const __m512i m4 = _mm512_set1_epi8(0xF);
    const __m512i idx_lo0 = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    const __m512i idx_hi0 = _mm512_inserti64x4(_mm512_set1_epi16(1), _mm256_set1_epi16(3), 1);
    const __m512i idx_lo1 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    const __m512i idx_hi1 = _mm512_inserti64x4(_mm512_set1_epi16(5), _mm256_set1_epi16(7), 1);
    __m512 acc = _mm512_setzero_ps();
    __m256 acc_min = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib, ap += kQK_K) {
        uint64_t sc8, mn8;
        unpack_k_scales_words(w[ib].scales, sc8, mn8);
        const float d = half_to_float(w[ib].d) * a[ib].d;
        const float dmin = half_to_float(w[ib].dmin) * a[ib].d;
        // mins: m[j] * (bsum[2j] + bsum[2j+1]) in 8 int32 lanes
        const __m128i mn = _mm_cvtsi64_si128((long long)mn8);
        const __m256i mn_dup = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn, mn));
        const __m256i prod_min = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i*)a[ib].bsums), mn_dup);
        acc_min = _mm256_fmadd_ps(_mm256_cvtepi32_ps(prod_min), _mm256_set1_ps(dmin), acc_min);

        const __m512i sc16 = _mm512_cvtepu8_epi16(_mm256_castsi128_si256(_mm_cvtsi64_si128((long long)sc8)));
        const __m512i q40 = _mm512_loadu_si512((const void*)w[ib].qs);
        const __m512i q41 = _mm512_loadu_si512((const void*)(w[ib].qs + 64));
        const __m512i p0 = _mm512_maddubs_epi16(_mm512_and_si512(q40, m4), _mm512_loadu_si512((const void*)ap));
        const __m512i p1 = _mm512_maddubs_epi16(_mm512_and_si512(_mm512_srli_epi16(q40, 4), m4),
                                                _mm512_loadu_si512((const void*)(ap + 64)));
        const __m512i p2 = _mm512_maddubs_epi16(_mm512_and_si512(q41, m4), _mm512_loadu_si512((const void*)(ap + 128)));
        const __m512i p3 = _mm512_maddubs_epi16(_mm512_and_si512(_mm512_srli_epi16(q41, 4), m4),
                                                _mm512_loadu_si512((const void*)(ap + 192)));
        __m512i isum = _mm512_madd_epi16(p0, _mm512_permutexvar_epi16(idx_lo0, sc16));
        isum = _mm512_add_epi32(isum, _mm512_madd_epi16(p1, _mm512_permutexvar_epi16(idx_hi0, sc16)));
        isum = _mm512_add_epi32(isum, _mm512_madd_epi16(p2, _mm512_permutexvar_epi16(idx_lo1, sc16)));
        isum = _mm512_add_epi32(isum, _mm512_madd_epi16(p3, _mm512_permutexvar_epi16(idx_hi1, sc16)));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d), acc);
    }
    __m128 m = _mm_add_ps(_mm256_castps256_ps128(acc_min), _mm256_extractf128_ps(acc_min, 1));
    m = _mm_add_ps(m, _mm_movehl_ps(m, m));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    return hsum(acc) - _mm_cvtss_f32(m);
}

// Per 256-block: [a0..31, a64..95 | a32..63, a96..127 | a128..159, a192..223 | a160..191, a224..255]
void arrange_q4_k_acts(const BlockQ8_K* a, int64_t nb, int8_t* out) {
    for (int64_t ib = 0; ib < nb; ++ib, out += kQK_K) {
        const int8_t* q = a[ib].qs;
        for (int half = 0; half < 2; ++half) {
            const int8_t* a0 = q + 128 * half;
            int8_t* o = out + 128 * half;
            std::memcpy(o, a0, 32);
            std::memcpy(o + 32, a0 + 64, 32);
            std::memcpy(o + 64, a0 + 32, 32);
            std::memcpy(o + 96, a0 + 96, 32);
        }
    }
}

void gemv_q4_k(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* act, float* y) {
    const auto* a = static_cast<const BlockQ8_K*>(act);
    const int64_t nb = n / kQK_K;
    ActScratch<16> scratch(nb);  // rows up to 4096 wide without allocating
    int8_t* ap = scratch.data();
    arrange_q4_k_acts(a, nb, ap);
    for (int64_t r = 0; r < n_rows; ++r)
        y[r] = dot_q4_k(reinterpret_cast<const BlockQ4_K*>(w + (size_t)r * row_stride), a, ap, nb);
}

// Q4_K rows . 4 token activations: each weight block is decoded once (nibbles, scales) and used
// for the 4 tokens. ap[t] are the tokens' re-ordered activations, a[t] their Q8_K blocks.
inline void dot_q4_k_x4(const BlockQ4_K* w, const BlockQ8_K* const* a, const int8_t* const* ap, int64_t nb,
                        float* out) {
    const __m512i m4 = _mm512_set1_epi8(0xF);
    const __m512i idx_lo0 = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    const __m512i idx_hi0 = _mm512_inserti64x4(_mm512_set1_epi16(1), _mm256_set1_epi16(3), 1);
    const __m512i idx_lo1 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    const __m512i idx_hi1 = _mm512_inserti64x4(_mm512_set1_epi16(5), _mm256_set1_epi16(7), 1);
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    __m256 acc_min[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t ib = 0; ib < nb; ++ib) {
        uint64_t sc8, mn8;
        unpack_k_scales_words(w[ib].scales, sc8, mn8);
        const float wd = half_to_float(w[ib].d), wdmin = half_to_float(w[ib].dmin);
        const __m128i mn = _mm_cvtsi64_si128((long long)mn8);
        const __m256i mn_dup = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn, mn));
        const __m512i sc16 = _mm512_cvtepu8_epi16(_mm256_castsi128_si256(_mm_cvtsi64_si128((long long)sc8)));
        const __m512i s0 = _mm512_permutexvar_epi16(idx_lo0, sc16), s1 = _mm512_permutexvar_epi16(idx_hi0, sc16);
        const __m512i s2 = _mm512_permutexvar_epi16(idx_lo1, sc16), s3 = _mm512_permutexvar_epi16(idx_hi1, sc16);
        const __m512i q40 = _mm512_loadu_si512((const void*)w[ib].qs);
        const __m512i q41 = _mm512_loadu_si512((const void*)(w[ib].qs + 64));
        const __m512i n0 = _mm512_and_si512(q40, m4), n1 = _mm512_and_si512(_mm512_srli_epi16(q40, 4), m4);
        const __m512i n2 = _mm512_and_si512(q41, m4), n3 = _mm512_and_si512(_mm512_srli_epi16(q41, 4), m4);
        for (int t = 0; t < 4; ++t) {
            const int8_t* x = ap[t] + ib * kQK_K;
            __m512i isum = _mm512_madd_epi16(_mm512_maddubs_epi16(n0, _mm512_loadu_si512((const void*)x)), s0);
            isum = _mm512_add_epi32(isum, _mm512_madd_epi16(_mm512_maddubs_epi16(n1, _mm512_loadu_si512((const void*)(x + 64))), s1));
            isum = _mm512_add_epi32(isum, _mm512_madd_epi16(_mm512_maddubs_epi16(n2, _mm512_loadu_si512((const void*)(x + 128))), s2));
            isum = _mm512_add_epi32(isum, _mm512_madd_epi16(_mm512_maddubs_epi16(n3, _mm512_loadu_si512((const void*)(x + 192))), s3));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(wd * a[t][ib].d), acc[t]);
            const __m256i pm = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i*)a[t][ib].bsums), mn_dup);
            acc_min[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pm), _mm256_set1_ps(wdmin * a[t][ib].d), acc_min[t]);
        }
    }
    for (int t = 0; t < 4; ++t) {
        __m128 m = _mm_add_ps(_mm256_castps256_ps128(acc_min[t]), _mm256_extractf128_ps(acc_min[t], 1));
        m = _mm_add_ps(m, _mm_movehl_ps(m, m));
        m = _mm_add_ss(m, _mm_movehdup_ps(m));
        out[t] = hsum(acc[t]) - _mm_cvtss_f32(m);
    }
}

void gemm_q4_k(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* const* acts, int64_t n_tok,
               float* const* ys) {
    const int64_t nb = n / kQK_K;
    thread_local std::vector<int8_t> arranged;  // every token's activations, re-ordered once per call
    arranged.resize((size_t)(n_tok * nb * kQK_K));
    for (int64_t t = 0; t < n_tok; ++t)
        arrange_q4_k_acts(static_cast<const BlockQ8_K*>(acts[t]), nb, arranged.data() + t * nb * kQK_K);
    int64_t t0 = 0;
    for (; t0 + 4 <= n_tok; t0 += 4) {
        const BlockQ8_K* a[4];
        const int8_t* ap[4];
        for (int t = 0; t < 4; ++t) {
            a[t] = static_cast<const BlockQ8_K*>(acts[t0 + t]);
            ap[t] = arranged.data() + (t0 + t) * nb * kQK_K;
        }
        float out[4];
        for (int64_t r = 0; r < n_rows; ++r) {
            dot_q4_k_x4(reinterpret_cast<const BlockQ4_K*>(w + (size_t)r * row_stride), a, ap, nb, out);
            for (int t = 0; t < 4; ++t) ys[t0 + t][r] = out[t];
        }
    }
    for (; t0 < n_tok; ++t0) {
        const auto* a = static_cast<const BlockQ8_K*>(acts[t0]);
        const int8_t* ap = arranged.data() + t0 * nb * kQK_K;
        for (int64_t r = 0; r < n_rows; ++r)
            ys[t0][r] = dot_q4_k(reinterpret_cast<const BlockQ4_K*>(w + (size_t)r * row_stride), a, ap, nb);
    }
}

// 32 x int16 lanes: lanes 8k .. 8k+7 = v[first + k] for k = 0..3
inline __m512i pick4(__m512i v, int first) {
    const __m512i idx = _mm512_set_epi16(first + 3, first + 3, first + 3, first + 3, first + 3, first + 3, first + 3,
                                         first + 3, first + 2, first + 2, first + 2, first + 2, first + 2, first + 2,
                                         first + 2, first + 2, first + 1, first + 1, first + 1, first + 1, first + 1,
                                         first + 1, first + 1, first + 1, first, first, first, first, first, first, first,
                                         first);
    return _mm512_permutexvar_epi16(idx, v);
}

// Q6_K row . Q8_K: q = 4 bits of ql + 2 bits of qh in 0..63; sum (q - 32) a = sum q a - 32 bsum.
// Pair sums of q * a fit in 16 bits (2*63*127); the signed 8-bit scales are applied by vpmaddwd.
float dot_q6_k(const BlockQ6_K* w, const BlockQ8_K* a, int64_t nb) {
    const __m512i m4 = _mm512_set1_epi8(0xF);
    const __m512i m3 = _mm512_set1_epi8(3);
    __m512 acc = _mm512_setzero_ps();
    __m256 acc_off = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib) {
        const float d = half_to_float(w[ib].d) * a[ib].d;
        const __m256i sc16_256 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)w[ib].scales));
        const __m256i off = _mm256_madd_epi16(sc16_256, _mm256_loadu_si256((const __m256i*)a[ib].bsums));
        acc_off = _mm256_fmadd_ps(_mm256_cvtepi32_ps(off), _mm256_set1_ps(32.0f * d), acc_off);
        const __m512i sc16 = _mm512_castsi256_si512(sc16_256);

        __m512i isum = _mm512_setzero_si512();
        for (int half = 0; half < 2; ++half) {  // 128 elements: ql[64], qh[32]
            const __m512i ql = _mm512_loadu_si512((const void*)(w[ib].ql + 64 * half));
            const __m256i qh256 = _mm256_loadu_si256((const __m256i*)(w[ib].qh + 32 * half));
            // bytes 0-31 pair with qh bits (0,1) / (4,5), bytes 32-63 with (2,3) / (6,7)
            const __m512i qh = _mm512_inserti64x4(_mm512_castsi256_si512(qh256), _mm256_srli_epi16(qh256, 2), 1);
            const __m512i q_lo = _mm512_or_si512(_mm512_and_si512(ql, m4),
                                                 _mm512_slli_epi16(_mm512_and_si512(qh, m3), 4));
            const __m512i q_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                                 _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh, 4), m3), 4));
            const int8_t* a0 = a[ib].qs + 128 * half;
            const __m512i p_lo = _mm512_maddubs_epi16(q_lo, _mm512_loadu_si512((const void*)a0));
            const __m512i p_hi = _mm512_maddubs_epi16(q_hi, _mm512_loadu_si512((const void*)(a0 + 64)));
            isum = _mm512_add_epi32(isum, _mm512_madd_epi16(p_lo, pick4(sc16, 8 * half)));
            isum = _mm512_add_epi32(isum, _mm512_madd_epi16(p_hi, pick4(sc16, 8 * half + 4)));
        }
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d), acc);
    }
    __m128 o = _mm_add_ps(_mm256_castps256_ps128(acc_off), _mm256_extractf128_ps(acc_off, 1));
    o = _mm_add_ps(o, _mm_movehl_ps(o, o));
    o = _mm_add_ss(o, _mm_movehdup_ps(o));
    return hsum(acc) - _mm_cvtss_f32(o);
}

// Q6_K rows . 4 token activations: each block's 6-bit levels and scales are decoded once.
inline void dot_q6_k_x4(const BlockQ6_K* w, const BlockQ8_K* const* a, int64_t nb, float* out) {
    const __m512i m4 = _mm512_set1_epi8(0xF);
    const __m512i m3 = _mm512_set1_epi8(3);
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    __m256 acc_off[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t ib = 0; ib < nb; ++ib) {
        const float wd = half_to_float(w[ib].d);
        const __m256i sc16_256 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)w[ib].scales));
        const __m512i sc16 = _mm512_castsi256_si512(sc16_256);
        __m512i q[4], sc[4];
        for (int half = 0; half < 2; ++half) {
            const __m512i ql = _mm512_loadu_si512((const void*)(w[ib].ql + 64 * half));
            const __m256i qh256 = _mm256_loadu_si256((const __m256i*)(w[ib].qh + 32 * half));
            const __m512i qh = _mm512_inserti64x4(_mm512_castsi256_si512(qh256), _mm256_srli_epi16(qh256, 2), 1);
            q[2 * half] = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_slli_epi16(_mm512_and_si512(qh, m3), 4));
            q[2 * half + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                              _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh, 4), m3), 4));
            sc[2 * half] = pick4(sc16, 8 * half);
            sc[2 * half + 1] = pick4(sc16, 8 * half + 4);
        }
        for (int t = 0; t < 4; ++t) {
            const int8_t* x = a[t][ib].qs;
            __m512i isum = _mm512_madd_epi16(_mm512_maddubs_epi16(q[0], _mm512_loadu_si512((const void*)x)), sc[0]);
            isum = _mm512_add_epi32(isum, _mm512_madd_epi16(_mm512_maddubs_epi16(q[1], _mm512_loadu_si512((const void*)(x + 64))), sc[1]));
            isum = _mm512_add_epi32(isum, _mm512_madd_epi16(_mm512_maddubs_epi16(q[2], _mm512_loadu_si512((const void*)(x + 128))), sc[2]));
            isum = _mm512_add_epi32(isum, _mm512_madd_epi16(_mm512_maddubs_epi16(q[3], _mm512_loadu_si512((const void*)(x + 192))), sc[3]));
            const float d = wd * a[t][ib].d;
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d), acc[t]);
            const __m256i off = _mm256_madd_epi16(sc16_256, _mm256_loadu_si256((const __m256i*)a[t][ib].bsums));
            acc_off[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(off), _mm256_set1_ps(32.0f * d), acc_off[t]);
        }
    }
    for (int t = 0; t < 4; ++t) {
        __m128 o = _mm_add_ps(_mm256_castps256_ps128(acc_off[t]), _mm256_extractf128_ps(acc_off[t], 1));
        o = _mm_add_ps(o, _mm_movehl_ps(o, o));
        o = _mm_add_ss(o, _mm_movehdup_ps(o));
        out[t] = hsum(acc[t]) - _mm_cvtss_f32(o);
    }
}

void gemm_q6_k(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* const* acts, int64_t n_tok,
               float* const* ys) {
    const int64_t nb = n / kQK_K;
    int64_t t0 = 0;
    for (; t0 + 4 <= n_tok; t0 += 4) {
        const BlockQ8_K* a[4];
        for (int t = 0; t < 4; ++t) a[t] = static_cast<const BlockQ8_K*>(acts[t0 + t]);
        float out[4];
        for (int64_t r = 0; r < n_rows; ++r) {
            dot_q6_k_x4(reinterpret_cast<const BlockQ6_K*>(w + (size_t)r * row_stride), a, nb, out);
            for (int t = 0; t < 4; ++t) ys[t0 + t][r] = out[t];
        }
    }
    for (; t0 < n_tok; ++t0)
        for (int64_t r = 0; r < n_rows; ++r)
            ys[t0][r] = dot_q6_k(reinterpret_cast<const BlockQ6_K*>(w + (size_t)r * row_stride),
                                 static_cast<const BlockQ8_K*>(acts[t0]), nb);
}

// Q8_0 row . Q8_0: the weight's sign moves onto the activation so that dpbusd sees |w|.
float dot_q8_0(const BlockQ8_0* w, const BlockQ8_0* a, int64_t nb) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib) {
        const __m256i qw = _mm256_loadu_si256((const __m256i*)w[ib].qs);
        const __m256i qa = _mm256_loadu_si256((const __m256i*)a[ib].qs);
        const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(qw, qw), _mm256_sign_epi8(qa, qw));
        const float d = half_to_float(w[ib].d) * half_to_float(a[ib].d);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d), acc);
    }
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// bf16 -> f32 is a 16-bit shift; products and sums in f32 as the F16 path
inline __m512 bf16_to_ps(const uint16_t* p) {
    const __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
}

// head_dim must be a multiple of 16 (checked by the caller's table lookup: hd % 16 == 0)
// keys transposed: 16 positions per vector, one FMA per dimension
void attn_scores(const float* q, const uint16_t* k, int64_t stride, int64_t n_pos, int64_t hd, float* scores) {
    for (int64_t p0 = 0; p0 < n_pos; p0 += 16) {
        const __mmask16 m = n_pos - p0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n_pos - p0)) - 1);
        __m512 acc = _mm512_setzero_ps();
        for (int64_t i = 0; i < hd; ++i)
            acc = _mm512_fmadd_ps(_mm512_set1_ps(q[i]), _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, k + i * stride + p0)), acc);
        _mm512_mask_storeu_ps(scores + p0, m, acc);
    }
}

void attn_values(const float* w, const uint16_t* v, int64_t stride, int64_t n_pos, int64_t hd, float* out) {
    for (int64_t i = 0; i < hd; i += 16) {
        __m512 acc = _mm512_loadu_ps(out + i);
        for (int64_t p = 0; p < n_pos; ++p)
            acc = _mm512_fmadd_ps(_mm512_set1_ps(w[p]), _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(v + p * stride + i))), acc);
        _mm512_storeu_ps(out + i, acc);
    }
}

template <typename W, typename A, float (*Dot)(const W*, const A*, int64_t), int kBlock>
void gemv(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* act, float* y) {
    const auto* a = static_cast<const A*>(act);
    for (int64_t r = 0; r < n_rows; ++r) {
        if (r + 4 < n_rows) _mm_prefetch((const char*)(w + (size_t)(r + 4) * row_stride), _MM_HINT_T0);
        y[r] = Dot(reinterpret_cast<const W*>(w + (size_t)r * row_stride), a, n / kBlock);
    }
}

// F16 / BF16 / F32 rows x 1 to 8 tokens (the gemv is the tile of one). Per (row, token) the same
// operations whatever the number of tokens (two accumulators over 32-element steps, their sum,
// the same scalar tail), so a batched sequence computes what it computes alone, bit for bit; each
// weight vector is loaded and widened once for all the tile's tokens (token by token, every
// weight was read and widened once per token). F16 LM head of the bench shape, 4 tokens: 38-39
// ms -> 26-28 ms (prefill of 128 tokens: no change measured); 28.1-28.5 ms with the prefetch into
// L2 below (into L1: 29.6-29.8; four tokens' activations are 32 KB of L1's 48).
enum class Wide { f16, bf16, f32 };
template <Wide K>
struct WideT;
template <>
struct WideT<Wide::f16> {
    using T = uint16_t;
    static __m512 load(const T* p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)p)); }
    static float one(T v) { return half_to_float(v); }
};
template <>
struct WideT<Wide::bf16> {
    using T = uint16_t;
    static __m512 load(const T* p) { return bf16_to_ps(p); }
    static float one(T v) { return bf16_to_fp32(v); }
};
template <>
struct WideT<Wide::f32> {
    using T = float;
    static __m512 load(const T* p) { return _mm512_loadu_ps(p); }
    static float one(T v) { return v; }
};

// rows [0, n_rows) x T tokens (a[t]: the activations widened to f32, exact)
template <Wide K, int T>
void wide_tile(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const float* const* a, float* const* ys,
               int64_t r_off) {
    using Tr = WideT<K>;
    for (int64_t r = 0; r < n_rows; ++r) {
        const auto* wr = reinterpret_cast<const typename Tr::T*>(w + (size_t)r * row_stride);
        __m512 acc0[T], acc1[T];
        for (int t = 0; t < T; ++t) acc0[t] = acc1[t] = _mm512_setzero_ps();
        int64_t i = 0;
        for (; i + 32 <= n; i += 32) {
            // the weights stream from DRAM: ask for the line(s) two rows on, into L2 (past the
            // block's end too: a prefetch never faults)
            _mm_prefetch((const char*)(wr + i) + 2 * row_stride, _MM_HINT_T1);
            if constexpr (K == Wide::f32)  // (32 floats: two lines; F32 router of 4 tokens 94 -> 80 us a layer)
                _mm_prefetch((const char*)(wr + i) + 2 * row_stride + 64, _MM_HINT_T1);
            const __m512 w0 = Tr::load(wr + i), w1 = Tr::load(wr + i + 16);
            for (int t = 0; t < T; ++t) {
                acc0[t] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(a[t] + i), acc0[t]);
                acc1[t] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(a[t] + i + 16), acc1[t]);
            }
        }
        for (int t = 0; t < T; ++t) {
            float s = hsum(_mm512_add_ps(acc0[t], acc1[t]));
            for (int64_t j = i; j < n; ++j) s += Tr::one(wr[j]) * a[t][j];
            ys[t][r_off + r] = s;
        }
    }
}

template <Wide K>
void gemm_wide(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* const* acts, int64_t n_tok,
               float* const* ys) {
    using Tr = WideT<K>;
    static constexpr FloatTileFn<float> kTiles[8] = {wide_tile<K, 1>, wide_tile<K, 2>, wide_tile<K, 3>, wide_tile<K, 4>,
                                         wide_tile<K, 5>, wide_tile<K, 6>, wide_tile<K, 7>, wide_tile<K, 8>};
    thread_local std::vector<float> wide;
    thread_local std::vector<const float*> a;
    a.resize((size_t)n_tok);
    if constexpr (K == Wide::f32) {  // (already floats)
        for (int64_t t = 0; t < n_tok; ++t) a[(size_t)t] = static_cast<const float*>(acts[t]);
    } else {  // widened once per call (exact), 16 at a time
        wide.resize((size_t)(n_tok * n));
        for (int64_t t = 0; t < n_tok; ++t) {
            const auto* src = static_cast<const typename Tr::T*>(acts[t]);
            float* dst = wide.data() + t * n;
            int64_t i = 0;
            for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, Tr::load(src + i));
            for (; i < n; ++i) dst[i] = Tr::one(src[i]);
            a[(size_t)t] = dst;
        }
    }
    run_float_tiles(kTiles, w, row_stride, n_rows, n, a.data(), n_tok, ys);
}

// One token: gemm_wide's tile of one. Before, a dot product per row with a prefetch of the first
// line of the row four on: the F16 LM head of the bench shape, one token, 2 threads, 37.2 -> 21.4
// ms (16.7 -> 29 GB/s; docs/performance.md)
template <Wide K>
void gemv_wide(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* act, float* y) {
    float* ys[1] = {y};
    gemm_wide<K>(w, row_stride, n_rows, n, &act, 1, ys);
}

// BF16 rows on CPUs with AVX512-BF16 (Intel from Cooper Lake, AMD from Zen 4): VDPBF16PS
// multiplies 32 bf16 pairs exactly and adds them into 16 float lanes, so the activations stay in
// bf16 (as the table converts them for BF16 weights) and nothing is widened: one instruction per
// 32 weights and token where the widening kernel above takes two widening loads and two FMAs (as
// llama.cpp's BF16 dot product does where it has the instruction). Per (row, token) the same
// operations whatever the number of tokens: two accumulators over 64-element steps, one 32-element
// step into the first, their sum, the scalar tail. Inputs and outputs below FLT_MIN are taken as 0.
template <int T>
__attribute__((target("avx512bf16"))) void bf16dp_tile(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n,
                                                      const uint16_t* const* a, float* const* ys, int64_t r_off) {
    auto bh = [](const uint16_t* p) { return (__m512bh)_mm512_loadu_si512((const void*)p); };
    for (int64_t r = 0; r < n_rows; ++r) {
        const auto* wr = reinterpret_cast<const uint16_t*>(w + (size_t)r * row_stride);
        __m512 acc0[T], acc1[T];
        for (int t = 0; t < T; ++t) acc0[t] = acc1[t] = _mm512_setzero_ps();
        int64_t i = 0;
        for (; i + 64 <= n; i += 64) {
            _mm_prefetch((const char*)(wr + i) + 2 * row_stride, _MM_HINT_T1);
            _mm_prefetch((const char*)(wr + i) + 2 * row_stride + 64, _MM_HINT_T1);
            const __m512bh w0 = bh(wr + i), w1 = bh(wr + i + 32);
            for (int t = 0; t < T; ++t) {
                acc0[t] = _mm512_dpbf16_ps(acc0[t], w0, bh(a[t] + i));
                acc1[t] = _mm512_dpbf16_ps(acc1[t], w1, bh(a[t] + i + 32));
            }
        }
        if (i + 32 <= n) {
            const __m512bh w0 = bh(wr + i);
            for (int t = 0; t < T; ++t) acc0[t] = _mm512_dpbf16_ps(acc0[t], w0, bh(a[t] + i));
            i += 32;
        }
        for (int t = 0; t < T; ++t) {
            float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0[t], acc1[t]));
            for (int64_t j = i; j < n; ++j) s += bf16_to_fp32(wr[j]) * bf16_to_fp32(a[t][j]);
            ys[t][r_off + r] = s;
        }
    }
}

void gemm_bf16dp(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* const* acts, int64_t n_tok,
                 float* const* ys) {
    static constexpr FloatTileFn<uint16_t> kTiles[8] = {bf16dp_tile<1>, bf16dp_tile<2>, bf16dp_tile<3>, bf16dp_tile<4>,
                                         bf16dp_tile<5>, bf16dp_tile<6>, bf16dp_tile<7>, bf16dp_tile<8>};
    run_float_tiles(kTiles, w, row_stride, n_rows, n, reinterpret_cast<const uint16_t* const*>(acts), n_tok, ys);
}

void gemv_bf16dp(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* act, float* y) {
    float* ys[1] = {y};
    gemm_bf16dp(w, row_stride, n_rows, n, &act, 1, ys);
}

// W8A8: VPDPBUSD wants one unsigned side, so the activations are offset by 128 (x + 128 in
// 0..255) and 128 * sum_k w[r][k], summed alongside with a ones vector, is taken off: exact in
// int32 while n * 255 * 128 < 2^31 (n < 65,793). Four rows share each activation load.
void gemv_i8(const int8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const int8_t* x_q, int32_t* acc) {
    std::vector<uint8_t> xu((size_t)n);
    const __m512i flip = _mm512_set1_epi8((char)0x80), ones = _mm512_set1_epi8(1);
    auto mask_at = [n](int64_t k) { return n - k >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (n - k)) - 1); };
    for (int64_t k = 0; k < n; k += 64) {
        const __mmask64 m = mask_at(k);
        _mm512_mask_storeu_epi8(xu.data() + k, m, _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, x_q + k), flip));
    }
    int64_t r = 0;
    for (; r + 4 <= n_rows; r += 4) {
        __m512i a[4], s[4];
        for (int j = 0; j < 4; ++j) a[j] = s[j] = _mm512_setzero_si512();
        for (int64_t k = 0; k < n; k += 64) {
            const __mmask64 m = mask_at(k);
            const __m512i xv = _mm512_maskz_loadu_epi8(m, xu.data() + k);
            for (int j = 0; j < 4; ++j) {
                const __m512i wv = _mm512_maskz_loadu_epi8(m, w + (size_t)(r + j) * row_stride + k);
                a[j] = _mm512_dpbusd_epi32(a[j], xv, wv);
                s[j] = _mm512_dpbusd_epi32(s[j], ones, wv);
            }
        }
        for (int j = 0; j < 4; ++j) acc[r + j] = _mm512_reduce_add_epi32(a[j]) - 128 * _mm512_reduce_add_epi32(s[j]);
    }
    for (; r < n_rows; ++r) {
        __m512i a = _mm512_setzero_si512(), s = _mm512_setzero_si512();
        for (int64_t k = 0; k < n; k += 64) {
            const __mmask64 m = mask_at(k);
            const __m512i wv = _mm512_maskz_loadu_epi8(m, w + (size_t)r * row_stride + k);
            a = _mm512_dpbusd_epi32(a, _mm512_maskz_loadu_epi8(m, xu.data() + k), wv);
            s = _mm512_dpbusd_epi32(s, ones, wv);
        }
        acc[r] = _mm512_reduce_add_epi32(a) - 128 * _mm512_reduce_add_epi32(s);
    }
}

}  // namespace

static inline __m256i dpbusd256(__m256i u, __m256i s) { return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s); }
static float dot_q4_0(const ref::BlockQ4_0* w, const BlockQ8_0* a, int64_t nb) { return q0::dot(w, a, nb, dpbusd256); }
static float dot_q5_0(const ref::BlockQ5_0* w, const BlockQ8_0* a, int64_t nb) { return q0::dot(w, a, nb, dpbusd256); }

void fill_avx512(KernelTable& t) {
    t.gemv[(int)DType::Q4_0] = gemv<ref::BlockQ4_0, BlockQ8_0, dot_q4_0, 32>;
    t.gemv[(int)DType::Q5_0] = gemv<ref::BlockQ5_0, BlockQ8_0, dot_q5_0, 32>;
    t.gemv_i8 = gemv_i8;
    t.convert[(int)DType::Q8_K] = convert_q8_k;
    t.convert[(int)DType::Q8_0] = convert_q8_0;
    t.convert[(int)DType::F16] = convert_f16;
    t.gemv[(int)DType::Q4_K] = gemv_q4_k;
    t.gemm[(int)DType::Q4_K] = gemm_q4_k;
    t.gemm[(int)DType::Q6_K] = gemm_q6_k;
    t.gemv[(int)DType::Q6_K] = gemv<BlockQ6_K, BlockQ8_K, dot_q6_k, kQK_K>;
    t.gemv[(int)DType::Q8_0] = gemv<BlockQ8_0, BlockQ8_0, dot_q8_0, 32>;
    t.gemv[(int)DType::F16] = gemv_wide<Wide::f16>;
    t.gemv[(int)DType::F32] = gemv_wide<Wide::f32>;
    t.gemv[(int)DType::BF16] = gemv_wide<Wide::bf16>;
    t.gemm[(int)DType::F16] = gemm_wide<Wide::f16>;
    t.gemm[(int)DType::BF16] = gemm_wide<Wide::bf16>;
    t.gemm[(int)DType::F32] = gemm_wide<Wide::f32>;
    for (DType d : {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::Q4_0, DType::Q5_0, DType::F16, DType::BF16, DType::F32})
        t.fast[(int)d] = true;
    t.attn_scores = attn_scores;
    t.attn_values = attn_values;
}

void fill_avx512_bf16(KernelTable& t) {
    t.gemv[(int)DType::BF16] = gemv_bf16dp;
    t.gemm[(int)DType::BF16] = gemm_bf16dp;
}

}  // namespace tandem::cpu
