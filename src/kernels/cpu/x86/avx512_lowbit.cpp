// AVX-512 (BW + VNNI) GEMV for the types Tandem reads but does not write (Q2_K, Q3_K, IQ4_XS with
// Q8_K activations; IQ4_NL, Q4_1, Q5_1 with Q8_0 activations), over the GGUF blocks as stored.
// Compiled with the avx512.cpp flags. Integer sums are exact; only the float accumulation order
// differs from the reference (kernels/reference/quants_lowbit.cpp), which the tests hold them to.
//
// Q2_K / Q3_K: one 64-byte load of qs holds 2 bits of every element; shifting it by 2j gives the
// 64 elements {32j + l, 128 + 32j + l : l < 32}, whose activations are arranged next to each
// other once per GEMV. VPMADDUBSW (u8 levels x s8 activations) gives 16-bit pair sums and
// VPMADDWD applies the 16-element sub-blocks' scales. Q3_K's levels go in as q + 4 h (0..7), the
// 4 comes back as 4 * sum_i sc[i] * bsums[i]; Q2_K's mins as sum_i m[i] * bsums[i].
// IQ4_*: the 16 non-linear levels are looked up with VPSHUFB; signed levels, so the sign moves
// onto the activation (|v| x +-a) as for Q8_0.
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/x86/act_scratch.h"
#include "kernels/cpu/x86/q0_dots.h"
#include "kernels/reference/quants.h"

namespace tandem::cpu {
namespace {

using ref::BlockIQ4_NL;
using ref::BlockIQ4_XS;
using ref::BlockQ2_K;
using ref::BlockQ3_K;
using ref::BlockQ4_1;
using ref::BlockQ5_1;
using ref::BlockQ8_0;
using ref::BlockQ8_K;
using ref::kQK_K;

inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

// ---- Q2_K / Q3_K --------------------------------------------------------------------------

// Per block: for j < 4, the 32 activations from 32j, then the 32 from 128 + 32j.
void arrange_2bit_acts(const BlockQ8_K* a, int64_t nb, int8_t* out) {
    for (int64_t ib = 0; ib < nb; ++ib, out += kQK_K)
        for (int j = 0; j < 4; ++j) {
            std::memcpy(out + 64 * j, a[ib].qs + 32 * j, 32);
            std::memcpy(out + 64 * j + 32, a[ib].qs + 128 + 32 * j, 32);
        }
}

// int16 lanes 0-7 = s[2j], 8-15 = s[2j + 1], 16-23 = s[8 + 2j], 24-31 = s[9 + 2j]: the scales of
// the sub-blocks the 32 pair sums of shift 2j fall in
inline __m512i scales_for_shift(__m512i s16, int j) {
    const short a = (short)(2 * j), b = (short)(2 * j + 1), c = (short)(8 + 2 * j), d = (short)(9 + 2 * j);
    const __m512i idx = _mm512_set_epi16(d, d, d, d, d, d, d, d, c, c, c, c, c, c, c, c, b, b, b, b, b, b, b, b, a, a,
                                         a, a, a, a, a, a);
    return _mm512_permutexvar_epi16(idx, s16);
}

// sum over the block of level * activation * (sub-block scale) for 2-bit levels in qs (+ 4 * the
// high bit of hmask when Q3), as 16 int32 lanes
template <bool Q3>
inline __m512i two_bit_sums(const uint8_t* qs, const uint8_t* hmask, __m512i s16, const int8_t* ap) {
    const __m512i m3 = _mm512_set1_epi8(3), one = _mm512_set1_epi8(1);
    const __m512i q = _mm512_loadu_si512((const void*)qs);
    __m512i h2;
    if constexpr (Q3) {  // byte l: hmask[l] (bits j for the first 128), hmask[l] >> 4 (the second)
        const __m256i h = _mm256_loadu_si256((const __m256i*)hmask);
        h2 = _mm512_inserti64x4(_mm512_castsi256_si512(h), _mm256_srli_epi16(h, 4), 1);
    }
    __m512i isum = _mm512_setzero_si512();
    for (int j = 0; j < 4; ++j) {
        __m512i v = _mm512_and_si512(_mm512_srli_epi16(q, 2 * j), m3);
        if constexpr (Q3) v = _mm512_or_si512(v, _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(h2, j), one), 2));
        const __m512i p = _mm512_maddubs_epi16(v, _mm512_loadu_si512((const void*)(ap + 64 * j)));
        isum = _mm512_add_epi32(isum, _mm512_madd_epi16(p, scales_for_shift(s16, j)));
    }
    return isum;
}

float dot_q2_k(const BlockQ2_K* w, const BlockQ8_K* a, const int8_t* ap, int64_t nb) {
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m512 acc = _mm512_setzero_ps();
    __m256 acc_min = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib, ap += kQK_K) {
        const __m128i sc = _mm_loadu_si128((const __m128i*)w[ib].scales);
        const __m256i s16 = _mm256_cvtepu8_epi16(_mm_and_si128(sc, m4));
        const __m256i m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), m4));
        const __m256i mins = _mm256_madd_epi16(m16, _mm256_loadu_si256((const __m256i*)a[ib].bsums));
        const __m512i isum = two_bit_sums<false>(w[ib].qs, nullptr, _mm512_castsi256_si512(s16), ap);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(half_to_float(w[ib].d) * a[ib].d), acc);
        acc_min = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_set1_ps(half_to_float(w[ib].dmin) * a[ib].d), acc_min);
    }
    return _mm512_reduce_add_ps(acc) - q0::hsum8(acc_min);
}

// Q3_K's 16 six-bit scales as int16 - 32: low 4 bits in the nibbles of bytes 0-7 (scale i < 8
// in the low nibble of byte i, scale 8 + i in the high one), high 2 bits in bytes 8-11 (scale i
// at bits 2 (i / 4) of byte 8 + i % 4). In registers: no store and reload of a small array.
inline __m256i q3_k_scales(const uint8_t* s) {
    const __m128i m4 = _mm_set1_epi8(0x0f);
    const __m128i lo8 = _mm_loadl_epi64((const __m128i*)s);
    const __m128i low = _mm_unpacklo_epi64(_mm_and_si128(lo8, m4), _mm_and_si128(_mm_srli_epi16(lo8, 4), m4));
    uint32_t h;
    std::memcpy(&h, s + 8, 4);
    const __m128i hs = _mm_srlv_epi32(_mm_set1_epi32((int)h), _mm_set_epi32(6, 4, 2, 0));
    const __m128i high = _mm_slli_epi16(_mm_and_si128(hs, _mm_set1_epi8(3)), 4);
    return _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm_or_si128(low, high)), _mm256_set1_epi16(32));
}

float dot_q3_k(const BlockQ3_K* w, const BlockQ8_K* a, const int8_t* ap, int64_t nb) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib, ap += kQK_K) {
        const __m256i s16 = q3_k_scales(w[ib].scales);
        // levels went in as v + 4: take 4 * sum_i sc[i] * bsums[i] back off
        const __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(s16, _mm256_loadu_si256((const __m256i*)a[ib].bsums)), 2);
        const __m512i isum = _mm512_sub_epi32(two_bit_sums<true>(w[ib].qs, w[ib].hmask, _mm512_castsi256_si512(s16), ap),
                                              _mm512_zextsi256_si512(corr));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(half_to_float(w[ib].d) * a[ib].d), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

template <typename Block, float (*Dot)(const Block*, const BlockQ8_K*, const int8_t*, int64_t)>
void gemv_2bit(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* act, float* y) {
    const auto* a = static_cast<const BlockQ8_K*>(act);
    const int64_t nb = n / kQK_K;
    ActScratch<32> scratch(nb);  // rows up to 8192 wide without allocating
    int8_t* ap = scratch.data();
    arrange_2bit_acts(a, nb, ap);
    for (int64_t r = 0; r < n_rows; ++r) {
        if (r + 4 < n_rows) _mm_prefetch((const char*)(w + (size_t)(r + 4) * row_stride), _MM_HINT_T0);
        y[r] = Dot(reinterpret_cast<const Block*>(w + (size_t)r * row_stride), a, ap, nb);
    }
}

// ---- IQ4_XS / IQ4_NL ----------------------------------------------------------------------

inline __m512i iq4_table512() {
    return _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i*)ref::kIq4nlValues));
}

// levels (signed) . activations for 64 elements, as 32 int16 pair sums: |v| x (a with v's sign)
inline __m512i signed_pair_sums(__m512i v, __m512i a) {
    const __mmask64 neg = _mm512_movepi8_mask(v);
    return _mm512_maddubs_epi16(_mm512_abs_epi8(v), _mm512_mask_sub_epi8(a, neg, _mm512_setzero_si512(), a));
}

// IQ4_XS's 8 six-bit scales - 32 as int16 lanes 0-7: low 4 bits in the nibbles of scales_l (low
// nibble first), high 2 bits at bits 2j of scales_h
inline __m128i iq4_xs_scales(const BlockIQ4_XS& b) {
    uint32_t l;
    std::memcpy(&l, b.scales_l, 4);
    const __m128i lb = _mm_cvtsi32_si128((int)l), m4 = _mm_set1_epi8(0x0f);
    const __m128i low = _mm_cvtepu8_epi16(_mm_unpacklo_epi8(_mm_and_si128(lb, m4), _mm_and_si128(_mm_srli_epi16(lb, 4), m4)));
    const __m128i hs = _mm_srlv_epi16(_mm_set1_epi16((short)b.scales_h), _mm_set_epi16(14, 12, 10, 8, 6, 4, 2, 0));
    const __m128i high = _mm_slli_epi16(_mm_and_si128(hs, _mm_set1_epi16(3)), 4);
    return _mm_sub_epi16(_mm_or_si128(low, high), _mm_set1_epi16(32));
}

float dot_iq4_xs(const BlockIQ4_XS* w, const BlockQ8_K* a, int64_t nb) {
    const __m512i table = iq4_table512();
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    // int16 lanes 0-15 = scale j, 16-31 = scale j + 1, for the pairs j = 0, 2, 4, 6
    __m512i pick[4];
    for (int k = 0; k < 4; ++k)
        pick[k] = _mm512_inserti64x4(_mm512_set1_epi16((short)(2 * k)), _mm256_set1_epi16((short)(2 * k + 1)), 1);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib) {
        const __m512i ls = _mm512_castsi128_si512(iq4_xs_scales(w[ib]));
        __m512i isum = _mm512_setzero_si512();
        for (int j = 0; j < 8; j += 2) {  // sub-blocks j and j + 1: 32 bytes of qs, 64 activations
            const __m256i q = _mm256_loadu_si256((const __m256i*)(w[ib].qs + 16 * j));
            const __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            // [lo 0-15, hi 0-15 | lo 16-31, hi 16-31]: elements 0-31 of sub-block j, then of j + 1
            const __m512i nib = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_permute2x128_si256(lo, hi, 0x20)),
                                                   _mm256_permute2x128_si256(lo, hi, 0x31), 1);
            const __m512i v = _mm512_shuffle_epi8(table, nib);
            const __m512i p = signed_pair_sums(v, _mm512_loadu_si512((const void*)(a[ib].qs + 32 * j)));
            isum = _mm512_add_epi32(isum, _mm512_madd_epi16(p, _mm512_permutexvar_epi16(pick[j / 2], ls)));
        }
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(half_to_float(w[ib].d) * a[ib].d), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

float dot_iq4_nl(const BlockIQ4_NL* w, const BlockQ8_0* a, int64_t nb) {
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)ref::kIq4nlValues));
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib) {
        const __m256i v = _mm256_shuffle_epi8(table, q0::nibbles(w[ib].qs));
        const __m256i qa = _mm256_loadu_si256((const __m256i*)a[ib].qs);
        const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(v, v), _mm256_sign_epi8(qa, v));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(half_to_float(w[ib].d) * half_to_float(a[ib].d)), acc);
    }
    return q0::hsum8(acc);
}

// ---- Q4_1 / Q5_1: unsigned levels, x = d q + m: d da sum q a + m da sum a ----------------------

template <typename Block>
float dot_affine32(const Block* w, const BlockQ8_0* a, int64_t nb) {
    const __m256i ones = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps(), acc_m = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib) {
        __m256i q = q0::nibbles(w[ib].qs);
        if constexpr (sizeof(Block) == sizeof(BlockQ5_1)) q = _mm256_or_si256(q, q0::fifth_bits(w[ib].qh));
        const __m256i qa = _mm256_loadu_si256((const __m256i*)a[ib].qs);
        const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, qa);
        const __m256i sa = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, qa);  // sum of the activations
        const float da = half_to_float(a[ib].d);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(half_to_float(w[ib].d) * da), acc);
        acc_m = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sa), _mm256_set1_ps(half_to_float(w[ib].m) * da), acc_m);
    }
    return q0::hsum8(_mm256_add_ps(acc, acc_m));
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

void fill_avx512_lowbit(KernelTable& t) {
    t.gemv[(int)DType::Q2_K] = gemv_2bit<BlockQ2_K, dot_q2_k>;
    t.gemv[(int)DType::Q3_K] = gemv_2bit<BlockQ3_K, dot_q3_k>;
    t.gemv[(int)DType::IQ4_XS] = gemv<BlockIQ4_XS, BlockQ8_K, dot_iq4_xs, kQK_K>;
    t.gemv[(int)DType::IQ4_NL] = gemv<BlockIQ4_NL, BlockQ8_0, dot_iq4_nl, 32>;
    t.gemv[(int)DType::Q4_1] = gemv<BlockQ4_1, BlockQ8_0, dot_affine32<BlockQ4_1>, 32>;
    t.gemv[(int)DType::Q5_1] = gemv<BlockQ5_1, BlockQ8_0, dot_affine32<BlockQ5_1>, 32>;
    for (DType d : {DType::Q2_K, DType::Q3_K, DType::IQ4_XS, DType::IQ4_NL, DType::Q4_1, DType::Q5_1})
        t.fast[(int)d] = true;
}

}  // namespace tandem::cpu
