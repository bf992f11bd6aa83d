// AVX2 kernels over the packed (16-row interleaved) layouts of kernels/reference/packed.h, for
// CPUs without AVX-512 (Zen 2/3 servers, most desktop parts). Compiled twice: avx2_packed.cpp with
// the avx2.cpp flags, avx2_vnni_packed.cpp with AVX-VNNI too (__AVXVNNI__: VPDPBUSD on ymm, Intel
// cores since Alder Lake and the E-core Xeons, which have no AVX-512), where every kernel sums
// each row's products in int32 directly (as the AVX-512 kernels do) instead of VPMADDUBSW's int16
// pairs and VPMADDWD: the `#if defined(__AVXVNNI__)` blocks. Everything here has internal linkage.
//
// A 64-byte packed chunk holds 4 columns of 16 rows (row r in 32-bit lane r); its two 32-byte
// halves are rows 0-7 and 8-15, one ymm each. VPMADDUBSW multiplies a half's unsigned levels by
// the token's 4 activations of those columns, broadcast, into int16 pairs per row; the pairs of a
// sub-block add up in int16 as long as they cannot overflow (bounds below), then one VPMADDWD by
// the rows' sub-block scales, spread as (scale, scale) int16 pairs, gives the scaled int32 row
// sums: no per-row shuffles and no 32-bit multiplies in the loop. Integer sums are exact; only
// the float accumulation order differs from the reference (with AVX-VNNI the 16-element types
// scale their sub-block sums in float, as the AVX-512 kernels). One token (decode) takes both halves
// in one pass over the weights; several tokens (prefill) take a half at a time (16 ymm registers
// hold the accumulators of 8 rows for up to 4 tokens), the second pass reading the group again
// from L1/L2.
#pragma once

#include <immintrin.h>

#include <cstring>
#include <vector>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/x86/packed_acts.h"
#include "kernels/cpu/x86/packed_tiles.h"
#include "kernels/reference/packed.h"
#include "kernels/reference/quants.h"

namespace tandem::cpu {
namespace {

using ref::BlockQ8_K;
using ref::kQK_K;
namespace pq4 = ref::packed_q4_k;
namespace pq6 = ref::packed_q6_k;
namespace pq3 = ref::packed_q3_k;
namespace pq2 = ref::packed_q2_k;
namespace piq4 = ref::packed_iq4_xs;

// Software prefetch this far ahead of the chunk being read (decode streams the weights once; see
// prefetch_weights: into L2 on Intel, where one core streamed Qwen3-235B's expert matrices 5-9%
// faster than into L1)
constexpr int kPrefetchBytes = 8192;

inline __m256i bcast4(const int8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}
inline __m256i load(const uint8_t* p) { return _mm256_loadu_si256((const __m256i*)p); }
inline __m128i load128(const uint8_t* p) { return _mm_loadu_si128((const __m128i*)p); }
inline __m256 load_f16x8(const uint8_t* p) { return _mm256_cvtph_ps(load128(p)); }

// 8 unsigned bytes (one per row) as (v, v) int16 pairs, row r in 32-bit lane r: the multiplier
// of VPMADDWD that scales both int16 halves of a row's pair sums by its scale
inline __m256i spread_u8(const uint8_t* p) {
    int64_t v;
    std::memcpy(&v, p, 8);
    const __m256i idx = _mm256_setr_epi8(0, -1, 0, -1, 1, -1, 1, -1, 2, -1, 2, -1, 3, -1, 3, -1,  //
                                         4, -1, 4, -1, 5, -1, 5, -1, 6, -1, 6, -1, 7, -1, 7, -1);
    return _mm256_shuffle_epi8(_mm256_set1_epi64x(v), idx);
}

// A row's int16 pair (e, o) (int16 2r, 2r + 1) as (e, e) or, kOdd, (o, o)
template <bool kOdd>
inline __m256i dup_half(__m256i pairs) {
    constexpr char o = kOdd ? 2 : 0;  // VPSHUFB indexes bytes of the 128-bit lane
    const __m256i idx = _mm256_setr_epi8(o, o + 1, o, o + 1, o + 4, o + 5, o + 4, o + 5, o + 8, o + 9, o + 8, o + 9, o + 12,
                                         o + 13, o + 12, o + 13, o, o + 1, o, o + 1, o + 4, o + 5, o + 4, o + 5, o + 8, o + 9,
                                         o + 8, o + 9, o + 12, o + 13, o + 12, o + 13);
    return _mm256_shuffle_epi8(pairs, idx);
}

// Q5_K / Q5_0 / Q5_1, chunk i: bit 2i of qh to bit 4 of the low levels, bit 2i + 1 to the high
template <int i>
inline void add_fifth_bits(__m256i qh, __m256i& lo, __m256i& hi) {
    const __m256i m10 = _mm256_set1_epi8(0x10);
    const __m256i bl = 2 * i <= 4 ? _mm256_slli_epi16(qh, 4 - 2 * i) : _mm256_srli_epi16(qh, 2 * i - 4);
    const __m256i bh = 2 * i + 1 <= 4 ? _mm256_slli_epi16(qh, 3 - 2 * i) : _mm256_srli_epi16(qh, 2 * i - 3);
    lo = _mm256_or_si256(lo, _mm256_and_si256(bl, m10));
    hi = _mm256_or_si256(hi, _mm256_and_si256(bh, m10));
}

// y (8 rows) = v for the first block, y += v after: the float sums live in the output rows, not in
// registers (16 ymm hold the integer sums of up to 4 tokens; the float ones spilled)
inline void accumulate(float* y, int64_t ib, __m256 v) {
    _mm256_storeu_ps(y, ib == 0 ? v : _mm256_add_ps(_mm256_loadu_ps(y), v));
}

// Q4_K and Q5_K: halves H0 .. H0 + H - 1 of one group (8 rows each) . T tokens,
// y[t * ldy + 8 * (H0 + h) + r]. Per sub-block of 32 columns each int16 lane of a row sums 16
// products: 16 x 15 x 128 = 30720 fits for Q4_K; Q5_K (levels to 31) is scaled every two chunks
// (8 products). Then d sc . q - dmin m . sums per block, as the AVX-512 kernel.
template <bool Q5, int H0, int H, int T>
void affine_halves(const uint8_t* g, int64_t nb, const BlockQ8_K* const* a, const int16_t* const* ps, float* y,
                   int64_t ldy) {
    constexpr size_t kBlock = Q5 ? ref::kPackedQ5KBlock : ref::kPackedQ4KBlock;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int64_t ib = 0; ib < nb; ++ib, g += kBlock) {
        __m256i isum[H][T];
        for (int h = 0; h < H; ++h)
            for (int t = 0; t < T; ++t) isum[h][t] = _mm256_setzero_si256();
        if constexpr (H0 == 0)  // the header too (see affine_groups of avx512_packed_kernels.h)
            for (size_t l = 0; l < pq4::qs; l += 64) prefetch_weights(g + kPrefetchBytes + l);
        for (int j = 0; j < 8; ++j) {  // sub-block j: chunks 4j .. 4j + 3
            __m256i p[H][T];
            __m256i qh[H];
            if constexpr (Q5)
                for (int h = 0; h < H; ++h) qh[h] = load(g + ref::packed_q5_k::qh + 64 * j + 32 * (H0 + h));
#if defined(__AVXVNNI__)
            // VPDPBUSD: int32 row sums of the whole sub-block (32 x 31 x 128 at most), low and high
            // nibbles in two chains (its latency) when there is one accumulator per half
            constexpr bool kTwo = H * T <= 2;
            __m256i p2[H][T];
            auto scale_in = [&] {  // isum += sums * sc
                for (int h = 0; h < H; ++h) {
                    const __m256i sc = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(g + pq4::sc + 16 * j + 8 * (H0 + h))));
                    for (int t = 0; t < T; ++t) {
                        const __m256i sum = kTwo ? _mm256_add_epi32(p[h][t], p2[h][t]) : p[h][t];
                        isum[h][t] = _mm256_add_epi32(isum[h][t], _mm256_mullo_epi32(sum, sc));
                    }
                }
            };
#else
            auto scale_in = [&] {  // isum += pairs . (sc, sc); pairs start again
                for (int h = 0; h < H; ++h) {
                    const __m256i sc = spread_u8(g + pq4::sc + 16 * j + 8 * (H0 + h));
                    for (int t = 0; t < T; ++t) isum[h][t] = _mm256_add_epi32(isum[h][t], _mm256_madd_epi16(p[h][t], sc));
                }
            };
#endif
            auto chunk = [&]<int i>() {
                const uint8_t* c = g + pq4::qs + 64 * (4 * j + i);
                if constexpr (H0 == 0) prefetch_weights(c + kPrefetchBytes);
                __m256i lo[H], hi[H];
                for (int h = 0; h < H; ++h) {
                    const __m256i x = load(c + 32 * (H0 + h));
                    lo[h] = _mm256_and_si256(x, m4);
                    hi[h] = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
                    if constexpr (Q5) add_fifth_bits<i>(qh[h], lo[h], hi[h]);
                }
#pragma GCC unroll 4
                for (int t = 0; t < T; ++t) {
                    const int8_t* q = a[t][ib].qs + 32 * j + 4 * i;
                    const __m256i bl = bcast4(q), bh = bcast4(q + 16);
                    for (int h = 0; h < H; ++h) {
#if defined(__AVXVNNI__)
                        const __m256i z = _mm256_setzero_si256();
                        if constexpr (kTwo) {
                            p[h][t] = _mm256_dpbusd_avx_epi32(i == 0 ? z : p[h][t], lo[h], bl);
                            p2[h][t] = _mm256_dpbusd_avx_epi32(i == 0 ? z : p2[h][t], hi[h], bh);
                        } else {
                            p[h][t] = _mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(i == 0 ? z : p[h][t], lo[h], bl), hi[h], bh);
                        }
#else
                        const __m256i v = _mm256_add_epi16(_mm256_maddubs_epi16(lo[h], bl), _mm256_maddubs_epi16(hi[h], bh));
                        if constexpr (i == 0 || (Q5 && i == 2)) p[h][t] = v;
                        else p[h][t] = _mm256_add_epi16(p[h][t], v);
#endif
                    }
                }
#if defined(__AVXVNNI__)
                if constexpr (i == 3) scale_in();
#else
                if constexpr (i == 3 || (Q5 && i == 1)) scale_in();
#endif
            };
            chunk.template operator()<0>();
            chunk.template operator()<1>();
            chunk.template operator()<2>();
            chunk.template operator()<3>();
        }
        for (int h = 0; h < H; ++h) {
            const size_t hb = 16 * (H0 + h);  // this half's 8 rows of the per-row fields
            const __m256 dw = load_f16x8(g + pq4::d + hb), dmw = load_f16x8(g + pq4::dmin + hb);
            __m256i pairs[4];  // the mins, (m_2p, m_2p+1) per row
            for (int q = 0; q < 4; ++q) pairs[q] = _mm256_cvtepu8_epi16(load128(g + pq4::m + 32 * q + hb));
            for (int t = 0; t < T; ++t) {
                const int16_t* s = ps[t] + 8 * ib;
                __m256i mn = _mm256_madd_epi16(pairs[0], bcast4((const int8_t*)s));
                for (int q = 1; q < 4; ++q) mn = _mm256_add_epi32(mn, _mm256_madd_epi16(pairs[q], bcast4((const int8_t*)(s + 2 * q))));
                const __m256 v = _mm256_fmsub_ps(dw, _mm256_cvtepi32_ps(isum[h][t]), _mm256_mul_ps(dmw, _mm256_cvtepi32_ps(mn)));
                accumulate(y + t * ldy + 8 * (H0 + h), ib, _mm256_mul_ps(v, _mm256_set1_ps(a[t][ib].d)));
            }
        }
    }
}

// The types with 16-element sub-blocks (Q6_K, Q3_K, Q2_K): a unit is one sub-block, four operand
// vectors (4 columns each) of unsigned levels per half, and one scale per row. Q6_K's levels
// (0..63) allow two VPMADDUBSW results per int16 sum (4 x 63 x 128 = 32256), so a unit takes two
// VPMADDWD by its scale; Q3_K's (0..7) and Q2_K's (0..3) take all four in one. The levels' offset
// (Q6_K: 32, Q3_K: 4) comes back through the Q8_K block sums per block, Q2_K's mins likewise.
// Their layout traits (K16Traits) are in packed_tiles.h.

// The four operand vectors of one half (h) of unit u
template <K16 K>
inline void k16_unit(const uint8_t* u, int h, __m256i* w) {
    if constexpr (K == K16::q6) {
        const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
        const __m256i qh = load(u + 32 * h), l0 = load(u + 64 + 32 * h), l1 = load(u + 128 + 32 * h);
        // (nibble & 0x0f) | (the matching 2 bits of qh moved to bits 4-5)
        w[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
        w[1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
        w[2] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(qh, m30));
        w[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
    } else {
        const __m256i m3 = _mm256_set1_epi8(3);
        const __m256i q = load(u + 32 * h);
        w[0] = _mm256_and_si256(q, m3);
        w[1] = _mm256_and_si256(_mm256_srli_epi16(q, 2), m3);
        w[2] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m3);
        w[3] = _mm256_and_si256(_mm256_srli_epi16(q, 6), m3);
        if constexpr (K == K16::q3) {  // | 4 where the high bit is set: mask k's 32 bits of this half, a bit per byte
            const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3,
                                                    3, 3, 3, 3, 3, 3);
            const __m256i bit = _mm256_set1_epi64x(0x8040201008040201), four = _mm256_set1_epi8(4);
            for (int k = 0; k < 4; ++k) {
                int32_t m;
                std::memcpy(&m, u + 64 + 8 * k + 4 * h, 4);
                const __m256i b = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32(m), spread), bit);
                w[k] = _mm256_or_si256(w[k], _mm256_and_si256(_mm256_cmpeq_epi8(b, bit), four));
            }
        }
    }
}

// Sub-block pair j's scales (or Q2_K's mins) of a half's 8 rows as int16 pairs (int8 or uint8
// stored [row][2])
template <bool kSigned>
inline __m256i pairs16(const uint8_t* p) {
    return kSigned ? _mm256_cvtepi8_epi16(load128(p)) : _mm256_cvtepu8_epi16(load128(p));
}

template <K16 K, int H0, int H, int T>
void k16_halves(const uint8_t* g, int64_t nb, const BlockQ8_K* const* a, float* y, int64_t ldy) {
    using Tr = K16Traits<K>;
    constexpr int kLines = K == K16::q6 ? 3 : K == K16::q3 ? 2 : 1;  // 64-byte lines per unit (Q3_K: 1.5)
    for (int64_t ib = 0; ib < nb; ++ib, g += Tr::kBlock) {
#if defined(__AVXVNNI__)
        // VPDPBUSD: a unit's int32 row sums, scaled in float per sub-block (as avx512_packed_kernels.h)
        __m256 fsum[H][T];
        for (int h = 0; h < H; ++h)
            for (int t = 0; t < T; ++t) fsum[h][t] = _mm256_setzero_ps();
#else
        __m256i isum[H][T];
        for (int h = 0; h < H; ++h)
            for (int t = 0; t < T; ++t) isum[h][t] = _mm256_setzero_si256();
#endif
#pragma GCC unroll 2
        for (int s = 0; s < 16; ++s) {
            const uint8_t* u = g + Tr::unit(s);
            if constexpr (H0 == 0)
                for (int l = 0; l < kLines; ++l) prefetch_weights(u + kPrefetchBytes + 64 * l);
#if defined(__AVXVNNI__)
            __m256i w[H][4];
            __m256 sc[H];
            for (int h = 0; h < H; ++h) {
                k16_unit<K>(u, H0 + h, w[h]);
                const __m256i pair = pairs16<Tr::kSignedSc>(g + Tr::kSc + 32 * (s / 2) + 16 * (H0 + h));
                sc[h] = _mm256_cvtepi32_ps(s % 2 == 0 ? _mm256_srai_epi32(_mm256_slli_epi32(pair, 16), 16) : _mm256_srai_epi32(pair, 16));
            }
#pragma GCC unroll 4
            for (int t = 0; t < T; ++t) {
                const int8_t* q = a[t][ib].qs + 16 * s;
                const __m256i b0 = bcast4(q + Tr::kAct[0]), b1 = bcast4(q + Tr::kAct[1]), b2 = bcast4(q + Tr::kAct[2]),
                              b3 = bcast4(q + Tr::kAct[3]);
                for (int h = 0; h < H; ++h) {
                    __m256i v = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), w[h][0], b0);
                    v = _mm256_dpbusd_avx_epi32(v, w[h][1], b1);
                    v = _mm256_dpbusd_avx_epi32(v, w[h][2], b2);
                    v = _mm256_dpbusd_avx_epi32(v, w[h][3], b3);
                    fsum[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), sc[h], fsum[h][t]);
                }
            }
        }
#else
            __m256i w[H][4], sc[H];
            for (int h = 0; h < H; ++h) {
                k16_unit<K>(u, H0 + h, w[h]);
                const __m256i pair = pairs16<Tr::kSignedSc>(g + Tr::kSc + 32 * (s / 2) + 16 * (H0 + h));
                sc[h] = s % 2 == 0 ? dup_half<false>(pair) : dup_half<true>(pair);
            }
#pragma GCC unroll 4
            for (int t = 0; t < T; ++t) {
                const int8_t* q = a[t][ib].qs + 16 * s;
                const __m256i b0 = bcast4(q + Tr::kAct[0]), b1 = bcast4(q + Tr::kAct[1]), b2 = bcast4(q + Tr::kAct[2]),
                              b3 = bcast4(q + Tr::kAct[3]);
                for (int h = 0; h < H; ++h) {
                    const __m256i p01 = _mm256_add_epi16(_mm256_maddubs_epi16(w[h][0], b0), _mm256_maddubs_epi16(w[h][1], b1));
                    const __m256i p23 = _mm256_add_epi16(_mm256_maddubs_epi16(w[h][2], b2), _mm256_maddubs_epi16(w[h][3], b3));
                    const __m256i v = K == K16::q6 ? _mm256_add_epi32(_mm256_madd_epi16(p01, sc[h]), _mm256_madd_epi16(p23, sc[h]))
                                                 : _mm256_madd_epi16(_mm256_add_epi16(p01, p23), sc[h]);
                    isum[h][t] = _mm256_add_epi32(isum[h][t], v);
                }
            }
        }
#endif
        for (int h = 0; h < H; ++h) {
            const size_t hb = 16 * (H0 + h);  // this half's 8 rows of the per-row fields
            const __m256 dw = load_f16x8(g + Tr::kD + hb);
            for (int t = 0; t < T; ++t) {
                const int8_t* bs = (const int8_t*)a[t][ib].bsums;
                if constexpr (K == K16::q2) {  // d sc . q - dmin . sum_j m_j bsums_j
                    __m256i mn = _mm256_setzero_si256();
                    for (int j = 0; j < 8; ++j)
                        mn = _mm256_add_epi32(mn, _mm256_madd_epi16(pairs16<false>(g + pq2::m + 32 * j + hb), bcast4(bs + 4 * j)));
                    const __m256 dmw = load_f16x8(g + pq2::dmin + hb);
#if defined(__AVXVNNI__)
                    const __m256 v = _mm256_fmsub_ps(dw, fsum[h][t], _mm256_mul_ps(dmw, _mm256_cvtepi32_ps(mn)));
#else
                    const __m256 v = _mm256_fmsub_ps(dw, _mm256_cvtepi32_ps(isum[h][t]), _mm256_mul_ps(dmw, _mm256_cvtepi32_ps(mn)));
#endif
                    accumulate(y + t * ldy + 8 * (H0 + h), ib, _mm256_mul_ps(v, _mm256_set1_ps(a[t][ib].d)));
                } else {  // the levels' offset: sum_j sc_j bsums_j << shift
                    __m256i corr = _mm256_setzero_si256();
                    for (int j = 0; j < 8; ++j)
                        corr = _mm256_add_epi32(corr, _mm256_madd_epi16(pairs16<true>(g + Tr::kSc + 32 * j + hb), bcast4(bs + 4 * j)));
#if defined(__AVXVNNI__)
                    const __m256 v = _mm256_sub_ps(fsum[h][t], _mm256_cvtepi32_ps(_mm256_slli_epi32(corr, Tr::kOffsetShift)));
#else
                    const __m256 v = _mm256_cvtepi32_ps(_mm256_sub_epi32(isum[h][t], _mm256_slli_epi32(corr, Tr::kOffsetShift)));
#endif
                    accumulate(y + t * ldy + 8 * (H0 + h), ib, _mm256_mul_ps(v, _mm256_mul_ps(dw, _mm256_set1_ps(a[t][ib].d))));
                }
            }
        }
    }
}

// The IQ4 levels (-127 .. 113, none zero) do not fit VPMADDUBSW's unsigned operand, nor do
// levels + 128 (two products of 241 x 128 overflow its int16 sums): the magnitudes go unsigned
// and the signs move to the activations (VPSIGNB), each product's pair scaled into int32 at once.
struct Iq4Lut {
    __m256i mag, lev;  // |level|, level; the 16 in each 128-bit lane
    Iq4Lut() {
        alignas(16) int8_t m[16];
        for (int i = 0; i < 16; ++i) m[i] = (int8_t)(ref::kIq4nlValues[i] < 0 ? -ref::kIq4nlValues[i] : ref::kIq4nlValues[i]);
        mag = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i*)m));
        lev = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)ref::kIq4nlValues));
    }
};
// sum of the products of 4-bit indices idx's levels (magnitudes mag, levels lev) and the
// activations b, in int16 pairs per row
inline __m256i iq4_dot(__m256i mag, __m256i lev, __m256i b) { return _mm256_maddubs_epi16(mag, _mm256_sign_epi8(b, lev)); }

// 8 signed bytes (one per row) as (v, v) int16 pairs, row r in 32-bit lane r
inline __m256i spread_i8(const uint8_t* p) {
    int64_t v;
    std::memcpy(&v, p, 8);
    const __m256i x = _mm256_cvtepu16_epi32(_mm_cvtepi8_epi16(_mm_cvtsi64_si128(v)));
    return _mm256_or_si256(x, _mm256_slli_epi32(x, 16));
}

// IQ4_XS: halves of one group . T tokens; y = d (sc - 32) . levels . a per block
template <int H0, int H, int T>
void iq4xs_halves(const uint8_t* g, int64_t nb, const BlockQ8_K* const* a, float* y, int64_t ldy) {
    const Iq4Lut lut;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc[H][T];
    for (int h = 0; h < H; ++h)
        for (int t = 0; t < T; ++t) acc[h][t] = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib, g += ref::kPackedIQ4XSBlock) {
        __m256i isum[H][T];
        for (int h = 0; h < H; ++h)
            for (int t = 0; t < T; ++t) isum[h][t] = _mm256_setzero_si256();
        for (int j = 0; j < 8; ++j) {
            __m256i sc[H];
#if defined(__AVXVNNI__)  // VPDPBUSD: int32 row sums of the sub-block (32 x 127 x 128), scaled once
            __m256i sub[H][T];
            for (int h = 0; h < H; ++h) {
                sc[h] = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(g + piq4::sc + 16 * j + 8 * (H0 + h))));
                for (int t = 0; t < T; ++t) sub[h][t] = _mm256_setzero_si256();
            }
#else
            for (int h = 0; h < H; ++h) sc[h] = spread_i8(g + piq4::sc + 16 * j + 8 * (H0 + h));
#endif
#pragma GCC unroll 4
            for (int i = 0; i < 4; ++i) {
                const uint8_t* c = g + piq4::qs + 64 * (4 * j + i);
                if constexpr (H0 == 0) prefetch_weights(c + kPrefetchBytes);
                __m256i ml[H], ll[H], mh[H], lh[H];
                for (int h = 0; h < H; ++h) {
                    const __m256i x = load(c + 32 * (H0 + h));
                    const __m256i lo = _mm256_and_si256(x, m4), hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
                    ml[h] = _mm256_shuffle_epi8(lut.mag, lo);
                    ll[h] = _mm256_shuffle_epi8(lut.lev, lo);
                    mh[h] = _mm256_shuffle_epi8(lut.mag, hi);
                    lh[h] = _mm256_shuffle_epi8(lut.lev, hi);
                }
                for (int t = 0; t < T; ++t) {
                    const int8_t* q = a[t][ib].qs + 32 * j + 4 * i;
                    const __m256i bl = bcast4(q), bh = bcast4(q + 16);
                    for (int h = 0; h < H; ++h) {
#if defined(__AVXVNNI__)
                        sub[h][t] = _mm256_dpbusd_avx_epi32(sub[h][t], ml[h], _mm256_sign_epi8(bl, ll[h]));
                        sub[h][t] = _mm256_dpbusd_avx_epi32(sub[h][t], mh[h], _mm256_sign_epi8(bh, lh[h]));
#else
                        const __m256i v = _mm256_add_epi32(_mm256_madd_epi16(iq4_dot(ml[h], ll[h], bl), sc[h]),
                                                           _mm256_madd_epi16(iq4_dot(mh[h], lh[h], bh), sc[h]));
                        isum[h][t] = _mm256_add_epi32(isum[h][t], v);
#endif
                    }
                }
            }
#if defined(__AVXVNNI__)
            for (int h = 0; h < H; ++h)
                for (int t = 0; t < T; ++t) isum[h][t] = _mm256_add_epi32(isum[h][t], _mm256_mullo_epi32(sub[h][t], sc[h]));
#endif
        }
        for (int h = 0; h < H; ++h) {
            const __m256 dw = load_f16x8(g + piq4::d + 16 * (H0 + h));
            for (int t = 0; t < T; ++t)
                acc[h][t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_cvtepi32_ps(isum[h][t])), _mm256_set1_ps(a[t][ib].d), acc[h][t]);
        }
    }
    for (int h = 0; h < H; ++h)
        for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + t * ldy + 8 * (H0 + h), acc[h][t]);
}

// The 32-element block types with 4-bit levels (Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL), against Q8_0
// activations: per block and row an exact int32 sum (levels as stored; IQ4_NL's through
// iq4_dot), the offset (Q4_0: 8, Q5_0: 16) taken back through the activation block's sum; then
// y += (d * da) * sum [+ m * (da * asum)] per block, as the AVX-512 kernel.
template <DType K, int H0, int H, int T>
void q0_halves(const uint8_t* g, int64_t nb, const ref::BlockQ8_0* const* a, const Q0Act* const* info, float* y,
               int64_t ldy) {
    using C = ref::Q0Const<K>;
    constexpr bool kQ5 = C::kQh != 0, kM = C::kM != 0, kLut = K == DType::IQ4_NL;
    constexpr int kOffset = K == DType::Q4_0 ? 8 : K == DType::Q5_0 ? 16 : 0;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    [[maybe_unused]] const __m256i ones = _mm256_set1_epi16(1);  // (without AVX-VNNI)
    const Iq4Lut lut;
    __m256 acc[H][T];
    for (int h = 0; h < H; ++h)
        for (int t = 0; t < T; ++t) acc[h][t] = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib, g += C::kBytes) {
        if constexpr (H0 == 0)  // every line of the block (4.5 to 6 lines)
            for (size_t l = 0; l < C::kBytes; l += 64) prefetch_weights(g + kPrefetchBytes + l);
        __m256i sum[H][T], qh[H];
#if !defined(__AVXVNNI__)
        __m256i p[H][T];
#endif
        if constexpr (kQ5)
            for (int h = 0; h < H; ++h) qh[h] = load(g + C::kQh + 32 * (H0 + h));
        auto chunk = [&]<int i>() {
            __m256i lo[H], hi[H], ll[H], lh[H];
            for (int h = 0; h < H; ++h) {
                const __m256i x = load(g + C::kQs + 64 * i + 32 * (H0 + h));
                lo[h] = _mm256_and_si256(x, m4);
                hi[h] = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
                if constexpr (kQ5) add_fifth_bits<i>(qh[h], lo[h], hi[h]);
                if constexpr (kLut) {
                    ll[h] = _mm256_shuffle_epi8(lut.lev, lo[h]);
                    lh[h] = _mm256_shuffle_epi8(lut.lev, hi[h]);
                    lo[h] = _mm256_shuffle_epi8(lut.mag, lo[h]);
                    hi[h] = _mm256_shuffle_epi8(lut.mag, hi[h]);
                }
            }
            for (int t = 0; t < T; ++t) {
                const int8_t* q = a[t][ib].qs + 4 * i;
                const __m256i bl = bcast4(q), bh = bcast4(q + 16);
                for (int h = 0; h < H; ++h) {
#if defined(__AVXVNNI__)
                    // int32 row sums by VPDPBUSD (IQ4_NL: magnitudes against the signed activations)
                    __m256i v = i == 0 ? _mm256_setzero_si256() : sum[h][t];
                    if constexpr (kLut) {
                        v = _mm256_dpbusd_avx_epi32(v, lo[h], _mm256_sign_epi8(bl, ll[h]));
                        sum[h][t] = _mm256_dpbusd_avx_epi32(v, hi[h], _mm256_sign_epi8(bh, lh[h]));
                    } else {
                        sum[h][t] = _mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(v, lo[h], bl), hi[h], bh);
                    }
#else
                    if constexpr (kLut) {  // int16 pairs up to 2 x 127 x 128: into int32 at once
                        const __m256i v = _mm256_add_epi32(_mm256_madd_epi16(iq4_dot(lo[h], ll[h], bl), ones),
                                                           _mm256_madd_epi16(iq4_dot(hi[h], lh[h], bh), ones));
                        if constexpr (i == 0) sum[h][t] = v;
                        else sum[h][t] = _mm256_add_epi32(sum[h][t], v);
                    } else {  // int16: 16 products of 15 x 128 (4-bit), or 8 of 31 x 128 (5-bit) per pass
                        const __m256i v = _mm256_add_epi16(_mm256_maddubs_epi16(lo[h], bl), _mm256_maddubs_epi16(hi[h], bh));
                        if constexpr (i == 0 || (kQ5 && i == 2)) p[h][t] = v;
                        else p[h][t] = _mm256_add_epi16(p[h][t], v);
                        if constexpr (kQ5 && i == 1) sum[h][t] = _mm256_madd_epi16(p[h][t], ones);
                        if constexpr (i == 3) {
                            const __m256i s32 = _mm256_madd_epi16(p[h][t], ones);
                            sum[h][t] = kQ5 ? _mm256_add_epi32(sum[h][t], s32) : s32;
                        }
                    }
#endif
                }
            }
        };
        chunk.template operator()<0>();
        chunk.template operator()<1>();
        chunk.template operator()<2>();
        chunk.template operator()<3>();
        for (int h = 0; h < H; ++h) {
            const __m256 dw = load_f16x8(g + 16 * (H0 + h));
            __m256 dm = _mm256_setzero_ps();
            if constexpr (kM) dm = load_f16x8(g + C::kM + 16 * (H0 + h));
            for (int t = 0; t < T; ++t) {
                const Q0Act ai = info[t][ib];
                __m256i v = sum[h][t];
                if constexpr (kOffset != 0) v = _mm256_sub_epi32(v, _mm256_set1_epi32(kOffset * ai.sum));
                const __m256 da = _mm256_set1_ps(ai.d);
                acc[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_mul_ps(dw, da), acc[h][t]);
                if constexpr (kM) acc[h][t] = _mm256_fmadd_ps(dm, _mm256_mul_ps(da, _mm256_set1_ps((float)ai.sum)), acc[h][t]);
            }
        }
    }
    for (int h = 0; h < H; ++h)
        for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + t * ldy + 8 * (H0 + h), acc[h][t]);
}

// Q8_0, bit for bit what the AVX2 GEMV (avx2.cpp's dot_q8_0, llama.cpp's AVX2 dot) gives: per row
// 8 float lanes, lane i the sum over blocks of (d_w d_a) x the exact 4-element products of chunk
// i (|w| by a with w's sign, as the GEMV), added at the end as ((0 + 4) + (2 + 6)) + ((1 + 5) +
// (3 + 7)). Routing near-ties make a model's output follow the last bit of these sums. One half
// (8 rows x 8 lanes in registers) and one token at a time.
template <int H0>
void q8_0_half(const uint8_t* g, int64_t nb, const ref::BlockQ8_0* a, float* y) {
    using C = ref::Q0Const<DType::Q8_0>;
#if !defined(__AVXVNNI__)
    const __m256i ones = _mm256_set1_epi16(1);
#endif
    __m256 lane[8];
    for (int i = 0; i < 8; ++i) lane[i] = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib, g += C::kBytes) {
        if constexpr (H0 == 0)
            for (size_t l = 0; l < C::kBytes; l += 64) prefetch_weights(g + kPrefetchBytes + l);
        const __m256 dd = _mm256_mul_ps(load_f16x8(g + 16 * H0), _mm256_set1_ps(_cvtsh_ss(a[ib].d)));
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) {
            const __m256i x = load(g + C::kQs + 64 * i + 32 * H0);
            const __m256i u = _mm256_sign_epi8(x, x), b = _mm256_sign_epi8(bcast4(a[ib].qs + 4 * i), x);
#if defined(__AVXVNNI__)  // the same int32 sums (VPMADDUBSW's pairs cannot saturate: 2 x 128 x 127)
            const __m256i s32 = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, b);
#else
            const __m256i s32 = _mm256_madd_epi16(_mm256_maddubs_epi16(u, b), ones);
#endif
            lane[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32), dd, lane[i]);
        }
    }
    _mm256_storeu_ps(y + 8 * H0, _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(lane[0], lane[4]), _mm256_add_ps(lane[2], lane[6])),
                                               _mm256_add_ps(_mm256_add_ps(lane[1], lane[5]), _mm256_add_ps(lane[3], lane[7]))));
}

// One group . T tokens: both halves in one pass for up to kJoint tokens, else a half at a time.
template <class K, int T>
void halves_tile(const uint8_t* g, size_t, int64_t nb, const void* const* acts, const void* aux, float* y, int64_t ldy) {
    if constexpr (T <= K::kJoint) {
        K::template run<0, 2, T>(g, nb, acts, aux, y, ldy);
    } else {
        K::template run<0, 1, T>(g, nb, acts, aux, y, ldy);
        K::template run<1, 1, T>(g, nb, acts, aux, y, ldy);
    }
}

template <bool Q5>
struct AffineK {
    static constexpr int kJoint = 1;
    template <int H0, int H, int T>
    static void run(const uint8_t* g, int64_t nb, const void* const* acts, const void* aux, float* y, int64_t ldy) {
        const BlockQ8_K* a[T];
        const int16_t* ps[T];
        for (int t = 0; t < T; ++t) {
            a[t] = static_cast<const BlockQ8_K*>(acts[t]);
            ps[t] = static_cast<const int16_t*>(aux) + t * nb * 8;
        }
        affine_halves<Q5, H0, H, T>(g, nb, a, ps, y, ldy);
    }
};

template <K16 K>
struct K16Kernel {
    static constexpr int kJoint = 1;
    template <int H0, int H, int T>
    static void run(const uint8_t* g, int64_t nb, const void* const* acts, const void*, float* y, int64_t ldy) {
        const BlockQ8_K* a[T];
        for (int t = 0; t < T; ++t) a[t] = static_cast<const BlockQ8_K*>(acts[t]);
        k16_halves<K, H0, H, T>(g, nb, a, y, ldy);
    }
};

struct IQ4XSKernel {
    static constexpr int kJoint = 1;
    template <int H0, int H, int T>
    static void run(const uint8_t* g, int64_t nb, const void* const* acts, const void*, float* y, int64_t ldy) {
        const BlockQ8_K* a[T];
        for (int t = 0; t < T; ++t) a[t] = static_cast<const BlockQ8_K*>(acts[t]);
        iq4xs_halves<H0, H, T>(g, nb, a, y, ldy);
    }
};

template <DType K>
struct Q0Kernel {
    static constexpr int kJoint = 1;
    template <int H0, int H, int T>
    static void run(const uint8_t* g, int64_t nb, const void* const* acts, const void* aux, float* y, int64_t ldy) {
        const ref::BlockQ8_0* a[T];
        const Q0Act* in[T];
        for (int t = 0; t < T; ++t) {
            a[t] = static_cast<const ref::BlockQ8_0*>(acts[t]);
            in[t] = static_cast<const Q0Act*>(aux) + t * nb;
        }
        q0_halves<K, H0, H, T>(g, nb, a, in, y, ldy);
    }
};

struct Q8Kernel {
    static constexpr int kJoint = 0;
    template <int H0, int H, int T>
    static void run(const uint8_t* g, int64_t nb, const void* const* acts, const void*, float* y, int64_t) {
        static_assert(H == 1 && T == 1, "a half and a token at a time");
        q8_0_half<H0>(g, nb, static_cast<const ref::BlockQ8_0*>(acts[0]), y);
    }
};

template <class K>
struct Tiles {
    template <int G, int T>
    struct F {
        static_assert(G == 1, "one group at a time");
        static constexpr TileFn fn = halves_tile<K, T>;
    };
};

constexpr int kMaxTile = 4;  // tokens per tile
template <class K>
constexpr auto kTiles = tiles<Tiles<K>::template F, 1>(std::make_integer_sequence<int, kMaxTile>{});

template <DType kType>
void packed_gemm_affine(const uint8_t* w, int64_t n_groups, int64_t n, const void* const* acts, int64_t n_tok, float* y,
                        int64_t ldy) {
    const int64_t nb = n / kQK_K;
    thread_local std::vector<int16_t> psum;
    pair_sums(acts, n_tok, nb, psum);
    using K = AffineK<kType == DType::Q5_K>;
    run_tiles({kTiles<K>.data(), kMaxTile, nullptr, 0}, ref::packed_group_bytes(kType, n), w, n_groups, nb, acts, n_tok,
              psum.data(), (size_t)nb * 8 * sizeof(int16_t), y, ldy);
}

template <DType kType>
void packed_gemm_k16(const uint8_t* w, int64_t n_groups, int64_t n, const void* const* acts, int64_t n_tok, float* y,
                     int64_t ldy) {
    using K = K16Kernel<kType == DType::Q6_K ? K16::q6 : kType == DType::Q3_K ? K16::q3 : K16::q2>;
    run_tiles({kTiles<K>.data(), kMaxTile, nullptr, 0}, ref::packed_group_bytes(kType, n), w, n_groups, n / kQK_K, acts,
              n_tok, nullptr, 0, y, ldy);
}

void packed_gemm_iq4_xs(const uint8_t* w, int64_t n_groups, int64_t n, const void* const* acts, int64_t n_tok, float* y,
                        int64_t ldy) {
    run_tiles({kTiles<IQ4XSKernel>.data(), kMaxTile, nullptr, 0}, ref::packed_group_bytes(DType::IQ4_XS, n), w, n_groups,
              n / kQK_K, acts, n_tok, nullptr, 0, y, ldy);
}

template <DType K>
void packed_gemm_q0(const uint8_t* w, int64_t n_groups, int64_t n, const void* const* acts, int64_t n_tok, float* y,
                    int64_t ldy) {
    const int64_t nb = n / ref::kQK;
    thread_local std::vector<Q0Act> info;
    q0_act_info(acts, n_tok, nb, info);
    run_tiles({kTiles<Q0Kernel<K>>.data(), kMaxTile, nullptr, 0}, ref::packed_group_bytes(K, n), w, n_groups, nb, acts,
              n_tok, info.data(), (size_t)nb * sizeof(Q0Act), y, ldy);
}

// Q8_0: tiles of one token (each rereads the group from L1/L2)
constexpr auto kQ8Tiles = tiles<Tiles<Q8Kernel>::template F, 1>(std::make_integer_sequence<int, 1>{});

void packed_gemm_q8_0(const uint8_t* w, int64_t n_groups, int64_t n, const void* const* acts, int64_t n_tok, float* y,
                      int64_t ldy) {
    run_tiles({kQ8Tiles.data(), 1, nullptr, 0}, ref::packed_group_bytes(DType::Q8_0, n), w, n_groups, n / ref::kQK, acts,
              n_tok, nullptr, 0, y, ldy);
}

void fill_avx2_packed_kernels(KernelTable& t) {
    t.packed_gemm[(int)DType::Q4_K] = packed_gemm_affine<DType::Q4_K>;
    t.packed_gemm[(int)DType::Q5_K] = packed_gemm_affine<DType::Q5_K>;
    t.packed_gemm[(int)DType::Q6_K] = packed_gemm_k16<DType::Q6_K>;
    t.packed_gemm[(int)DType::Q3_K] = packed_gemm_k16<DType::Q3_K>;
    t.packed_gemm[(int)DType::Q2_K] = packed_gemm_k16<DType::Q2_K>;
    t.packed_gemm[(int)DType::IQ4_XS] = packed_gemm_iq4_xs;
    t.packed_gemm[(int)DType::Q4_0] = packed_gemm_q0<DType::Q4_0>;
    t.packed_gemm[(int)DType::Q4_1] = packed_gemm_q0<DType::Q4_1>;
    t.packed_gemm[(int)DType::Q5_0] = packed_gemm_q0<DType::Q5_0>;
    t.packed_gemm[(int)DType::Q5_1] = packed_gemm_q0<DType::Q5_1>;
    t.packed_gemm[(int)DType::IQ4_NL] = packed_gemm_q0<DType::IQ4_NL>;
    t.packed_gemm[(int)DType::Q8_0] = packed_gemm_q8_0;
}

}  // namespace
}  // namespace tandem::cpu
