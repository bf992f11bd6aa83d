// AVX2 + FMA + F16C kernels. Compiled with -mavx2 -mfma -mf16c; only called after
// cpu_features() says the CPU has them. Integer dot products: maddubs (u8 x s8 -> s16 pairs)
// then madd with ones (-> s32).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/fp16.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/x86/float_tiles.h"
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

// bf16 -> f32 is a 16-bit shift; products and sums in f32 as the F16 path
inline __m256 bf16_to_ps(const uint16_t* p) {
    const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}

// F16 / BF16 / F32 rows x 1 to 4 tokens, as the AVX-512 kernel (avx512.cpp, gemm_wide) in 8-wide
// vectors: per (row, token) two accumulators over 16-element steps, their sum, the scalar tail,
// the same operations whatever the number of tokens (a batched sequence computes what it computes
// alone, bit for bit); each weight vector loaded and widened once for the tile's tokens; from two
// tokens on, every line of the weights prefetched into L2 two rows ahead (for one token that made
// the LM head below slower, 28 -> 30.5 ms: the hardware's prefetch alone). Before (a dot product
// per row and token): the one-layer bench-shaped F16 model on the AVX2 table (TANDEM_ISA=avx2),
// LM head 26.7-28.1 ms for one token, 108-111 for four; now 26.7-28.1 and 30.3-30.6.
enum class Wide { f16, bf16, f32 };
template <Wide K>
struct WideT;
template <>
struct WideT<Wide::f16> {
    using T = uint16_t;
    static __m256 load(const T* p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)); }
    static float one(T v) { return half_to_float(v); }
};
template <>
struct WideT<Wide::bf16> {
    using T = uint16_t;
    static __m256 load(const T* p) { return bf16_to_ps(p); }
    static float one(T v) { return bf16_to_fp32(v); }
};
template <>
struct WideT<Wide::f32> {
    using T = float;
    static __m256 load(const T* p) { return _mm256_loadu_ps(p); }
    static float one(T v) { return v; }
};

constexpr int kWideTile = 4;  // tokens per tile: 2 x 4 accumulators + 2 weight vectors of 16 registers

// rows [0, n_rows) x T tokens (a[t]: the activations widened to f32, exact)
template <Wide K, int T>
void wide_tile(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const float* const* a, float* const* ys,
               int64_t r_off) {
    using Tr = WideT<K>;
    constexpr int64_t kLineStep = 64 / (16 * (int64_t)sizeof(typename Tr::T));  // 16-element steps per line (2 or 1)
    for (int64_t r = 0; r < n_rows; ++r) {
        const auto* wr = reinterpret_cast<const typename Tr::T*>(w + (size_t)r * row_stride);
        __m256 acc0[T], acc1[T];
        for (int t = 0; t < T; ++t) acc0[t] = acc1[t] = _mm256_setzero_ps();
        int64_t i = 0;
        for (int64_t step = 0; i + 16 <= n; i += 16, ++step) {
            if (T > 1 && step % kLineStep == 0) _mm_prefetch((const char*)(wr + i) + 2 * row_stride, _MM_HINT_T1);
            const __m256 w0 = Tr::load(wr + i), w1 = Tr::load(wr + i + 8);
            for (int t = 0; t < T; ++t) {
                acc0[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(a[t] + i), acc0[t]);
                acc1[t] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(a[t] + i + 8), acc1[t]);
            }
        }
        for (int t = 0; t < T; ++t) {
            float s = hsum(_mm256_add_ps(acc0[t], acc1[t]));
            for (int64_t j = i; j < n; ++j) s += Tr::one(wr[j]) * a[t][j];
            ys[t][r_off + r] = s;
        }
    }
}

template <Wide K>
void gemm_wide(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* const* acts, int64_t n_tok,
               float* const* ys) {
    using Tr = WideT<K>;
    static constexpr FloatTileFn<float> kTiles[kWideTile] = {wide_tile<K, 1>, wide_tile<K, 2>, wide_tile<K, 3>, wide_tile<K, 4>};
    thread_local std::vector<float> wide;
    thread_local std::vector<const float*> a;
    a.resize((size_t)n_tok);
    if constexpr (K == Wide::f32) {  // (already floats)
        for (int64_t t = 0; t < n_tok; ++t) a[(size_t)t] = static_cast<const float*>(acts[t]);
    } else {  // widened once per call (exact)
        wide.resize((size_t)(n_tok * n));
        for (int64_t t = 0; t < n_tok; ++t) {
            const auto* src = static_cast<const typename Tr::T*>(acts[t]);
            float* dst = wide.data() + t * n;
            int64_t i = 0;
            for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, Tr::load(src + i));
            for (; i < n; ++i) dst[i] = Tr::one(src[i]);
            a[(size_t)t] = dst;
        }
    }
    run_float_tiles(kTiles, w, row_stride, n_rows, n, a.data(), n_tok, ys);
}

template <Wide K>
void gemv_wide(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* act, float* y) {
    float* ys[1] = {y};
    gemm_wide<K>(w, row_stride, n_rows, n, &act, 1, ys);
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
    t.gemv[(int)DType::F16] = gemv_wide<Wide::f16>;
    t.gemv[(int)DType::F32] = gemv_wide<Wide::f32>;
    t.gemv[(int)DType::BF16] = gemv_wide<Wide::bf16>;
    t.gemm[(int)DType::F16] = gemm_wide<Wide::f16>;
    t.gemm[(int)DType::BF16] = gemm_wide<Wide::bf16>;
    t.gemm[(int)DType::F32] = gemm_wide<Wide::f32>;
    for (DType d : {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::Q4_0, DType::Q5_0, DType::F16, DType::BF16, DType::F32})
        t.fast[(int)d] = true;
}

}  // namespace tandem::cpu
