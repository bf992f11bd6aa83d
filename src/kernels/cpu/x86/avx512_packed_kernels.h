// AVX-512 VNNI kernels over the packed (16-row interleaved) layouts of kernels/reference/packed.h,
// for one token (decode) and many (prefill) alike. Compiled twice with the avx512.cpp flags:
// avx512_packed.cpp as they are, avx512_vbmi_packed.cpp with AVX512-VBMI too (__AVX512VBMI__: Ice
// Lake and later Intel cores, Zen 4 and 5), where shift_bytes moves the bits of the 16-element
// types' unpacking by VPMULTISHIFTQB on port 5 instead of 16-bit shifts on port 0, the port every
// VPDPBUSD needs.
// Everything here has internal linkage.
//
// One 64-byte load of a packed chunk gives 4 columns of 16 rows twice (low and high nibbles);
// VPDPBUSD multiplies each by the token's 4 activations of those columns, broadcast, into 16
// int32 row sums: 64 multiply-adds per instruction with no per-row shuffles. Per sub-block the
// sums are scaled by the 16 rows' integer scales: Q4_K, Q5_K, IQ4_XS in int32 (VPMULLD, exact),
// the 16-element types in float (an exact int-to-float conversion + FMA: VPMULLD's two uops
// compete with VPDPBUSD for its port); per super-block the Q4_K mins come from the activation block sums (VPDPWSSD on (min,
// min) x (sum, sum) pairs) and the float scales are applied once. Only the float operations'
// order and rounding differ from the reference. Several tokens share each unpacked chunk, and two groups each broadcast activation.
// The 32-element block types (Q4_0 ... Q8_0, IQ4_NL) run the same way per block of 32, their
// activations' block sums taking the levels' offsets back.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
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

// Software prefetch this far ahead in the group (prefetch_weights: into L2 on Intel, L1 on AMD).
// Decode streams the weights from DRAM once (one core on Zen 5, into L1: Q4_K 27 -> 36 GB/s, Q6_K
// 25 -> 33 GB/s; 1-4 KB ahead helped less, 12 KB hurt; one core of the Xeon with AMX, Qwen3-235B's
// expert matrices from DRAM: into L1 10.7 / 10.1 GiB/s (Q4_K / Q6_K), into L2 11.7 / 10.9 at 4,
// 8 and 16 KB ahead alike, non-temporal 6.3); prefill reads each group from DRAM before reusing it
// per tile (expert stage 0.86 -> 0.70 ms per prompt token with the prefetch on for every tile size).
constexpr int kPrefetchBytes = 8192;
constexpr int kL1PrefetchBytes = 1024;  // Q6_K units, when the far prefetch fills L2

// How far ahead of the byte at `offset` of its group a tile of G groups (gb bytes each, read in
// step) prefetches: kPrefetchBytes, but what lies past the group's end is read by the next tile,
// G groups on, not by the group after it (which this tile is reading already): each group end
// crossed adds (G - 1) groups (more than one only for groups smaller than kPrefetchBytes)
template <int G>
inline size_t prefetch_ahead(size_t offset, size_t gb) {
    if constexpr (G == 1) {
        return kPrefetchBytes;
    } else {
        const size_t to = offset + kPrefetchBytes;
        if (gb >= kPrefetchBytes) return to >= gb ? kPrefetchBytes + (G - 1) * gb : kPrefetchBytes;
        return kPrefetchBytes + to / gb * (G - 1) * gb;
    }
}

inline __m512i bcast4(const int8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}
inline __m512i load(const uint8_t* p) { return _mm512_loadu_si512((const void*)p); }

// Every byte of v with its bits moved S places towards bit 0 (S < 0: towards bit 7); the bits that
// come in at the other end are unspecified: callers mask them off. With VBMI one VPMULTISHIFTQB
// (byte i of each qword takes the 8 bits from bit 8i + S on, wrapping round the qword) on port 5,
// else a 16-bit shift on port 0. Only the 16-element types' unpacking takes it (one core, in
// cache, one token: Q6_K 30 -> 34 GB/s, Q3_K 19 -> 21, Q2_K 19 -> 23; 4-32 tokens 4-8% faster): the
// 32-element types' unpacking already keeps port 5 busy (VPTERNLOG, VPSHUFB), and there it cost
// 2-8% (Q5_K, IQ4_XS).
template <int S>
inline __m512i shift_bytes(__m512i v) {
    static_assert(S > -8 && S < 8);
    if constexpr (S == 0) {
        return v;
    } else {
#if defined(__AVX512VBMI__)
        constexpr auto ctrl = [] {
            uint64_t c = 0;
            for (int i = 0; i < 8; ++i) c |= (uint64_t)((8 * i + S) & 63) << (8 * i);
            return c;
        }();
        return _mm512_multishift_epi64_epi8(_mm512_set1_epi64((long long)ctrl), v);
#else
        if constexpr (S > 0) return _mm512_srli_epi16(v, S);
        else return _mm512_slli_epi16(v, -S);
#endif
    }
}

// Moves bit `b` of every byte to bit 4 (the fifth bit of a Q5_K level); other bits are masked later.
template <int b>
inline __m512i bit_to_4(__m512i v) {
    if constexpr (b < 4) return _mm512_slli_epi16(v, 4 - b);
    else if constexpr (b > 4) return _mm512_srli_epi16(v, b - 4);
    else return v;
}

// A packed chunk of 4-bit values (x) as the levels of its low and high nibbles: Q5 ors in the
// fifth bits (bits 2i and 2i + 1 of qh), Lut looks the nibbles up in `levels` (IQ4: values + 128)
template <int i, bool Q5, bool Lut>
inline void unpack4(__m512i x, __m512i qh, __m512i levels, __m512i& lo, __m512i& hi) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m10 = _mm512_set1_epi8(0x10);
    lo = _mm512_and_si512(x, m4);
    hi = _mm512_and_si512(_mm512_srli_epi16(x, 4), m4);
    if constexpr (Q5) {  // | the fifth bits: (A | (B & C)) = 0xF8
        lo = _mm512_ternarylogic_epi32(lo, bit_to_4<2 * i>(qh), m10, 0xF8);
        hi = _mm512_ternarylogic_epi32(hi, bit_to_4<2 * i + 1>(qh), m10, 0xF8);
    }
    if constexpr (Lut) {
        lo = _mm512_shuffle_epi8(levels, lo);
        hi = _mm512_shuffle_epi8(levels, hi);
    }
}

// One unpacked 4-bit chunk of G groups against T tokens: q[t] points at the token's 4 activations
// of the low nibbles' columns, the high nibbles' are 16 further. Low and high go to s0 and, with
// two chains (one group: VPDPBUSD's latency), s1; else both to s0.
template <int G, int T, bool kTwoChains>
inline void dot_chunk(const __m512i* lo, const __m512i* hi, const int8_t* const* q, __m512i (&s0)[G][T],
                      __m512i (&s1)[G][T]) {
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
        const __m512i bl = bcast4(q[t]), bh = bcast4(q[t] + 16);
        for (int h = 0; h < G; ++h) {
            s0[h][t] = _mm512_dpbusd_epi32(s0[h][t], lo[h], bl);
            __m512i& dst = kTwoChains ? s1[h][t] : s0[h][t];
            dst = _mm512_dpbusd_epi32(dst, hi[h], bh);
        }
    }
}

// The types with 32-element sub-blocks whose packed chunks hold 4-bit values: Q4_K, Q5_K (+ a
// fifth bit) and IQ4_XS (indices into its 16 levels, looked up with VPSHUFB as levels + 128).
enum class K32 { q4, q5, iq4 };

template <K32 K>
struct K32Traits {  // Q4_K / Q5_K
    static constexpr size_t kBlock = K == K32::q5 ? ref::kPackedQ5KBlock : ref::kPackedQ4KBlock;
    static constexpr size_t kD = pq4::d, kSc = pq4::sc, kPairs = pq4::m, kQs = pq4::qs;
};
template <>
struct K32Traits<K32::iq4> {
    static constexpr size_t kBlock = ref::kPackedIQ4XSBlock;
    static constexpr size_t kD = piq4::d, kSc = piq4::sc, kPairs = piq4::scp, kQs = piq4::qs;
};

// G groups of 16 rows (Q4_K, Q5_K or IQ4_XS), gb bytes apart, . T tokens: y[t * ldy + 16h + r].
// With one group the low and high nibbles accumulate in two chains per token (VPDPBUSD's
// latency); with two, each broadcast activation feeds both groups and one chain per (group,
// token) is enough. Q4_K/Q5_K: d sc . q - dmin m . sums; IQ4_XS: d sc . (v + 128) - 128 d sc . sums.
template <K32 K, int G, int T>
void affine_groups(const uint8_t* g, size_t gb, int64_t nb, const BlockQ8_K* const* a, const int16_t* const* ps,
                   float* y, int64_t ldy) {
    using Tr = K32Traits<K>;
    constexpr bool Q5 = K == K32::q5;
    constexpr size_t kBlock = Tr::kBlock;
    constexpr bool kTwoChains = G == 1;
    __m512i levels = _mm512_setzero_si512();  // IQ4_XS: its 16 levels + 128 in every 128-bit lane
    if constexpr (K == K32::iq4) {
        alignas(16) uint8_t u[16];
        for (int i = 0; i < 16; ++i) u[i] = (uint8_t)(ref::kIq4nlValues[i] + 128);
        levels = _mm512_broadcast_i32x4(_mm_load_si128((const __m128i*)u));
    }
    __m512 acc[G][T];
    for (int h = 0; h < G; ++h)
        for (int t = 0; t < T; ++t) acc[h][t] = _mm512_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib, g += kBlock) {
        __m512i isum[G][T];
        for (int h = 0; h < G; ++h)
            for (int t = 0; t < T; ++t) isum[h][t] = _mm512_setzero_si512();
        // the header (scales, mins: 320 of Q4_K's 2368 bytes) kPrefetchBytes ahead too; the chunks
        // prefetch only the levels (one core, Qwen3-235B's experts from DRAM: 13.0 -> 14.0 GiB/s;
        // the same for the 16-element types' headers changed nothing)
        for (size_t l = 0; l < Tr::kQs; l += 64) {
            const size_t ahead = prefetch_ahead<G>((size_t)ib * kBlock + l, gb);
            for (int h = 0; h < G; ++h) prefetch_weights(g + h * gb + ahead + l);
        }
        for (int j = 0; j < 8; ++j) {  // sub-block j: chunks 4j .. 4j + 3
            __m512i lo_acc[G][T], hi_acc[G][T];
            for (int h = 0; h < G; ++h)
                for (int t = 0; t < T; ++t) lo_acc[h][t] = hi_acc[h][t] = _mm512_setzero_si512();
            __m512i qh[G];
            if constexpr (Q5)
                for (int h = 0; h < G; ++h) qh[h] = load(g + h * gb + ref::packed_q5_k::qh + 64 * j);
            auto chunk = [&]<int i>() {
                __m512i lo[G], hi[G];
                const size_t ahead = prefetch_ahead<G>((size_t)ib * kBlock + Tr::kQs + 64 * (4 * j + i), gb);
                for (int h = 0; h < G; ++h) {
                    const uint8_t* c = g + h * gb + Tr::kQs + 64 * (4 * j + i);
                    const __m512i x = load(c);
                    prefetch_weights(c + ahead);
                    unpack4<i, Q5, K == K32::iq4>(x, Q5 ? qh[h] : x, levels, lo[h], hi[h]);
                }
                const int8_t* q[T];
                for (int t = 0; t < T; ++t) q[t] = a[t][ib].qs + 32 * j + 4 * i;
                dot_chunk<G, T, kTwoChains>(lo, hi, q, lo_acc, hi_acc);
            };
            chunk.template operator()<0>();
            chunk.template operator()<1>();
            chunk.template operator()<2>();
            chunk.template operator()<3>();
            for (int h = 0; h < G; ++h) {
                const __m128i sc8 = _mm_loadu_si128((const __m128i*)(g + h * gb + Tr::kSc + 16 * j));
                const __m512i sc = K == K32::iq4 ? _mm512_cvtepi8_epi32(sc8) : _mm512_cvtepu8_epi32(sc8);
                for (int t = 0; t < T; ++t) {
                    const __m512i sub = kTwoChains ? _mm512_add_epi32(lo_acc[h][t], hi_acc[h][t]) : lo_acc[h][t];
                    isum[h][t] = _mm512_add_epi32(isum[h][t], _mm512_mullo_epi32(sub, sc));
                }
            }
        }
        for (int h = 0; h < G; ++h) {
            const uint8_t* gh = g + h * gb;
            const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(gh + Tr::kD)));
            __m512i pairs[4];  // Q4_K/Q5_K: the mins; IQ4_XS: the scales (signed)
            for (int p = 0; p < 4; ++p) {
                const __m256i v = _mm256_loadu_si256((const __m256i*)(gh + Tr::kPairs + 32 * p));
                pairs[p] = K == K32::iq4 ? _mm512_cvtepi8_epi16(v) : _mm512_cvtepu8_epi16(v);
            }
            for (int t = 0; t < T; ++t) {
                const int16_t* s = ps[t] + 8 * ib;
                __m512i mn = _mm512_setzero_si512();
                for (int p = 0; p < 4; ++p) mn = _mm512_dpwssd_epi32(mn, pairs[p], bcast4((const int8_t*)(s + 2 * p)));
                __m512 v;
                if constexpr (K == K32::iq4) {
                    v = _mm512_mul_ps(dw, _mm512_cvtepi32_ps(_mm512_sub_epi32(isum[h][t], _mm512_slli_epi32(mn, 7))));
                } else {
                    const __m512 dmw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(gh + pq4::dmin)));
                    v = _mm512_fmsub_ps(dw, _mm512_cvtepi32_ps(isum[h][t]), _mm512_mul_ps(dmw, _mm512_cvtepi32_ps(mn)));
                }
                acc[h][t] = _mm512_fmadd_ps(v, _mm512_set1_ps(a[t][ib].d), acc[h][t]);
            }
        }
    }
    for (int h = 0; h < G; ++h)
        for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + t * ldy + 16 * h, acc[h][t]);
}

// The types with 16-element sub-blocks (Q6_K, Q3_K, Q2_K): a unit is one sub-block of 16 rows,
// four 64-byte operand vectors (4 columns x 16 rows each) of unsigned levels, and one scale per
// row (applied in float). What differs per type: how a unit's levels unpack, which activations each vector
// meets, and how the block's sum is finished (the levels' offset through the Q8_K block sums).
// The four operand vectors of unit s (u: its bytes)
template <K16 K>
inline void k16_unit(const uint8_t* u, size_t ahead, __m512i* w) {
    if constexpr (K == K16::q6) {
        const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
        for (int l = 0; l < 3; ++l) prefetch_weights(u + ahead + 64 * l);
        // from L2 into L1 as well, a few units ahead: Q6_K's unpacking leaves the loads less room
        // to wait on L2 than Q4_K's (one core: experts 11.5 -> 11.9 GiB/s, model LM head -3%)
        if (g_prefetch_l2)
            for (int l = 0; l < 3; ++l) _mm_prefetch((const char*)(u + kL1PrefetchBytes + 64 * l), _MM_HINT_T0);
        const __m512i qh = load(u), l0 = load(u + 64), l1 = load(u + 128);
        // (nibble & 0x0f) | (the matching 2 bits of qh moved to bits 4-5)
        w[0] = _mm512_ternarylogic_epi32(_mm512_and_si512(l0, m4), shift_bytes<-4>(qh), m30, 0xF8);
        w[1] = _mm512_ternarylogic_epi32(_mm512_and_si512(shift_bytes<4>(l0), m4), shift_bytes<-2>(qh), m30, 0xF8);
        w[2] = _mm512_ternarylogic_epi32(_mm512_and_si512(l1, m4), qh, m30, 0xF8);
        w[3] = _mm512_ternarylogic_epi32(_mm512_and_si512(shift_bytes<4>(l1), m4), shift_bytes<2>(qh), m30, 0xF8);
    } else {
        const __m512i m3 = _mm512_set1_epi8(3);
        prefetch_weights(u + ahead);
        if constexpr (K == K16::q3) prefetch_weights(u + ahead + 64);
        const __m512i q = load(u);
        w[0] = _mm512_and_si512(q, m3);
        w[1] = _mm512_and_si512(shift_bytes<2>(q), m3);
        w[2] = _mm512_and_si512(shift_bytes<4>(q), m3);
        w[3] = _mm512_and_si512(shift_bytes<6>(q), m3);
        if constexpr (K == K16::q3) {  // + 4 where the high bit is set
            const __m512i four = _mm512_set1_epi8(4);
            for (int k = 0; k < 4; ++k) {
                __mmask64 h;
                std::memcpy(&h, u + 64 + 8 * k, 8);
                w[k] = _mm512_mask_add_epi8(w[k], h, w[k], four);
            }
        }
    }
}

// Sub-block pair j's scales of the 16 rows as int16 pairs (int8 or uint8 stored [row][2])
template <bool kSigned>
inline __m512i scale_pairs(const uint8_t* p) {
    const __m256i v = _mm256_loadu_si256((const __m256i*)p);
    return kSigned ? _mm512_cvtepi8_epi16(v) : _mm512_cvtepu8_epi16(v);
}

// G groups of 16 rows (gb bytes apart) . T tokens
template <K16 K, int G, int T>
void k16_groups(const uint8_t* g, size_t gb, int64_t nb, const BlockQ8_K* const* a, float* y, int64_t ldy) {
    using Tr = K16Traits<K>;
    // A unit's row sums start at the bits of the float 1.5 * 2^23: |sum| < 2^22 (Q6_K: 16 x 63 x
    // 127), so the sum's int32 bits are the float 1.5 * 2^23 + sum exactly, and one float
    // subtraction (ports 0 and 5) converts it instead of VCVTDQ2PS (port 0 only)
    const __m512i kBiasI = _mm512_set1_epi32(0x4B400000);
    const __m512 kBias = _mm512_set1_ps(12582912.0f);
    __m512 acc[G][T];
    for (int h = 0; h < G; ++h)
        for (int t = 0; t < T; ++t) acc[h][t] = _mm512_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib, g += Tr::kBlock) {
        __m512 fsum[G][T];
        for (int h = 0; h < G; ++h)
            for (int t = 0; t < T; ++t) fsum[h][t] = _mm512_setzero_ps();
#pragma GCC unroll 2
        for (int s = 0; s < 16; ++s) {
            __m512i w[G][4];
            const size_t ahead = prefetch_ahead<G>((size_t)ib * Tr::kBlock + Tr::unit(s), gb);
            for (int h = 0; h < G; ++h) k16_unit<K>(g + h * gb + Tr::unit(s), ahead, w[h]);
            __m512i sacc[G][T];
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t) {
                const int8_t* q = a[t][ib].qs + 16 * s;
                const __m512i b0 = bcast4(q + Tr::kAct[0]), b1 = bcast4(q + Tr::kAct[1]), b2 = bcast4(q + Tr::kAct[2]),
                              b3 = bcast4(q + Tr::kAct[3]);
                for (int h = 0; h < G; ++h) {
                    __m512i v = _mm512_dpbusd_epi32(kBiasI, w[h][0], b0);
                    v = _mm512_dpbusd_epi32(v, w[h][1], b1);
                    v = _mm512_dpbusd_epi32(v, w[h][2], b2);
                    sacc[h][t] = _mm512_dpbusd_epi32(v, w[h][3], b3);
                }
            }
            for (int h = 0; h < G; ++h) {
                const __m512i pair = scale_pairs<Tr::kSignedSc>(g + h * gb + Tr::kSc + 32 * (s / 2));
                const __m512i sc = s % 2 == 0 ? _mm512_srai_epi32(_mm512_slli_epi32(pair, 16), 16) : _mm512_srai_epi32(pair, 16);
                const __m512 scf = _mm512_cvtepi32_ps(sc);
                for (int t = 0; t < T; ++t)
                    fsum[h][t] = _mm512_fmadd_ps(_mm512_sub_ps(_mm512_castsi512_ps(sacc[h][t]), kBias), scf, fsum[h][t]);
            }
        }
        for (int h = 0; h < G; ++h) {
            const uint8_t* gh = g + h * gb;
            const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(gh + Tr::kD)));
            for (int t = 0; t < T; ++t) {
                if constexpr (K == K16::q2) {  // d sc . q - dmin . sum_j m_j bsums_j
                    __m512i mn = _mm512_setzero_si512();
                    for (int j = 0; j < 8; ++j)
                        mn = _mm512_dpwssd_epi32(mn, scale_pairs<false>(gh + pq2::m + 32 * j),
                                                 bcast4((const int8_t*)(a[t][ib].bsums + 2 * j)));
                    const __m512 dmw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(gh + pq2::dmin)));
                    const __m512 v = _mm512_fmsub_ps(dw, fsum[h][t], _mm512_mul_ps(dmw, _mm512_cvtepi32_ps(mn)));
                    acc[h][t] = _mm512_fmadd_ps(v, _mm512_set1_ps(a[t][ib].d), acc[h][t]);
                } else {  // the levels' offset: sum_j sc_j bsums_j << shift
                    __m512i corr = _mm512_setzero_si512();
                    for (int j = 0; j < 8; ++j)
                        corr = _mm512_dpwssd_epi32(corr, scale_pairs<true>(gh + Tr::kSc + 32 * j),
                                                   bcast4((const int8_t*)(a[t][ib].bsums + 2 * j)));
                    const __m512 v = _mm512_sub_ps(fsum[h][t], _mm512_cvtepi32_ps(_mm512_slli_epi32(corr, Tr::kOffsetShift)));
                    acc[h][t] = _mm512_fmadd_ps(v, _mm512_mul_ps(dw, _mm512_set1_ps(a[t][ib].d)), acc[h][t]);
                }
            }
        }
    }
    for (int h = 0; h < G; ++h)
        for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + t * ldy + 16 * h, acc[h][t]);
}

// ---- The 32-element block types (Q4_0, IQ4_NL, Q4_1, Q5_0, Q5_1; Q8_0 activations; Q8_0 itself
// below). Per block and row an exact int32 sum of unsigned levels x activations by VPDPBUSD
// (IQ4_NL's table values + 128, the others' levels as stored), the offset taken back through
// the activation block's sum (isum - off * asum); then y += (d * da) * isum' [+ m * (da * asum)]
// per block, the float operations in llama.cpp's order.
template <DType K>
struct Q0Traits : ref::Q0Const<K> {
    static constexpr int kOffset = K == DType::Q4_0 ? 8 : K == DType::Q5_0 ? 16 : K == DType::IQ4_NL ? 128 : 0;
};

// G groups of 16 rows . T tokens, y[t * ldy + 16h + r]; with one group two accumulator chains
// per token (VPDPBUSD's latency), as affine_groups
template <DType K, int G, int T>
void q0_groups(const uint8_t* g, size_t gb, int64_t nb, const ref::BlockQ8_0* const* a, const Q0Act* const* info,
               float* y, int64_t ldy) {
    using Tr = Q0Traits<K>;
    constexpr bool kTwoChains = G == 1, kQ5 = Tr::kQh != 0, kM = Tr::kM != 0;
    __m512i levels = _mm512_setzero_si512();  // IQ4_NL: its 16 levels + 128 in every 128-bit lane
    if constexpr (K == DType::IQ4_NL) {
        alignas(16) uint8_t u[16];
        for (int i = 0; i < 16; ++i) u[i] = (uint8_t)(ref::kIq4nlValues[i] + 128);
        levels = _mm512_broadcast_i32x4(_mm_load_si128((const __m128i*)u));
    }
    __m512 acc[G][T];
    for (int h = 0; h < G; ++h)
        for (int t = 0; t < T; ++t) acc[h][t] = _mm512_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib, g += Tr::kBytes) {
        __m512i s0[G][T], s1[G][T];
        for (int h = 0; h < G; ++h)
            for (int t = 0; t < T; ++t) s0[h][t] = s1[h][t] = _mm512_setzero_si512();
        // every line of the block kPrefetchBytes ahead (a block is 4.5 to 6 lines: one prefetch per
        // 64-byte chunk left a line in nine to DRAM latency, 24 vs 36 GB/s streaming one thread)
        for (size_t l = 0; l < Tr::kBytes; l += 64) {
            const size_t ahead = prefetch_ahead<G>((size_t)ib * Tr::kBytes + l, gb);
            for (int h = 0; h < G; ++h) prefetch_weights(g + h * gb + ahead + l);
        }
        __m512i qh[G];
        if constexpr (kQ5)
            for (int h = 0; h < G; ++h) qh[h] = load(g + h * gb + Tr::kQh);
        auto chunk = [&]<int i>() {
            __m512i lo[G], hi[G];
            for (int h = 0; h < G; ++h) {
                const __m512i x = load(g + h * gb + Tr::kQs + 64 * i);
                unpack4<i, kQ5, K == DType::IQ4_NL>(x, kQ5 ? qh[h] : x, levels, lo[h], hi[h]);
            }
            const int8_t* q[T];
            for (int t = 0; t < T; ++t) q[t] = a[t][ib].qs + 4 * i;
            dot_chunk<G, T, kTwoChains>(lo, hi, q, s0, s1);
        };
        chunk.template operator()<0>();
        chunk.template operator()<1>();
        chunk.template operator()<2>();
        chunk.template operator()<3>();
        for (int h = 0; h < G; ++h) {
            const uint8_t* gh = g + h * gb;
            const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)gh));
            __m512 dm = _mm512_setzero_ps();
            if constexpr (kM) dm = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(gh + Tr::kM)));
            for (int t = 0; t < T; ++t) {
                const Q0Act ai = info[t][ib];
                __m512i sum = kTwoChains ? _mm512_add_epi32(s0[h][t], s1[h][t]) : s0[h][t];
                if constexpr (Tr::kOffset != 0) sum = _mm512_sub_epi32(sum, _mm512_set1_epi32(Tr::kOffset * ai.sum));
                // llama.cpp's order: the two scales' product, then one FMA per block
                const __m512 da = _mm512_set1_ps(ai.d);
                acc[h][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(dw, da), acc[h][t]);
                if constexpr (kM) acc[h][t] = _mm512_fmadd_ps(dm, _mm512_mul_ps(da, _mm512_set1_ps((float)ai.sum)), acc[h][t]);
            }
        }
    }
    for (int h = 0; h < G; ++h)
        for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + t * ldy + 16 * h, acc[h][t]);
}

// Q8_0, bit for bit what the GEMV (avx512.cpp's dot_q8_0) and llama.cpp's AVX2 dot give: per
// row, 8 float lanes, lane i the sum over blocks of (d_w d_a) x the 4-element products of chunk i
// (exact: the bytes + 128 by VPDPBUSD, the 128 back through those 4 activations' sum), added at
// the end as ((0 + 4) + (2 + 6)) + ((1 + 5) + (3 + 7)). Routing near-ties make a model's output
// follow the last bit of these sums, so the packed path keeps the GEMV's. One group x up to 3
// tokens (8 lanes each in registers).
template <int G, int T>
void q8_0_tile(const uint8_t* g, size_t, int64_t nb, const void* const* acts, const void* aux, float* y, int64_t ldy) {
    static_assert(G == 1, "one group at a time");
    constexpr size_t kBytes = ref::Q0Const<DType::Q8_0>::kBytes, kQs = ref::Q0Const<DType::Q8_0>::kQs;
    const ref::BlockQ8_0* a[T];
    const Q8Sums* sums[T];
    for (int t = 0; t < T; ++t) {
        a[t] = static_cast<const ref::BlockQ8_0*>(acts[t]);
        sums[t] = static_cast<const Q8Sums*>(aux) + t * nb;
    }
    const __m512i x80 = _mm512_set1_epi8((char)0x80);
    __m512 lane[T][8];
    for (int t = 0; t < T; ++t)
        for (int i = 0; i < 8; ++i) lane[t][i] = _mm512_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib, g += kBytes) {
        for (size_t l = 0; l < kBytes; l += 64) prefetch_weights(g + kPrefetchBytes + l);
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)g));
        __m512 dd[T];
        for (int t = 0; t < T; ++t) dd[t] = _mm512_mul_ps(dw, _mm512_set1_ps(_cvtsh_ss(a[t][ib].d)));
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) {
            const __m512i x = _mm512_xor_si512(load(g + kQs + 64 * i), x80);
            for (int t = 0; t < T; ++t) {
                __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), x, bcast4(a[t][ib].qs + 4 * i));
                p = _mm512_sub_epi32(p, _mm512_set1_epi32(128 * sums[t][ib].s[i]));
                lane[t][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), dd[t], lane[t][i]);
            }
        }
    }
    for (int t = 0; t < T; ++t) {
        const __m512 r = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(lane[t][0], lane[t][4]), _mm512_add_ps(lane[t][2], lane[t][6])),
                                       _mm512_add_ps(_mm512_add_ps(lane[t][1], lane[t][5]), _mm512_add_ps(lane[t][3], lane[t][7])));
        _mm512_storeu_ps(y + t * ldy, r);
    }
}

template <K32 K, int G, int T>
void affine_tile(const uint8_t* g, size_t gb, int64_t nb, const void* const* acts, const void* aux, float* y,
                 int64_t ldy) {
    const BlockQ8_K* a[T];
    const int16_t* ps[T];
    for (int t = 0; t < T; ++t) {
        a[t] = static_cast<const BlockQ8_K*>(acts[t]);
        ps[t] = static_cast<const int16_t*>(aux) + t * nb * 8;
    }
    affine_groups<K, G, T>(g, gb, nb, a, ps, y, ldy);
}

template <K16 K, int G, int T>
void k16_tile(const uint8_t* g, size_t gb, int64_t nb, const void* const* acts, const void*, float* y, int64_t ldy) {
    const BlockQ8_K* a[T];
    for (int t = 0; t < T; ++t) a[t] = static_cast<const BlockQ8_K*>(acts[t]);
    k16_groups<K, G, T>(g, gb, nb, a, y, ldy);
}

template <DType K, int G, int T>
void q0_tile(const uint8_t* g, size_t gb, int64_t nb, const void* const* acts, const void* aux, float* y, int64_t ldy) {
    const ref::BlockQ8_0* a[T];
    const Q0Act* in[T];
    for (int t = 0; t < T; ++t) {
        a[t] = static_cast<const ref::BlockQ8_0*>(acts[t]);
        in[t] = static_cast<const Q0Act*>(aux) + t * nb;
    }
    q0_groups<K, G, T>(g, gb, nb, a, in, y, ldy);
}

template <int G, int T>
struct Q4K {
    static constexpr TileFn fn = affine_tile<K32::q4, G, T>;
};
template <int G, int T>
struct Q5K {
    static constexpr TileFn fn = affine_tile<K32::q5, G, T>;
};
template <int G, int T>
struct IQ4XS {
    static constexpr TileFn fn = affine_tile<K32::iq4, G, T>;
};
template <int G, int T>
struct Q6K {
    static constexpr TileFn fn = k16_tile<K16::q6, G, T>;
};
template <int G, int T>
struct Q3K {
    static constexpr TileFn fn = k16_tile<K16::q3, G, T>;
};
template <int G, int T>
struct Q2K {
    static constexpr TileFn fn = k16_tile<K16::q2, G, T>;
};
template <DType K>
struct Q0Tile {
    template <int G, int T>
    struct F {
        static constexpr TileFn fn = q0_tile<K, G, T>;
    };
};

// Tokens per pass, tuned on Zen 5 (32-128 tokens) for Q4_K, Q5_K alike: one group x 8 (690 GFLOP/s; 6 slower,
// 10+ spill), two groups x 6 (778; 7 alike, 8 spills; 4 tokens: 740 vs 583 for one group);
// Q6_K one group x 8 (566; 6-7 slower; pairs of groups x 2-3 slower still: 335-440).
constexpr auto kQ4KOne = tiles<Q4K, 1>(std::make_integer_sequence<int, 8>{});
constexpr auto kQ4KTwo = tiles<Q4K, 2>(std::make_integer_sequence<int, 6>{});
constexpr auto kQ5KOne = tiles<Q5K, 1>(std::make_integer_sequence<int, 8>{});
constexpr auto kQ5KTwo = tiles<Q5K, 2>(std::make_integer_sequence<int, 6>{});
constexpr auto kIQ4XSOne = tiles<IQ4XS, 1>(std::make_integer_sequence<int, 8>{});
constexpr auto kIQ4XSTwo = tiles<IQ4XS, 2>(std::make_integer_sequence<int, 6>{});
constexpr auto kQ6KOne = tiles<Q6K, 1>(std::make_integer_sequence<int, 8>{});
constexpr auto kQ6KTwo = tiles<Q6K, 2>(std::make_integer_sequence<int, 4>{});
constexpr auto kQ3KOne = tiles<Q3K, 1>(std::make_integer_sequence<int, 8>{});
constexpr auto kQ2KOne = tiles<Q2K, 1>(std::make_integer_sequence<int, 8>{});

template <DType kType>
void packed_gemm_affine(const uint8_t* w, int64_t n_groups, int64_t n, const void* const* acts, int64_t n_tok, float* y,
                        int64_t ldy) {
    const int64_t nb = n / kQK_K;
    thread_local std::vector<int16_t> psum;
    pair_sums(acts, n_tok, nb, psum);
    const TileSet ts = kType == DType::Q5_K     ? TileSet{kQ5KOne.data(), 8, kQ5KTwo.data(), 6}
                       : kType == DType::IQ4_XS ? TileSet{kIQ4XSOne.data(), 8, kIQ4XSTwo.data(), 6}
                                                : TileSet{kQ4KOne.data(), 8, kQ4KTwo.data(), 6};
    run_tiles(ts, ref::packed_group_bytes(kType, n), w, n_groups, nb, acts, n_tok, psum.data(),
              (size_t)nb * 8 * sizeof(int16_t), y, ldy);
}

// The 32-element types: the Q4_K tile sizes (one group x 8, two x 6)
template <DType K>
struct Q0Tiles {
    static constexpr auto one = tiles<Q0Tile<K>::template F, 1>(std::make_integer_sequence<int, 8>{});
    static constexpr auto two = tiles<Q0Tile<K>::template F, 2>(std::make_integer_sequence<int, 6>{});
};

template <int G, int T>
struct Q80 {
    static constexpr TileFn fn = q8_0_tile<G, T>;
};
constexpr auto kQ80One = tiles<Q80, 1>(std::make_integer_sequence<int, 3>{});

void packed_gemm_q8_0(const uint8_t* w, int64_t n_groups, int64_t n, const void* const* acts, int64_t n_tok, float* y,
                      int64_t ldy) {
    const int64_t nb = n / ref::kQK;
    thread_local std::vector<Q8Sums> sums;
    q8_act_sums(acts, n_tok, nb, sums);
    run_tiles({kQ80One.data(), 3, nullptr, 0}, ref::packed_group_bytes(DType::Q8_0, n), w, n_groups, nb, acts, n_tok,
              sums.data(), (size_t)nb * sizeof(Q8Sums), y, ldy);
}

template <DType K>
void packed_gemm_q0(const uint8_t* w, int64_t n_groups, int64_t n, const void* const* acts, int64_t n_tok, float* y,
                    int64_t ldy) {
    const int64_t nb = n / ref::kQK;
    thread_local std::vector<Q0Act> info;
    q0_act_info(acts, n_tok, nb, info);
    run_tiles({Q0Tiles<K>::one.data(), 8, Q0Tiles<K>::two.data(), 6}, ref::packed_group_bytes(K, n), w,
              n_groups, nb, acts, n_tok, info.data(), (size_t)nb * sizeof(Q0Act), y, ldy);
}

template <DType kType>
void packed_gemm_k16(const uint8_t* w, int64_t n_groups, int64_t n, const void* const* acts, int64_t n_tok, float* y,
                     int64_t ldy) {
    const TileFn* one = kType == DType::Q6_K ? kQ6KOne.data() : kType == DType::Q3_K ? kQ3KOne.data() : kQ2KOne.data();
    // Q6_K, 2-4 tokens (a batch of decode steps; the LM head of the Q4_K_M mixes): pairs of groups,
    // two streams from DRAM instead of one (one core, `kernels_bench
    // --benchmark_filter=packed/avx512/Q6_K/a3b.lm_head/4`: 8.6 / 8.2 -> 9.4 / 9.2 GB/s; the bench
    // model's LM head at 4 streams 11.6-12.0 -> 10.8-11.4 ms). Not for one token (pairs there cost
    // the model's decode 3-10%) nor for prefill (see the tile sizes above).
    const bool two = kType == DType::Q6_K && n_tok <= 4;
    run_tiles({one, 8, two ? kQ6KTwo.data() : nullptr, two ? 4 : 0}, ref::packed_group_bytes(kType, n), w, n_groups, n / kQK_K, acts, n_tok, nullptr, 0,
              y, ldy);
}

void fill_avx512_packed_kernels(KernelTable& t) {
    t.packed_gemm[(int)DType::Q4_K] = packed_gemm_affine<DType::Q4_K>;
    t.packed_gemm[(int)DType::Q5_K] = packed_gemm_affine<DType::Q5_K>;
    t.packed_gemm[(int)DType::IQ4_XS] = packed_gemm_affine<DType::IQ4_XS>;
    t.packed_gemm[(int)DType::Q6_K] = packed_gemm_k16<DType::Q6_K>;
    t.packed_gemm[(int)DType::Q3_K] = packed_gemm_k16<DType::Q3_K>;
    t.packed_gemm[(int)DType::Q2_K] = packed_gemm_k16<DType::Q2_K>;
    t.packed_gemm[(int)DType::Q4_0] = packed_gemm_q0<DType::Q4_0>;
    t.packed_gemm[(int)DType::IQ4_NL] = packed_gemm_q0<DType::IQ4_NL>;
    t.packed_gemm[(int)DType::Q4_1] = packed_gemm_q0<DType::Q4_1>;
    t.packed_gemm[(int)DType::Q5_0] = packed_gemm_q0<DType::Q5_0>;
    t.packed_gemm[(int)DType::Q5_1] = packed_gemm_q0<DType::Q5_1>;
    t.packed_gemm[(int)DType::Q8_0] = packed_gemm_q8_0;
}

}  // namespace
}  // namespace tandem::cpu
