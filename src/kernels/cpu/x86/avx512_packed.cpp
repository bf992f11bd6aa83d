// AVX-512 VNNI kernels over the packed (16-row interleaved) layouts of kernels/reference/packed.h,
// for one token (decode) and many (prefill) alike. Compiled with the avx512.cpp flags.
//
// One 64-byte load of a packed chunk gives 4 columns of 16 rows twice (low and high nibbles);
// VPDPBUSD multiplies each by the token's 4 activations of those columns, broadcast, into 16
// int32 row sums: 64 multiply-adds per instruction with no per-row shuffles. Per sub-block the
// sums are scaled by the 16 rows' integer scales (VPMULLD); per super-block the Q4_K mins come
// from the activation block sums (VPDPWSSD on (min, min) x (sum, sum) pairs) and the float scales
// are applied once. Integer sums are exact; only the float accumulation order differs from the
// reference. Up to kTile tokens share each unpacked chunk.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "kernels/cpu/kernels.h"
#include "kernels/reference/packed.h"
#include "kernels/reference/quants.h"

namespace tandem::cpu {
namespace {

using ref::BlockQ8_K;
using ref::kQK_K;
namespace pq4 = ref::packed_q4_k;
namespace pq6 = ref::packed_q6_k;

constexpr int kTile = 8;  // tokens per pass over a group's chunk (Zen 5: 6 was slower, 10 and 12 spill)
// Software prefetch this far ahead in the group. Decode streams the weights from DRAM once (one
// core on Zen 5: Q4_K 27 -> 36 GB/s, Q6_K 25 -> 33 GB/s; 1-4 KB ahead helped less, 12 KB hurt);
// prefill reads each group from DRAM before reusing it per tile (expert stage 0.86 -> 0.70 ms per
// prompt token with the prefetch on for every tile size).
constexpr int kPrefetchBytes = 8192;

inline __m512i bcast4(const int8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}
inline __m512i load(const uint8_t* p) { return _mm512_loadu_si512((const void*)p); }

// Q8_K block sums added in pairs: psum[8 * ib + j] = bsums[2j] + bsums[2j + 1] (the sum of
// sub-block j of 32), for every token and block; reused by every group of the call.
void pair_sums(const void* const* acts, int64_t n_tok, int64_t nb, std::vector<int16_t>& out) {
    if (out.size() < (size_t)(n_tok * nb * 8)) out.resize((size_t)(n_tok * nb * 8));
    for (int64_t t = 0; t < n_tok; ++t) {
        const auto* a = static_cast<const BlockQ8_K*>(acts[t]);
        int16_t* o = out.data() + t * nb * 8;
        for (int64_t ib = 0; ib < nb; ++ib)
            for (int j = 0; j < 8; ++j) o[ib * 8 + j] = (int16_t)(a[ib].bsums[2 * j] + a[ib].bsums[2 * j + 1]);
    }
}

// One group of 16 Q4_K rows . T tokens: y[t * ldy + r] for r < 16.
template <int T>
void q4_k_group(const uint8_t* g, int64_t nb, const BlockQ8_K* const* a, const int16_t* const* ps, float* y,
                int64_t ldy) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512 acc[T];
    for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib, g += ref::kPackedQ4KBlock) {
        __m512i isum[T];
        for (int t = 0; t < T; ++t) isum[t] = _mm512_setzero_si512();
        for (int j = 0; j < 8; ++j) {  // sub-block j: chunks 4j .. 4j + 3
            __m512i lo_acc[T], hi_acc[T];  // two chains per token (VPDPBUSD's latency), same scale
            for (int t = 0; t < T; ++t) lo_acc[t] = hi_acc[t] = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int i = 0; i < 4; ++i) {
                const uint8_t* c = g + pq4::qs + 64 * (4 * j + i);
                const __m512i x = load(c);
                _mm_prefetch((const char*)(c + kPrefetchBytes), _MM_HINT_T0);
                const __m512i lo = _mm512_and_si512(x, m4), hi = _mm512_and_si512(_mm512_srli_epi16(x, 4), m4);
#pragma GCC unroll 8
                for (int t = 0; t < T; ++t) {
                    const int8_t* q = a[t][ib].qs + 32 * j + 4 * i;
                    lo_acc[t] = _mm512_dpbusd_epi32(lo_acc[t], lo, bcast4(q));
                    hi_acc[t] = _mm512_dpbusd_epi32(hi_acc[t], hi, bcast4(q + 16));
                }
            }
            const __m512i sc = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(g + pq4::sc + 16 * j)));
            for (int t = 0; t < T; ++t)
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(_mm512_add_epi32(lo_acc[t], hi_acc[t]), sc));
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(g + pq4::d)));
        const __m512 dmw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(g + pq4::dmin)));
        __m512i mins[4];
        for (int p = 0; p < 4; ++p) mins[p] = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i*)(g + pq4::m + 32 * p)));
        for (int t = 0; t < T; ++t) {
            const int16_t* s = ps[t] + 8 * ib;
            __m512i mn = _mm512_setzero_si512();
            for (int p = 0; p < 4; ++p) mn = _mm512_dpwssd_epi32(mn, mins[p], bcast4((const int8_t*)(s + 2 * p)));
            const __m512 v = _mm512_fmsub_ps(dw, _mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(dmw, _mm512_cvtepi32_ps(mn)));
            acc[t] = _mm512_fmadd_ps(v, _mm512_set1_ps(a[t][ib].d), acc[t]);
        }
    }
    for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + t * ldy, acc[t]);
}

// One group of 16 Q6_K rows . T tokens. q = low 4 bits (ql) | top 2 bits (qh) << 4 in 0..63;
// the -32 of every level comes back as 32 * sum_j sc[j] * bsums[j].
template <int T>
void q6_k_group(const uint8_t* g, int64_t nb, const BlockQ8_K* const* a, float* y, int64_t ldy) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    __m512 acc[T];
    for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib, g += ref::kPackedQ6KBlock) {
        __m512i isum[T];
        for (int t = 0; t < T; ++t) isum[t] = _mm512_setzero_si512();
        for (int p = 0; p < 4; ++p) {
            // scales of sub-blocks 4p..4p+3 as int32 (pairs 2p and 2p + 1)
            const __m512i s01 = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i*)(g + pq6::sc + 32 * (2 * p))));
            const __m512i s23 = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i*)(g + pq6::sc + 32 * (2 * p + 1))));
            const __m512i sc[4] = {_mm512_srai_epi32(_mm512_slli_epi32(s01, 16), 16), _mm512_srai_epi32(s01, 16),
                                   _mm512_srai_epi32(_mm512_slli_epi32(s23, 16), 16), _mm512_srai_epi32(s23, 16)};
#pragma GCC unroll 2
            for (int half = 0; half < 2; ++half) {  // chunks 8p + 4 half .. + 3: sub-blocks 4p + half, 4p + 2 + half
                __m512i lo_acc[T], hi_acc[T];
                for (int t = 0; t < T; ++t) lo_acc[t] = hi_acc[t] = _mm512_setzero_si512();
#pragma GCC unroll 2
                for (int i2 = 0; i2 < 2; ++i2) {
                    const int c0 = 8 * p + 4 * half + 2 * i2;  // chunks c0, c0 + 1 share qh chunk c0 / 2
                    const __m512i qh = load(g + pq6::qh(c0 / 2));
                    for (int l = 0; l < 3; ++l) _mm_prefetch((const char*)(g + pq6::qh(c0 / 2) + kPrefetchBytes + 64 * l), _MM_HINT_T0);
                    for (int k = 0; k < 2; ++k) {
                        const __m512i x = load(g + pq6::ql(c0 + k));
                        const __m512i hl = k == 0 ? _mm512_slli_epi16(qh, 4) : qh;
                        const __m512i hh = k == 0 ? _mm512_slli_epi16(qh, 2) : _mm512_srli_epi16(qh, 2);
                        // (x & 0x0f) | (hl & 0x30)
                        const __m512i lo = _mm512_ternarylogic_epi32(_mm512_and_si512(x, m4), hl, m30, 0xF8);
                        const __m512i hi = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(x, 4), m4), hh, m30, 0xF8);
                        const int i = 4 * half + 2 * i2 + k;
#pragma GCC unroll 8
                        for (int t = 0; t < T; ++t) {
                            const int8_t* q = a[t][ib].qs + 64 * p + 4 * i;
                            lo_acc[t] = _mm512_dpbusd_epi32(lo_acc[t], lo, bcast4(q));
                            hi_acc[t] = _mm512_dpbusd_epi32(hi_acc[t], hi, bcast4(q + 32));
                        }
                    }
                }
                for (int t = 0; t < T; ++t)
                    isum[t] = _mm512_add_epi32(isum[t], _mm512_add_epi32(_mm512_mullo_epi32(lo_acc[t], sc[half]),
                                                                         _mm512_mullo_epi32(hi_acc[t], sc[2 + half])));
            }
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(g + pq6::d)));
        __m512i scp[8];
        for (int j = 0; j < 8; ++j) scp[j] = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i*)(g + pq6::sc + 32 * j)));
        for (int t = 0; t < T; ++t) {
            __m512i corr = _mm512_setzero_si512();
            for (int j = 0; j < 8; ++j) corr = _mm512_dpwssd_epi32(corr, scp[j], bcast4((const int8_t*)(a[t][ib].bsums + 2 * j)));
            const __m512i s = _mm512_sub_epi32(isum[t], _mm512_slli_epi32(corr, 5));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(a[t][ib].d)), acc[t]);
        }
    }
    for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + t * ldy, acc[t]);
}

template <int T>
void q4_k_tile(const uint8_t* g, int64_t nb, const void* const* acts, const int16_t* psum, float* y, int64_t ldy) {
    const BlockQ8_K* a[T];
    const int16_t* ps[T];
    for (int t = 0; t < T; ++t) {
        a[t] = static_cast<const BlockQ8_K*>(acts[t]);
        ps[t] = psum + t * nb * 8;
    }
    q4_k_group<T>(g, nb, a, ps, y, ldy);
}

template <int T>
void q6_k_tile(const uint8_t* g, int64_t nb, const void* const* acts, const int16_t*, float* y, int64_t ldy) {
    const BlockQ8_K* a[T];
    for (int t = 0; t < T; ++t) a[t] = static_cast<const BlockQ8_K*>(acts[t]);
    q6_k_group<T>(g, nb, a, y, ldy);
}

using TileFn = void (*)(const uint8_t*, int64_t, const void* const*, const int16_t*, float*, int64_t);

// Every group, the tokens in tiles of kTile (then one tile of the rest).
void run_groups(const TileFn* tiles, size_t group_bytes, const uint8_t* w, int64_t n_groups, int64_t nb,
                const void* const* acts, int64_t n_tok, const int16_t* psum, float* y, int64_t ldy) {
    for (int64_t g = 0; g < n_groups; ++g) {
        const uint8_t* gw = w + (size_t)g * group_bytes;
        for (int64_t t0 = 0; t0 < n_tok; t0 += kTile) {
            const int64_t nt = std::min<int64_t>(kTile, n_tok - t0);
            tiles[nt - 1](gw, nb, acts + t0, psum ? psum + t0 * nb * 8 : nullptr, y + t0 * ldy + g * ref::kPackRows, ldy);
        }
    }
}

template <int... I>
constexpr std::array<TileFn, sizeof...(I)> q4_k_tiles(std::integer_sequence<int, I...>) {
    return {q4_k_tile<I + 1>...};
}
template <int... I>
constexpr std::array<TileFn, sizeof...(I)> q6_k_tiles(std::integer_sequence<int, I...>) {
    return {q6_k_tile<I + 1>...};
}
constexpr auto kQ4KTiles = q4_k_tiles(std::make_integer_sequence<int, kTile>{});
constexpr auto kQ6KTiles = q6_k_tiles(std::make_integer_sequence<int, kTile>{});

void packed_gemm_q4_k(const uint8_t* w, int64_t n_groups, int64_t n, const void* const* acts, int64_t n_tok, float* y,
                      int64_t ldy) {
    const int64_t nb = n / kQK_K;
    thread_local std::vector<int16_t> psum;
    pair_sums(acts, n_tok, nb, psum);
    run_groups(kQ4KTiles.data(), ref::packed_group_bytes(DType::Q4_K, n), w, n_groups, nb, acts, n_tok, psum.data(), y, ldy);
}

void packed_gemm_q6_k(const uint8_t* w, int64_t n_groups, int64_t n, const void* const* acts, int64_t n_tok, float* y,
                      int64_t ldy) {
    run_groups(kQ6KTiles.data(), ref::packed_group_bytes(DType::Q6_K, n), w, n_groups, n / kQK_K, acts, n_tok, nullptr, y, ldy);
}

}  // namespace

void fill_avx512_packed(KernelTable& t) {
    t.packed_gemm[(int)DType::Q4_K] = packed_gemm_q4_k;
    t.packed_gemm[(int)DType::Q6_K] = packed_gemm_q6_k;
}

}  // namespace tandem::cpu
