// Q4_0 / Q5_0 weight rows . Q8_0 activations with 256-bit integer dots, shared by the x86 ISA
// files (each compiles it for its own target and passes its u8 x s8 dot: VPMADDUBSW + VPMADDWD
// on AVX2, VPDPBUSD on AVX-512 VNNI). A block is 32 levels v = q - 8 (Q4_0) or q - 16 (Q5_0,
// the fifth bits from qh); the sign moves onto the activation so the dot sees |v|, as for Q8_0.
#pragma once

#include <immintrin.h>

#include <cstring>

#include "kernels/reference/quants.h"

namespace tandem::cpu::q0 {

// qs (16 bytes): element j in the low nibble of qs[j], j + 16 in the high one -> 32 bytes 0..15
inline __m256i nibbles(const uint8_t* qs) {
    const __m128i b = _mm_loadu_si128((const __m128i*)qs), m4 = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m4), _mm_and_si128(b, m4));
}

// 0x10 in byte j where bit j of the 32 bits at qh is set
inline __m256i fifth_bits(const uint8_t* qh) {
    uint32_t bits;
    std::memcpy(&bits, qh, 4);
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits),
                                               _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                                                 0x0101010101010101, 0x0000000000000000));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(0x10));
}

inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Dot: (u8 vector, s8 vector) -> 8 int32 lane sums
template <class Block, class Dot>
float dot(const Block* w, const ref::BlockQ8_0* a, int64_t nb, Dot dot_u8s8) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib) {
        __m256i v;
        if constexpr (sizeof(Block) == sizeof(ref::BlockQ4_0)) {
            v = _mm256_sub_epi8(nibbles(w[ib].qs), _mm256_set1_epi8(8));
        } else {
            v = _mm256_sub_epi8(_mm256_or_si256(nibbles(w[ib].qs), fifth_bits(w[ib].qh)), _mm256_set1_epi8(16));
        }
        const __m256i qa = _mm256_loadu_si256((const __m256i*)a[ib].qs);
        const __m256i p = dot_u8s8(_mm256_sign_epi8(v, v), _mm256_sign_epi8(qa, v));
        const float d = _cvtsh_ss(w[ib].d) * _cvtsh_ss(a[ib].d);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d), acc);
    }
    return hsum8(acc);
}

}  // namespace tandem::cpu::q0
