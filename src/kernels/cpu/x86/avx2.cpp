// AVX2 + FMA + F16C kernels. Compiled with -mavx2 -mfma -mf16c; only called after
// cpu_features() says the CPU has them. Integer dot products: maddubs (u8 x s8 -> s16 pairs)
// then madd with ones (-> s32).
#include <immintrin.h>

#include <cstring>

#include "core/fp16.h"
#include "kernels/cpu/kernels.h"
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

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// sum of 32 u8 x s8 products in 8 s32 lanes (no overflow: |q| <= 63 weights, |a| <= 127)
inline __m256i dot_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

inline void unpack_k_scales(const uint8_t* s, uint8_t* sc, uint8_t* mn) {
    for (int j = 0; j < 4; ++j) {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
    }
    for (int j = 4; j < 8; ++j) {
        sc[j] = (uint8_t)((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
        mn[j] = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

void convert_f16(const float* x, void* out, int64_t n) {
    auto* y = static_cast<uint16_t*>(out);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i*)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; ++i) y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

float dot_q4_k(const BlockQ4_K* w, const BlockQ8_K* a, int64_t nb) {
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m256 acc = _mm256_setzero_ps();
    float acc_min = 0.0f;
    uint8_t sc[8], mn[8];
    for (int64_t ib = 0; ib < nb; ++ib) {
        unpack_k_scales(w[ib].scales, sc, mn);
        const float d = half_to_float(w[ib].d) * a[ib].d;
        const float dmin = half_to_float(w[ib].dmin) * a[ib].d;
        int32_t msum = 0;
        for (int j = 0; j < 8; ++j) msum += mn[j] * (a[ib].bsums[2 * j] + a[ib].bsums[2 * j + 1]);
        acc_min += dmin * (float)msum;
        __m256i isum = _mm256_setzero_si256();
        for (int c = 0; c < 4; ++c) {  // 64 elements: sub-blocks 2c (low nibbles) and 2c+1 (high)
            const __m256i q4 = _mm256_loadu_si256((const __m256i*)(w[ib].qs + 32 * c));
            const __m256i lo = _mm256_and_si256(q4, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
            const __m256i p_lo = dot_u8s8(lo, _mm256_loadu_si256((const __m256i*)(a[ib].qs + 64 * c)));
            const __m256i p_hi = dot_u8s8(hi, _mm256_loadu_si256((const __m256i*)(a[ib].qs + 64 * c + 32)));
            isum = _mm256_add_epi32(isum, _mm256_mullo_epi32(p_lo, _mm256_set1_epi32(sc[2 * c])));
            isum = _mm256_add_epi32(isum, _mm256_mullo_epi32(p_hi, _mm256_set1_epi32(sc[2 * c + 1])));
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(d), acc);
    }
    return hsum(acc) - acc_min;
}

float dot_q6_k(const BlockQ6_K* w, const BlockQ8_K* a, int64_t nb) {
    const __m256i m4 = _mm256_set1_epi8(0xF);
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    float acc_off = 0.0f;
    for (int64_t ib = 0; ib < nb; ++ib) {
        const float d = half_to_float(w[ib].d) * a[ib].d;
        int32_t off = 0;
        for (int j = 0; j < 16; ++j) off += w[ib].scales[j] * a[ib].bsums[j];
        acc_off += d * 32.0f * (float)off;
        __m256i isum = _mm256_setzero_si256();
        for (int half = 0; half < 2; ++half) {
            const uint8_t* ql = w[ib].ql + 64 * half;
            const __m256i qh = _mm256_loadu_si256((const __m256i*)(w[ib].qh + 32 * half));
            const __m256i l0 = _mm256_loadu_si256((const __m256i*)ql);
            const __m256i l1 = _mm256_loadu_si256((const __m256i*)(ql + 32));
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4));
            for (int k = 0; k < 4; ++k) {  // 32 elements = 2 sub-blocks of 16
                const __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i*)(a[ib].qs + 128 * half + 32 * k)));
                const int s = 8 * half + 2 * k;
                const __m256i scale = _mm256_setr_m128i(_mm_set1_epi16(w[ib].scales[s]), _mm_set1_epi16(w[ib].scales[s + 1]));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scale));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(d), acc);
    }
    return hsum(acc) - acc_off;
}

float dot_q8_0(const BlockQ8_0* w, const BlockQ8_0* a, int64_t nb) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib) {
        const __m256i qw = _mm256_loadu_si256((const __m256i*)w[ib].qs);
        const __m256i qa = _mm256_loadu_si256((const __m256i*)a[ib].qs);
        const __m256i p = dot_u8s8(_mm256_sign_epi8(qw, qw), _mm256_sign_epi8(qa, qw));
        const float d = half_to_float(w[ib].d) * half_to_float(a[ib].d);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d), acc);
    }
    return hsum(acc);
}

float dot_f16(const uint16_t* w, const uint16_t* a, int64_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(w + i))),
                               _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(a + i))), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(w + i + 8))),
                               _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(a + i + 8))), acc1);
    }
    float s = hsum(_mm256_add_ps(acc0, acc1));
    for (; i < n; ++i) s += half_to_float(w[i]) * half_to_float(a[i]);
    return s;
}

// bf16 -> f32 is a 16-bit shift; products and sums in f32 as the F16 path
inline __m256 bf16_to_ps(const uint16_t* p) {
    const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}

float dot_bf16(const uint16_t* w, const uint16_t* a, int64_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(bf16_to_ps(w + i), bf16_to_ps(a + i), acc0);
        acc1 = _mm256_fmadd_ps(bf16_to_ps(w + i + 8), bf16_to_ps(a + i + 8), acc1);
    }
    float s = hsum(_mm256_add_ps(acc0, acc1));
    for (; i < n; ++i) s += bf16_to_fp32(w[i]) * bf16_to_fp32(a[i]);
    return s;
}

float dot_f32(const float* w, const float* a, int64_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(a + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(a + i + 8), acc1);
    }
    float s = hsum(_mm256_add_ps(acc0, acc1));
    for (; i < n; ++i) s += w[i] * a[i];
    return s;
}

template <typename W, typename A, float (*Dot)(const W*, const A*, int64_t), int kBlock>
void gemv(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* act, float* y) {
    const auto* a = static_cast<const A*>(act);
    for (int64_t r = 0; r < n_rows; ++r)
        y[r] = Dot(reinterpret_cast<const W*>(w + (size_t)r * row_stride), a, n / kBlock);
}

}  // namespace

static float dot_q4_0(const ref::BlockQ4_0* w, const BlockQ8_0* a, int64_t nb) { return q0::dot(w, a, nb, dot_u8s8); }
static float dot_q5_0(const ref::BlockQ5_0* w, const BlockQ8_0* a, int64_t nb) { return q0::dot(w, a, nb, dot_u8s8); }

void fill_avx2(KernelTable& t) {
    t.gemv[(int)DType::Q4_0] = gemv<ref::BlockQ4_0, BlockQ8_0, dot_q4_0, 32>;
    t.gemv[(int)DType::Q5_0] = gemv<ref::BlockQ5_0, BlockQ8_0, dot_q5_0, 32>;
    t.convert[(int)DType::F16] = convert_f16;
    t.gemv[(int)DType::Q4_K] = gemv<BlockQ4_K, BlockQ8_K, dot_q4_k, kQK_K>;
    t.gemv[(int)DType::Q6_K] = gemv<BlockQ6_K, BlockQ8_K, dot_q6_k, kQK_K>;
    t.gemv[(int)DType::Q8_0] = gemv<BlockQ8_0, BlockQ8_0, dot_q8_0, 32>;
    t.gemv[(int)DType::F16] = gemv<uint16_t, uint16_t, dot_f16, 1>;
    t.gemv[(int)DType::F32] = gemv<float, float, dot_f32, 1>;
    t.gemv[(int)DType::BF16] = gemv<uint16_t, uint16_t, dot_bf16, 1>;
    for (DType d : {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::Q4_0, DType::Q5_0, DType::F16, DType::BF16, DType::F32})
        t.fast[(int)d] = true;
}

}  // namespace tandem::cpu
