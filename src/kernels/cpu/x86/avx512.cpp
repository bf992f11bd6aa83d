// AVX-512 (F/BW/VL/DQ + VNNI) kernels. Compiled with -mavx512f -mavx512bw -mavx512vl
// -mavx512dq -mavx512vnni -mfma -mf16c; only called after cpu_features() says the CPU has them.
//
// Integer dot products use VPDPBUSD (u8 x s8 -> s32, four products per lane): the weight side
// must be unsigned, so signed weights are offset (Q6_K: q in 0..63, the -32 comes back through
// the Q8_K block sums) or their sign is moved onto the activations (Q8_0).
#include <immintrin.h>

#include <cstring>

#include "kernels/cpu/kernels.h"
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
        float xmax = 0.0f;
        for (int i = 0; i < kQK_K; ++i)
            if (x[i] == amax || x[i] == -amax) {
                xmax = x[i];
                break;
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

// 6-bit scales and mins of a Q4_K/Q5_K block (llama.cpp's packing).
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

// 512-bit activation vector: 32 bytes at a and 32 bytes at b.
inline __m512i load_pair(const int8_t* a, const int8_t* b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i*)a)),
                              _mm256_loadu_si256((const __m256i*)b), 1);
}

// Q4_K row . Q8_K: per 64-byte load of qs (chunks c, c+1), low nibbles hold sub-blocks 2c and
// 2c+2, high nibbles 2c+1 and 2c+3; each dpbusd lane sums 4 products of one sub-block.
float dot_q4_k(const BlockQ4_K* w, const BlockQ8_K* a, int64_t nb) {
    const __m512i m4 = _mm512_set1_epi8(0xF);
    __m512 acc = _mm512_setzero_ps();
    float acc_min = 0.0f;
    alignas(16) uint8_t sc[8], mn[8];
    for (int64_t ib = 0; ib < nb; ++ib) {
        unpack_k_scales(w[ib].scales, sc, mn);
        const float d = half_to_float(w[ib].d) * a[ib].d;
        const float dmin = half_to_float(w[ib].dmin) * a[ib].d;
        int32_t msum = 0;
        for (int j = 0; j < 8; ++j) msum += mn[j] * (a[ib].bsums[2 * j] + a[ib].bsums[2 * j + 1]);
        acc_min += dmin * (float)msum;

        __m512i isum = _mm512_setzero_si512();
        const int8_t* q8 = a[ib].qs;
        for (int half = 0; half < 2; ++half) {  // sub-blocks 4*half .. 4*half+3
            const __m512i q4 = _mm512_loadu_si512((const void*)(w[ib].qs + 64 * half));
            const __m512i lo = _mm512_and_si512(q4, m4);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q4, 4), m4);
            const int8_t* a0 = q8 + 128 * half;
            const __m512i p_lo = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, load_pair(a0, a0 + 64));
            const __m512i p_hi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, load_pair(a0 + 32, a0 + 96));
            const int s = 4 * half;
            const __m512i s_lo = _mm512_inserti64x4(_mm512_set1_epi32(sc[s]), _mm256_set1_epi32(sc[s + 2]), 1);
            const __m512i s_hi = _mm512_inserti64x4(_mm512_set1_epi32(sc[s + 1]), _mm256_set1_epi32(sc[s + 3]), 1);
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(p_lo, s_lo));
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(p_hi, s_hi));
        }
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d), acc);
    }
    return hsum(acc) - acc_min;
}

// Q6_K row . Q8_K: q = 4 bits of ql + 2 bits of qh in 0..63; sum (q - 32) a = sum q a - 32 bsum.
float dot_q6_k(const BlockQ6_K* w, const BlockQ8_K* a, int64_t nb) {
    const __m512i m4 = _mm512_set1_epi8(0xF);
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m128i spread = _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    __m512 acc = _mm512_setzero_ps();
    float acc_off = 0.0f;
    for (int64_t ib = 0; ib < nb; ++ib) {
        const float d = half_to_float(w[ib].d) * a[ib].d;
        int32_t off = 0;
        for (int j = 0; j < 16; ++j) off += w[ib].scales[j] * a[ib].bsums[j];
        acc_off += d * 32.0f * (float)off;

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
            const __m512i p_lo = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q_lo, _mm512_loadu_si512((const void*)a0));
            const __m512i p_hi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q_hi, _mm512_loadu_si512((const void*)(a0 + 64)));
            // sub-blocks of 16 = 4 lanes: scales 8*half + 0..3 for lo, + 4..7 for hi
            int32_t s4lo, s4hi;
            std::memcpy(&s4lo, w[ib].scales + 8 * half, 4);
            std::memcpy(&s4hi, w[ib].scales + 8 * half + 4, 4);
            const __m512i sc_lo = _mm512_cvtepi8_epi32(_mm_shuffle_epi8(_mm_cvtsi32_si128(s4lo), spread));
            const __m512i sc_hi = _mm512_cvtepi8_epi32(_mm_shuffle_epi8(_mm_cvtsi32_si128(s4hi), spread));
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(p_lo, sc_lo));
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(p_hi, sc_hi));
        }
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d), acc);
    }
    return hsum(acc) - acc_off;
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

float dot_f16(const uint16_t* w, const uint16_t* a, int64_t n) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(w + i))),
                               _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(a + i))), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(w + i + 16))),
                               _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(a + i + 16))), acc1);
    }
    float s = hsum(_mm512_add_ps(acc0, acc1));
    for (; i < n; ++i) s += half_to_float(w[i]) * half_to_float(a[i]);
    return s;
}

float dot_f32(const float* w, const float* a, int64_t n) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(a + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(a + i + 16), acc1);
    }
    float s = hsum(_mm512_add_ps(acc0, acc1));
    for (; i < n; ++i) s += w[i] * a[i];
    return s;
}

// head_dim must be a multiple of 16 (checked by the caller's table lookup: hd % 16 == 0)
void attn_scores(const float* q, const uint16_t* k, int64_t stride, int64_t n_pos, int64_t hd, float* scores) {
    for (int64_t p = 0; p < n_pos; ++p) {
        const uint16_t* kp = k + p * stride;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t i = 0; i < hd; i += 16)
            acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(kp + i))), acc);
        scores[p] = _mm512_reduce_add_ps(acc);
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

}  // namespace

void fill_avx512(KernelTable& t) {
    t.convert[(int)DType::Q8_K] = convert_q8_k;
    t.convert[(int)DType::Q8_0] = convert_q8_0;
    t.convert[(int)DType::F16] = convert_f16;
    t.gemv[(int)DType::Q4_K] = gemv<BlockQ4_K, BlockQ8_K, dot_q4_k, kQK_K>;
    t.gemv[(int)DType::Q6_K] = gemv<BlockQ6_K, BlockQ8_K, dot_q6_k, kQK_K>;
    t.gemv[(int)DType::Q8_0] = gemv<BlockQ8_0, BlockQ8_0, dot_q8_0, 32>;
    t.gemv[(int)DType::F16] = gemv<uint16_t, uint16_t, dot_f16, 1>;
    t.gemv[(int)DType::F32] = gemv<float, float, dot_f32, 1>;
    for (DType d : {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::F16, DType::F32}) t.fast[(int)d] = true;
    t.attn_scores = attn_scores;
    t.attn_values = attn_values;
}

}  // namespace tandem::cpu
