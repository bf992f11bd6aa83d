// AVX2 kernels over the packed (16-row interleaved) layouts of kernels/reference/packed.h, for
// CPUs without AVX-512 (Zen 2/3 servers, most desktop parts). Compiled with the avx2.cpp flags.
//
// A 64-byte packed chunk holds 4 columns of 16 rows (row r in 32-bit lane r); its two 32-byte
// halves are rows 0-7 and 8-15, one ymm each. VPMADDUBSW multiplies a half's unsigned levels by
// the token's 4 activations of those columns, broadcast, into int16 pairs per row; the pairs of a
// sub-block add up in int16 as long as they cannot overflow (bounds below), then one VPMADDWD by
// the rows' sub-block scales, spread as (scale, scale) int16 pairs, gives the scaled int32 row
// sums: no per-row shuffles and no 32-bit multiplies in the loop. Integer sums are exact; only
// the float accumulation order differs from the reference. One token (decode) takes both halves
// in one pass over the weights; several tokens (prefill) take a half at a time (16 ymm registers
// hold the accumulators of 8 rows for up to 4 tokens), the second pass reading the group again
// from L1/L2.
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/x86/packed_tiles.h"
#include "kernels/reference/packed.h"
#include "kernels/reference/quants.h"

namespace tandem::cpu {
namespace {

using ref::BlockQ8_K;
using ref::kQK_K;
namespace pq4 = ref::packed_q4_k;
namespace pq6 = ref::packed_q6_k;

// Software prefetch this far ahead of the chunk being read (decode streams the weights once)
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

// Q8_K block sums added in pairs: psum[8 * ib + j] = bsums[2j] + bsums[2j + 1] (the sum of
// sub-block j of 32), for every token and block; reused by every group of the call.
void pair_sums(const void* const* acts, int64_t n_tok, int64_t nb, std::vector<int16_t>& out) {
    if (out.size() < (size_t)(n_tok * nb * 8)) out.resize((size_t)(n_tok * nb * 8));
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t t = 0; t < n_tok; ++t) {
        const auto* a = static_cast<const BlockQ8_K*>(acts[t]);
        int16_t* o = out.data() + t * nb * 8;
        for (int64_t ib = 0; ib < nb; ++ib) {  // |sum| <= 2 * 16 * 128: int16
            const __m256i s = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i*)a[ib].bsums), ones);
            _mm_storeu_si128((__m128i*)(o + ib * 8), _mm_packs_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1)));
        }
    }
}

// Q4_K and Q5_K: halves H0 .. H0 + H - 1 of one group (8 rows each) . T tokens,
// y[t * ldy + 8 * (H0 + h) + r]. Per sub-block of 32 columns a row meets 16 int16 lanes' worth of
// products per lane: 16 x 15 x 128 = 30720 fits int16 for Q4_K; Q5_K (levels to 31) is scaled
// every two chunks (8 products). Then d sc . q - dmin m . sums per block, as the AVX-512 kernel.
template <bool Q5, int H0, int H, int T>
void affine_halves(const uint8_t* g, int64_t nb, const BlockQ8_K* const* a, const int16_t* const* ps, float* y,
                   int64_t ldy) {
    constexpr size_t kBlock = Q5 ? ref::kPackedQ5KBlock : ref::kPackedQ4KBlock;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m10 = _mm256_set1_epi8(0x10);
    __m256 acc[H][T];
    for (int h = 0; h < H; ++h)
        for (int t = 0; t < T; ++t) acc[h][t] = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib, g += kBlock) {
        __m256i isum[H][T];
        for (int h = 0; h < H; ++h)
            for (int t = 0; t < T; ++t) isum[h][t] = _mm256_setzero_si256();
        for (int j = 0; j < 8; ++j) {  // sub-block j: chunks 4j .. 4j + 3
            __m256i p[H][T];
            __m256i qh[H];
            if constexpr (Q5)
                for (int h = 0; h < H; ++h) qh[h] = load(g + ref::packed_q5_k::qh + 64 * j + 32 * (H0 + h));
            auto scale_in = [&] {  // isum += pairs . (sc, sc); pairs start again
                for (int h = 0; h < H; ++h) {
                    const __m256i sc = spread_u8(g + pq4::sc + 16 * j + 8 * (H0 + h));
                    for (int t = 0; t < T; ++t) isum[h][t] = _mm256_add_epi32(isum[h][t], _mm256_madd_epi16(p[h][t], sc));
                }
            };
            auto chunk = [&]<int i>() {
                const uint8_t* c = g + pq4::qs + 64 * (4 * j + i);
                if constexpr (H0 == 0) _mm_prefetch((const char*)(c + kPrefetchBytes), _MM_HINT_T0);
                __m256i lo[H], hi[H];
                for (int h = 0; h < H; ++h) {
                    const __m256i x = load(c + 32 * (H0 + h));
                    lo[h] = _mm256_and_si256(x, m4);
                    hi[h] = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
                    if constexpr (Q5) {  // bit 2i of qh to bit 4 of the low level, bit 2i + 1 of the high
                        const __m256i bl = 2 * i <= 4 ? _mm256_slli_epi16(qh[h], 4 - 2 * i) : _mm256_srli_epi16(qh[h], 2 * i - 4);
                        const __m256i bh = 2 * i + 1 <= 4 ? _mm256_slli_epi16(qh[h], 3 - 2 * i) : _mm256_srli_epi16(qh[h], 2 * i - 3);
                        lo[h] = _mm256_or_si256(lo[h], _mm256_and_si256(bl, m10));
                        hi[h] = _mm256_or_si256(hi[h], _mm256_and_si256(bh, m10));
                    }
                }
#pragma GCC unroll 4
                for (int t = 0; t < T; ++t) {
                    const int8_t* q = a[t][ib].qs + 32 * j + 4 * i;
                    const __m256i bl = bcast4(q), bh = bcast4(q + 16);
                    for (int h = 0; h < H; ++h) {
                        const __m256i v = _mm256_add_epi16(_mm256_maddubs_epi16(lo[h], bl), _mm256_maddubs_epi16(hi[h], bh));
                        if constexpr (i == 0 || (Q5 && i == 2)) p[h][t] = v;
                        else p[h][t] = _mm256_add_epi16(p[h][t], v);
                    }
                }
                if constexpr (i == 3 || (Q5 && i == 1)) scale_in();
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
                acc[h][t] = _mm256_fmadd_ps(v, _mm256_set1_ps(a[t][ib].d), acc[h][t]);
            }
        }
    }
    for (int h = 0; h < H; ++h)
        for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + t * ldy + 8 * (H0 + h), acc[h][t]);
}

// Q6_K: per unit (sub-block of 16 columns) four operand vectors of levels 0..63 per half; two
// VPMADDUBSW results add up in int16 (4 x 63 x 128 = 32256), so a unit takes two VPMADDWD by its
// scale. The levels' offset of 32 comes back through the Q8_K block sums per block.
template <int H0, int H, int T>
void q6_halves(const uint8_t* g, int64_t nb, const BlockQ8_K* const* a, float* y, int64_t ldy) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
    __m256 acc[H][T];
    for (int h = 0; h < H; ++h)
        for (int t = 0; t < T; ++t) acc[h][t] = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib, g += ref::kPackedQ6KBlock) {
        __m256i isum[H][T];
        for (int h = 0; h < H; ++h)
            for (int t = 0; t < T; ++t) isum[h][t] = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int s = 0; s < 16; ++s) {
            const uint8_t* u = g + pq6::qh(s);
            if constexpr (H0 == 0)
                for (int l = 0; l < 3; ++l) _mm_prefetch((const char*)(u + kPrefetchBytes + 64 * l), _MM_HINT_T0);
            __m256i w[H][4], sc[H];
            for (int h = 0; h < H; ++h) {
                const size_t hb = 32 * (H0 + h);
                const __m256i qh = load(u + hb), l0 = load(u + 64 + hb), l1 = load(u + 128 + hb);
                // (nibble & 0x0f) | (the matching 2 bits of qh moved to bits 4-5)
                w[h][0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
                w[h][1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
                w[h][2] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(qh, m30));
                w[h][3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
                const __m256i pair = _mm256_cvtepi8_epi16(load128(g + pq6::sc + 32 * (s / 2) + 16 * (H0 + h)));
                sc[h] = s % 2 == 0 ? dup_half<false>(pair) : dup_half<true>(pair);
            }
#pragma GCC unroll 4
            for (int t = 0; t < T; ++t) {
                // ql chunk 0 low/high nibbles: columns 0-3 / 8-11 of the unit; chunk 1: 4-7 / 12-15
                const int8_t* q = a[t][ib].qs + 16 * s;
                const __m256i b0 = bcast4(q), b1 = bcast4(q + 8), b2 = bcast4(q + 4), b3 = bcast4(q + 12);
                for (int h = 0; h < H; ++h) {
                    const __m256i p01 = _mm256_add_epi16(_mm256_maddubs_epi16(w[h][0], b0), _mm256_maddubs_epi16(w[h][1], b1));
                    const __m256i p23 = _mm256_add_epi16(_mm256_maddubs_epi16(w[h][2], b2), _mm256_maddubs_epi16(w[h][3], b3));
                    isum[h][t] = _mm256_add_epi32(isum[h][t], _mm256_add_epi32(_mm256_madd_epi16(p01, sc[h]), _mm256_madd_epi16(p23, sc[h])));
                }
            }
        }
        for (int h = 0; h < H; ++h) {
            const __m256 dw = load_f16x8(g + pq6::d + 16 * (H0 + h));
            for (int t = 0; t < T; ++t) {  // the offset: sum_j sc_j bsums_j << 5
                __m256i corr = _mm256_setzero_si256();
                for (int j = 0; j < 8; ++j)
                    corr = _mm256_add_epi32(corr, _mm256_madd_epi16(_mm256_cvtepi8_epi16(load128(g + pq6::sc + 32 * j + 16 * (H0 + h))),
                                                                    bcast4((const int8_t*)(a[t][ib].bsums + 2 * j))));
                const __m256i v = _mm256_sub_epi32(isum[h][t], _mm256_slli_epi32(corr, 5));
                acc[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_mul_ps(dw, _mm256_set1_ps(a[t][ib].d)), acc[h][t]);
            }
        }
    }
    for (int h = 0; h < H; ++h)
        for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + t * ldy + 8 * (H0 + h), acc[h][t]);
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

struct Q6K {
    static constexpr int kJoint = 1;
    template <int H0, int H, int T>
    static void run(const uint8_t* g, int64_t nb, const void* const* acts, const void*, float* y, int64_t ldy) {
        const BlockQ8_K* a[T];
        for (int t = 0; t < T; ++t) a[t] = static_cast<const BlockQ8_K*>(acts[t]);
        q6_halves<H0, H, T>(g, nb, a, y, ldy);
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

void packed_gemm_q6_k(const uint8_t* w, int64_t n_groups, int64_t n, const void* const* acts, int64_t n_tok, float* y,
                      int64_t ldy) {
    run_tiles({kTiles<Q6K>.data(), kMaxTile, nullptr, 0}, ref::packed_group_bytes(DType::Q6_K, n), w, n_groups,
              n / kQK_K, acts, n_tok, nullptr, 0, y, ldy);
}

}  // namespace

void fill_avx2_packed(KernelTable& t) {
    t.packed_gemm[(int)DType::Q4_K] = packed_gemm_affine<DType::Q4_K>;
    t.packed_gemm[(int)DType::Q5_K] = packed_gemm_affine<DType::Q5_K>;
    t.packed_gemm[(int)DType::Q6_K] = packed_gemm_q6_k;
}

}  // namespace tandem::cpu
