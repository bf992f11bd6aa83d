// AMX-INT8 tiles for prefill (multi-token GEMM) against Q8_K activations: Q4_K and Q6_K over the
// GGUF blocks (the `gemm` entries: `--no-repack`), and Q4_K over its packed layout (the
// `packed_gemm` entry, further down). Compiled with -mamx-tile -mamx-int8 and the AVX-512 flags;
// only called when cpu_features() reports AMX and Linux granted this process the tile data state
// (arch_prctl).
//
// GGUF blocks: one tile product C[16 rows][16 tokens] = A[16 rows][k] x B[k][16 tokens], with A the weights
// of one sub-block (Q4_K: k = 32, nibbles as u8; Q6_K: k = 16, q - 32 as s8) and B the tokens'
// Q8_K values in the VNNI layout (a dword holds 4 consecutive k of one token). Every sub-block has
// its own scale per row, so each tile product is converted to float right away and scaled with
// AVX-512: row r of C is a vector over the 16 tokens, multiplied by the broadcast row scale.
//
// Per call the activations are transposed once into the VNNI layout (16 tokens per tile); per
// group of 16 weight rows the blocks are unpacked once into bytes, each sub-block's 16 rows
// contiguous (one tile A), with their scales as floats; then every token tile runs over them.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/x86/k_scales.h"
#include "kernels/cpu/x86/packed_acts.h"
#include "kernels/reference/packed.h"
#include "kernels/reference/quants.h"

namespace tandem::cpu {
namespace {

using ref::BlockQ4_K;
using ref::BlockQ6_K;
using ref::BlockQ8_K;
using ref::kQK_K;

constexpr int kTile = 16;  // rows per A tile, tokens per B tile
// Below this many tokens the AVX-512 VNNI tiles are faster (the per-sub-block float work of a tile
// costs the same for 1 or 16 tokens). Tuned with kernels_bench on the 2-core Xeon (AMX) VM.
constexpr int64_t kMinTokens = 8;

struct alignas(64) TileConfig {
    uint8_t palette = 1, start_row = 0;
    uint8_t reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
};

// tmm0/tmm3: A (16 rows x k bytes), tmm1/tmm4: B (k/4 rows x 64 bytes), tmm2/5/6/7: C (16 x 16
// int32). Tile registers are not renamed: four products in flight need four sets of C.
void configure_tiles(int k) {
    TileConfig c;
    for (int t : {0, 3}) c.rows[t] = kTile, c.colsb[t] = (uint16_t)k;
    for (int t : {1, 4}) c.rows[t] = (uint8_t)(k / 4), c.colsb[t] = 64;
    for (int t : {2, 5, 6, 7}) c.rows[t] = kTile, c.colsb[t] = 64;
    // (GCC 12 drops the stores before _tile_loadconfig: its builtin does not declare the read)
    asm volatile("ldtilecfg %0" ::"m"(c));
}

// r[i] (16 dwords of row i) -> r[j] (dword j of every row)
inline void transpose16x16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    // per 128-bit lane L: u[4g + k] holds column 4L + k of rows 4g .. 4g+3
    for (int g = 0; g < 4; ++g) {
        u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
        u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
    }
    for (int k = 0; k < 4; ++k) {
        const __m512i v0 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0x88), v1 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0x88);
        const __m512i w0 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0xdd), w1 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0xdd);
        r[k] = _mm512_shuffle_i32x4(v0, v1, 0x88);
        r[8 + k] = _mm512_shuffle_i32x4(v0, v1, 0xdd);
        r[4 + k] = _mm512_shuffle_i32x4(w0, w1, 0x88);
        r[12 + k] = _mm512_shuffle_i32x4(w0, w1, 0xdd);
    }
}

// The tokens of one call, 16 per tile (missing tokens of the last tile are zeros).
struct ActTiles {
    std::vector<int8_t> vnni;  // (n_tiles, n / 4, 16 tokens, 4): dword (kk, i) = qs[4kk .. 4kk+3] of token i
    std::vector<float> d;      // (n_tiles, nb, 16): the tokens' Q8_K block scales
    std::vector<float> bsum;   // (n_tiles, nb, 8, 16): sums of 32 values (only for Q4_K's mins)
};

void prepare_acts(const void* const* acts, int64_t n_tok, int64_t n, bool with_sums, ActTiles& at) {
    const int64_t nb = n / kQK_K, n_tiles = (n_tok + kTile - 1) / kTile;
    at.vnni.resize((size_t)(n_tiles * n * kTile));
    at.d.resize((size_t)(n_tiles * nb * kTile));
    if (with_sums) at.bsum.resize((size_t)(n_tiles * nb * 8 * kTile));
    for (int64_t tile = 0; tile < n_tiles; ++tile) {
        const BlockQ8_K* a[kTile];
        for (int i = 0; i < kTile; ++i) {
            const int64_t t = tile * kTile + i;
            a[i] = t < n_tok ? static_cast<const BlockQ8_K*>(acts[t]) : nullptr;
        }
        int8_t* out = at.vnni.data() + tile * n * kTile;
        for (int64_t b = 0; b < nb; ++b) {
            for (int c = 0; c < kQK_K / 64; ++c, out += 64 * kTile) {
                __m512i r[kTile];
                for (int i = 0; i < kTile; ++i)
                    r[i] = a[i] ? _mm512_loadu_si512((const void*)(a[i][b].qs + 64 * c)) : _mm512_setzero_si512();
                transpose16x16(r);
                for (int kk = 0; kk < 16; ++kk) _mm512_storeu_si512((void*)(out + 64 * kk), r[kk]);
            }
            float* d = at.d.data() + (tile * nb + b) * kTile;
            for (int i = 0; i < kTile; ++i) d[i] = a[i] ? a[i][b].d : 0.0f;
            if (!with_sums) continue;
            float* s = at.bsum.data() + (tile * nb + b) * 8 * kTile;
            for (int j = 0; j < 8; ++j)
                for (int i = 0; i < kTile; ++i) s[j * kTile + i] = a[i] ? (float)(a[i][b].bsums[2 * j] + a[i][b].bsums[2 * j + 1]) : 0.0f;
        }
    }
}

// Writes rows [0, nr) x tokens [0, nt) of a 16 x 16 tile (c[r][i]: row r, token t0 + i) to ys[t0 + i][r0 + r].
void scatter_tile(const float (&c)[kTile][kTile], int64_t nr, int64_t t0, int64_t nt, float* const* ys, int64_t r0) {
    for (int64_t i = 0; i < nt; ++i)
        for (int64_t r = 0; r < nr; ++r) ys[t0 + i][r0 + r] = c[r][i];
}

// Writes the 16 x 16 accumulators (row r: a vector over tokens) to ys[t][r0 + r].
void store_tile(const __m512 acc[kTile], int64_t nr, int64_t t0, int64_t nt, float* const* ys, int64_t r0) {
    alignas(64) float tmp[kTile][kTile];
    for (int r = 0; r < kTile; ++r) _mm512_store_ps(tmp[r], acc[r]);
    scatter_tile(tmp, nr, t0, nt, ys, r0);
}

// ---- Q4_K ---------------------------------------------------------------------------------

// Unpacks rows [r0, r0 + nr) into q ((nb, 8 sub-blocks, 16 rows, 32) bytes: the nibbles, one tile A
// per sub-block), sc and mn ((nb, 16, 8) floats: d * scale and dmin * min of each sub-block); rows
// nr .. 15 become zeros.
void unpack_q4_k_rows(const uint8_t* w, size_t row_stride, int64_t nr, int64_t n, uint8_t* q, float* sc, float* mn) {
    const int64_t nb = n / kQK_K;
    const __m512i m4 = _mm512_set1_epi8(0xF);
    for (int r = 0; r < kTile; ++r) {
        if (r >= nr) {
            for (int64_t b = 0; b < nb; ++b) {
                for (int j = 0; j < 8; ++j) std::memset(q + ((b * 8 + j) * kTile + r) * 32, 0, 32);
                std::memset(sc + (b * kTile + r) * 8, 0, 8 * sizeof(float));
                std::memset(mn + (b * kTile + r) * 8, 0, 8 * sizeof(float));
            }
            continue;
        }
        const auto* blk = reinterpret_cast<const BlockQ4_K*>(w + (size_t)r * row_stride);
        for (int64_t b = 0; b < nb; ++b) {
            uint64_t sc8, mn8;
            unpack_k_scales_words(blk[b].scales, sc8, mn8);
            const __m256 vsc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)sc8)));
            const __m256 vmn = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)mn8)));
            _mm256_storeu_ps(sc + (b * kTile + r) * 8, _mm256_mul_ps(vsc, _mm256_set1_ps(_cvtsh_ss(blk[b].d))));
            _mm256_storeu_ps(mn + (b * kTile + r) * 8, _mm256_mul_ps(vmn, _mm256_set1_ps(_cvtsh_ss(blk[b].dmin))));
            // 64 bytes of qs: low nibbles are values 0..31 and 64..95, high nibbles 32..63 and 96..127
            for (int h = 0; h < 2; ++h) {
                const __m512i v = _mm512_loadu_si512((const void*)(blk[b].qs + 64 * h));
                const __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                const __m512i v01 = _mm512_shuffle_i64x2(lo, hi, 0x44), v23 = _mm512_shuffle_i64x2(lo, hi, 0xee);
                uint8_t* qb = q + ((b * 8 + 4 * h) * kTile + r) * 32;  // sub-blocks 4h .. 4h+3 of row r
                _mm256_storeu_si256((__m256i*)qb, _mm512_castsi512_si256(v01));
                _mm256_storeu_si256((__m256i*)(qb + kTile * 32), _mm512_extracti64x4_epi64(v01, 1));
                _mm256_storeu_si256((__m256i*)(qb + 2 * kTile * 32), _mm512_castsi512_si256(v23));
                _mm256_storeu_si256((__m256i*)(qb + 3 * kTile * 32), _mm512_extracti64x4_epi64(v23, 1));
            }
        }
    }
}

void gemm_q4_k_amx(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* const* acts,
                   int64_t n_tok, float* const* ys) {
    const int64_t nb = n / kQK_K, n_tiles = (n_tok + kTile - 1) / kTile;
    thread_local ActTiles at;
    thread_local std::vector<uint8_t> q;
    thread_local std::vector<float> sc, mn;
    prepare_acts(acts, n_tok, n, true, at);
    q.resize((size_t)(kTile * n));
    sc.resize((size_t)(nb * kTile * 8));
    mn.resize((size_t)(nb * kTile * 8));
    alignas(64) int32_t c[2][8][kTile * kTile];  // one tile product per sub-block, two blocks
    configure_tiles(32);
    for (int64_t r0 = 0; r0 < n_rows; r0 += kTile) {
        const int64_t nr = std::min<int64_t>(kTile, n_rows - r0);
        unpack_q4_k_rows(w + (size_t)r0 * row_stride, row_stride, nr, n, q.data(), sc.data(), mn.data());
        for (int64_t tile = 0; tile < n_tiles; ++tile) {
            const int8_t* bt = at.vnni.data() + tile * n * kTile;
            __m512 acc[kTile];
            for (auto& v : acc) v = _mm512_setzero_ps();
            auto issue = [&](int64_t b, int32_t (*cb)[kTile * kTile]) {
                const uint8_t* a = q.data() + b * 8 * kTile * 32;
                const int8_t* bb = bt + b * 64 * 64;
                for (int j = 0; j < 8; j += 4) {
                    _tile_loadd(0, a + j * kTile * 32, 32);
                    _tile_loadd(1, bb + 8 * j * 64, 64);
                    _tile_zero(2);
                    _tile_dpbusd(2, 0, 1);
                    _tile_loadd(3, a + (j + 1) * kTile * 32, 32);
                    _tile_loadd(4, bb + 8 * (j + 1) * 64, 64);
                    _tile_zero(5);
                    _tile_dpbusd(5, 3, 4);
                    _tile_stored(2, cb[j], 64);
                    _tile_loadd(0, a + (j + 2) * kTile * 32, 32);
                    _tile_loadd(1, bb + 8 * (j + 2) * 64, 64);
                    _tile_zero(6);
                    _tile_dpbusd(6, 0, 1);
                    _tile_stored(5, cb[j + 1], 64);
                    _tile_loadd(3, a + (j + 3) * kTile * 32, 32);
                    _tile_loadd(4, bb + 8 * (j + 3) * 64, 64);
                    _tile_zero(7);
                    _tile_dpbusd(7, 3, 4);
                    _tile_stored(6, cb[j + 2], 64);
                    _tile_stored(7, cb[j + 3], 64);
                }
            };
            for (int64_t b = 0; b < nb; ++b) {
                issue(b, c[b & 1]);
                const int32_t (*cb)[kTile * kTile] = c[b & 1];
                const float* scb = sc.data() + b * kTile * 8;
                const float* mnb = mn.data() + b * kTile * 8;
                const float* bs = at.bsum.data() + (tile * nb + b) * 8 * kTile;
                const __m512 dt = _mm512_loadu_ps(at.d.data() + (tile * nb + b) * kTile);
                for (int r = 0; r < kTile; ++r) {
                    __m512 s = _mm512_setzero_ps();
                    for (int j = 0; j < 8; ++j) {
                        s = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512((const void*)(cb[j] + kTile * r))),
                                            _mm512_set1_ps(scb[r * 8 + j]), s);
                        s = _mm512_fnmadd_ps(_mm512_set1_ps(mnb[r * 8 + j]), _mm512_loadu_ps(bs + j * kTile), s);
                    }
                    acc[r] = _mm512_fmadd_ps(s, dt, acc[r]);
                }
            }
            store_tile(acc, nr, tile * kTile, std::min<int64_t>(kTile, n_tok - tile * kTile), ys, r0);
        }
    }
    _tile_release();
}

// ---- Q6_K ---------------------------------------------------------------------------------

// Unpacks rows into q ((nb, 16 sub-blocks, 16 rows, 16) bytes: q - 32 as s8, one tile A per
// sub-block) and sc ((nb, 16, 16) floats: d * scale of each sub-block); rows nr .. 15 become zeros.
void unpack_q6_k_rows(const uint8_t* w, size_t row_stride, int64_t nr, int64_t n, int8_t* q, float* sc) {
    const int64_t nb = n / kQK_K;
    const __m512i m4 = _mm512_set1_epi8(0xF), m3 = _mm512_set1_epi8(3), k32 = _mm512_set1_epi8(32);
    for (int r = 0; r < kTile; ++r) {
        if (r >= nr) {
            for (int64_t b = 0; b < nb; ++b) {
                for (int j = 0; j < 16; ++j) std::memset(q + ((b * 16 + j) * kTile + r) * 16, 0, 16);
                std::memset(sc + (b * kTile + r) * 16, 0, 16 * sizeof(float));
            }
            continue;
        }
        const auto* blk = reinterpret_cast<const BlockQ6_K*>(w + (size_t)r * row_stride);
        for (int64_t b = 0; b < nb; ++b) {
            const __m512 vs = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)blk[b].scales)));
            _mm512_storeu_ps(sc + (b * kTile + r) * 16, _mm512_mul_ps(vs, _mm512_set1_ps(_cvtsh_ss(blk[b].d))));
            for (int h = 0; h < 2; ++h) {  // 128 values: ql[64], qh[32]
                const __m512i ql = _mm512_loadu_si512((const void*)(blk[b].ql + 64 * h));
                const __m256i qh256 = _mm256_loadu_si256((const __m256i*)(blk[b].qh + 32 * h));
                // bytes 0-31 pair with qh bits (0,1) / (4,5), bytes 32-63 with (2,3) / (6,7)
                const __m512i qh = _mm512_inserti64x4(_mm512_castsi256_si512(qh256), _mm256_srli_epi16(qh256, 2), 1);
                const __m512i lo = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_slli_epi16(_mm512_and_si512(qh, m3), 4));
                const __m512i hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                                   _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh, 4), m3), 4));
                const __m512i v[2] = {_mm512_sub_epi8(lo, k32), _mm512_sub_epi8(hi, k32)};
                int8_t* qb = q + ((b * 16 + 8 * h) * kTile + r) * 16;  // sub-blocks 8h .. 8h+7 of row r
                for (int i = 0; i < 2; ++i) {
                    _mm_storeu_si128((__m128i*)(qb + (4 * i + 0) * kTile * 16), _mm512_extracti32x4_epi32(v[i], 0));
                    _mm_storeu_si128((__m128i*)(qb + (4 * i + 1) * kTile * 16), _mm512_extracti32x4_epi32(v[i], 1));
                    _mm_storeu_si128((__m128i*)(qb + (4 * i + 2) * kTile * 16), _mm512_extracti32x4_epi32(v[i], 2));
                    _mm_storeu_si128((__m128i*)(qb + (4 * i + 3) * kTile * 16), _mm512_extracti32x4_epi32(v[i], 3));
                }
            }
        }
    }
}

void gemm_q6_k_amx(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* const* acts,
                   int64_t n_tok, float* const* ys) {
    const int64_t nb = n / kQK_K, n_tiles = (n_tok + kTile - 1) / kTile;
    thread_local ActTiles at;
    thread_local std::vector<int8_t> q;
    thread_local std::vector<float> sc;
    prepare_acts(acts, n_tok, n, false, at);
    q.resize((size_t)(kTile * n));
    sc.resize((size_t)(nb * kTile * 16));
    alignas(64) int32_t c[16][kTile * kTile];
    configure_tiles(16);
    for (int64_t r0 = 0; r0 < n_rows; r0 += kTile) {
        const int64_t nr = std::min<int64_t>(kTile, n_rows - r0);
        unpack_q6_k_rows(w + (size_t)r0 * row_stride, row_stride, nr, n, q.data(), sc.data());
        for (int64_t tile = 0; tile < n_tiles; ++tile) {
            const int8_t* bt = at.vnni.data() + tile * n * kTile;
            __m512 acc[kTile];
            for (auto& v : acc) v = _mm512_setzero_ps();
            for (int64_t b = 0; b < nb; ++b) {
                for (int j = 0; j < 16; j += 2) {
                    _tile_loadd(0, q.data() + (b * 16 + j) * kTile * 16, 16);
                    _tile_loadd(1, bt + (b * 64 + 4 * j) * 64, 64);
                    _tile_zero(2);
                    _tile_dpbssd(2, 0, 1);
                    _tile_stored(2, c[j], 64);
                    _tile_loadd(3, q.data() + (b * 16 + j + 1) * kTile * 16, 16);
                    _tile_loadd(4, bt + (b * 64 + 4 * (j + 1)) * 64, 64);
                    _tile_zero(5);
                    _tile_dpbssd(5, 3, 4);
                    _tile_stored(5, c[j + 1], 64);
                }
                const float* scb = sc.data() + b * kTile * 16;
                const __m512 dt = _mm512_loadu_ps(at.d.data() + (tile * nb + b) * kTile);
                for (int r = 0; r < kTile; ++r) {
                    __m512 s = _mm512_setzero_ps();
                    for (int j = 0; j < 16; ++j)
                        s = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512((const void*)(c[j] + kTile * r))),
                                            _mm512_set1_ps(scb[r * 16 + j]), s);
                    acc[r] = _mm512_fmadd_ps(s, dt, acc[r]);
                }
            }
            store_tile(acc, nr, tile * kTile, std::min<int64_t>(kTile, n_tok - tile * kTile), ys, r0);
        }
    }
    _tile_release();
}

// ---- Packed Q4_K (kernels/reference/packed.h), the weights as tile B ----------------------
//
// A packed chunk is already in the VNNI layout of a B tile: 64 bytes = 4 consecutive columns of
// 16 rows, row r in dword r; a block's 32 chunks, their low and high nibbles, are the 64 rows of
// four B tiles (k = 64 columns each). Tile A holds 16 tokens' Q8_K values, row-major as stored
// (TDPBSUD: signed A, unsigned B), and C[token][row] has the rows along a vector.
//
// Each sub-block of 32 columns has its own scale per row (6 bits). A product per sub-block would
// leave 8 C tiles per block to store and scale with vector code (the tile stores and the scaling
// took most of the time); instead the weights carry their scales: sc = 16 hi + lo (hi <= 3, lo <=
// 15), B_lo = q * lo and B_hi = q * hi fit unsigned bytes (<= 225), and a block's
// sum_j sc_j q_j . a_j = C_lo + 16 C_hi accumulates in two C tiles over the whole block. The scaled
// weights are made once per group and block (VPMADDUBSW by (lo, 0) and (0, lo) byte pairs) and
// serve every token tile; the mins come from the activation sums as in the VNNI kernel.

constexpr int64_t kMinPackedTokens = 16;  // below: the AVX-512 VNNI tiles

// tmm0/1: C_lo, C_hi; tmm2/3: A (16 tokens x 64 bytes); tmm4-7: B (16 rows x 64 bytes)
void configure_packed_tiles() {
    TileConfig c;
    for (int t = 0; t < 8; ++t) c.rows[t] = kTile, c.colsb[t] = 64;
    asm volatile("ldtilecfg %0" ::"m"(c));
}

// The tokens' Q8_K values in A tiles: a[((tile * nb + b) * 4 + k) * 1024 + 64 * i] = columns
// 64k .. 64k + 63 of block b of token 16 * tile + i (zeros past the last token); their block
// scales and pair sums.
struct PackedActs {
    std::vector<int8_t> a;
    std::vector<float> d;       // (token, block)
    std::vector<int16_t> psum;  // (token, block, 8): sums of 32 values
};

void prepare_packed_acts(const void* const* acts, int64_t n_tok, int64_t nb, PackedActs& pa) {
    const int64_t n_tiles = (n_tok + kTile - 1) / kTile;
    pa.a.resize((size_t)(n_tiles * nb * 4 * 1024));
    if (n_tok % kTile != 0)  // the last tile's missing tokens
        std::memset(pa.a.data() + (n_tiles - 1) * nb * 4 * 1024, 0, (size_t)(nb * 4 * 1024));
    pa.d.resize((size_t)(n_tok * nb));
    for (int64_t t = 0; t < n_tok; ++t) {
        const auto* blk = static_cast<const BlockQ8_K*>(acts[t]);
        int8_t* dst = pa.a.data() + (t / kTile) * nb * 4 * 1024 + (t % kTile) * 64;
        for (int64_t b = 0; b < nb; ++b) {
            pa.d[(size_t)(t * nb + b)] = blk[b].d;
            for (int k = 0; k < 4; ++k)
                _mm512_storeu_si512((void*)(dst + (b * 4 + k) * 1024), _mm512_loadu_si512((const void*)(blk[b].qs + 64 * k)));
        }
    }
    pair_sums(acts, n_tok, nb, pa.psum);
}

// The B tiles of one packed block (g), the weights times their scales' low and high parts:
// bt[(2k + part) * 1024 + 64 * kk], part 0: q * lo, 1: q * hi; B row kk of tile k holds columns
// 64k + 4kk .. + 3 (sub-block 2k + kk / 8; kk % 8 < 4: low nibbles of chunk 8k + kk % 4, else high)
void scaled_q4_k_b_tiles(const uint8_t* g, uint8_t* bt) {
    const __m512i m4 = _mm512_set1_epi8(0xF), m4d = _mm512_set1_epi32(0xF);
    for (int j = 0; j < 8; ++j) {
        const __m512i sc = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(g + ref::packed_q4_k::sc + 16 * j)));
        const __m512i lo = _mm512_and_si512(sc, m4d), hi = _mm512_srli_epi32(sc, 4);
        // (s, 0, s, 0) per row: VPMADDUBSW then gives the even bytes times s; shifted, the odd ones
        const __m512i e[2] = {_mm512_or_si512(lo, _mm512_slli_epi32(lo, 16)), _mm512_or_si512(hi, _mm512_slli_epi32(hi, 16))};
        uint8_t* o = bt + (j / 2) * 2048 + (j % 2) * 512;
        for (int i = 0; i < 4; ++i) {
            const __m512i x = _mm512_loadu_si512((const void*)(g + ref::packed_q4_k::qs + 64 * (4 * j + i)));
            const __m512i q[2] = {_mm512_and_si512(x, m4), _mm512_and_si512(_mm512_srli_epi16(x, 4), m4)};
            for (int h = 0; h < 2; ++h)      // low nibbles: B row i, high: 4 + i
                for (int part = 0; part < 2; ++part) {
                    const __m512i ev = _mm512_maddubs_epi16(q[h], e[part]);
                    const __m512i od = _mm512_maddubs_epi16(q[h], _mm512_slli_epi16(e[part], 8));
                    _mm512_storeu_si512((void*)(o + part * 1024 + 64 * (4 * h + i)), _mm512_or_si512(ev, _mm512_slli_epi16(od, 8)));
                }
        }
    }
}

// One block of one or two token tiles (a1 null: one): c[i][0] = C_lo, c[i][1] = C_hi of tile i
// (16 tokens x 16 rows). The products of a block accumulate in C, each one waiting for the one
// before (a TDPBSUD's latency is several times its issue interval): two tiles give four
// independent chains, and each B tile loaded serves both.
inline void q4_k_block_products(const int8_t* a0, const int8_t* a1, const uint8_t* bt, int32_t (*c)[2][kTile * kTile]) {
    // (the tile intrinsics take register numbers as literal tokens)
    if (a1) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int k = 0; k < 4; ++k) {
            _tile_loadd(6, bt + 2048 * k, 64);
            _tile_loadd(7, bt + 2048 * k + 1024, 64);
            _tile_loadd(4, a0 + 1024 * k, 64);
            _tile_loadd(5, a1 + 1024 * k, 64);
            _tile_dpbsud(0, 4, 6);
            _tile_dpbsud(1, 4, 7);
            _tile_dpbsud(2, 5, 6);
            _tile_dpbsud(3, 5, 7);
        }
        _tile_stored(0, c[0][0], 64);
        _tile_stored(1, c[0][1], 64);
        _tile_stored(2, c[1][0], 64);
        _tile_stored(3, c[1][1], 64);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        for (int k = 0; k < 4; ++k) {
            _tile_loadd(6, bt + 2048 * k, 64);
            _tile_loadd(7, bt + 2048 * k + 1024, 64);
            _tile_loadd(4, a0 + 1024 * k, 64);
            _tile_dpbsud(0, 4, 6);
            _tile_dpbsud(1, 4, 7);
        }
        _tile_stored(0, c[0][0], 64);
        _tile_stored(1, c[0][1], 64);
    }
}

void packed_q4_k_amx(const uint8_t* w, int64_t n_groups, int64_t n, const void* const* acts, int64_t n_tok, float* y,
                     int64_t ldy) {
    if (n_tok < kMinPackedTokens) {
        kernels_for(Isa::avx512).packed_gemm[(int)DType::Q4_K](w, n_groups, n, acts, n_tok, y, ldy);
        return;
    }
    namespace pq4 = ref::packed_q4_k;
    const int64_t nb = n / kQK_K, n_tiles = (n_tok + kTile - 1) / kTile;
    const size_t gb = ref::packed_group_bytes(DType::Q4_K, n);
    thread_local PackedActs pa;
    thread_local std::vector<float> acc;  // (token, 16 rows) of one group
    prepare_packed_acts(acts, n_tok, nb, pa);
    acc.resize((size_t)(n_tiles * kTile * kTile));
    alignas(64) uint8_t bt[8 * 1024];
    // two steps' products (a step: one block x one or two token tiles): one computes while the other is read
    alignas(64) int32_t c[2][2][2][kTile * kTile];
    // Applies block b's scales (g: the group's block) to token tile `tile`'s products cc.
    auto finish = [&](const uint8_t* g, int64_t b, int64_t tile, const int32_t (*cc)[kTile * kTile]) {
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(g + pq4::d)));
        const __m512 dmw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(g + pq4::dmin)));
        __m512i pairs[4];  // the mins, (m_2p, m_2p+1) per row
        for (int q = 0; q < 4; ++q) pairs[q] = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i*)(g + pq4::m + 32 * q)));
        const int64_t nt = std::min<int64_t>(kTile, n_tok - tile * kTile);
        for (int64_t i = 0; i < nt; ++i) {
            const int64_t t = tile * kTile + i;
            const __m512i isum = _mm512_add_epi32(_mm512_load_si512((const void*)(cc[0] + kTile * i)),
                                                  _mm512_slli_epi32(_mm512_load_si512((const void*)(cc[1] + kTile * i)), 4));
            const int16_t* ps = pa.psum.data() + (t * nb + b) * 8;
            __m512i mn = _mm512_setzero_si512();
            for (int q = 0; q < 4; ++q) {
                int32_t v;
                std::memcpy(&v, ps + 2 * q, 4);
                mn = _mm512_dpwssd_epi32(mn, pairs[q], _mm512_set1_epi32(v));
            }
            const __m512 v = _mm512_fmsub_ps(dw, _mm512_cvtepi32_ps(isum), _mm512_mul_ps(dmw, _mm512_cvtepi32_ps(mn)));
            float* at = acc.data() + t * kTile;
            _mm512_storeu_ps(at, _mm512_fmadd_ps(v, _mm512_set1_ps(pa.d[(size_t)(t * nb + b)]), _mm512_loadu_ps(at)));
        }
    };
    configure_packed_tiles();
    for (int64_t grp = 0; grp < n_groups; ++grp) {
        std::fill(acc.begin(), acc.end(), 0.0f);
        const uint8_t* g0 = w + (size_t)grp * gb;
        // steps (block, pair of token tiles) in order; each one's products are issued before the
        // previous one's are read back and scaled, so the tile unit and the vector units overlap
        const uint8_t* prev_g = nullptr;
        int64_t prev_b = 0, prev_tile = 0, prev_n = 0;
        int buf = 0;
        auto finish_prev = [&] {
            for (int64_t i = 0; i < prev_n; ++i) finish(prev_g, prev_b, prev_tile + i, c[buf ^ 1][i]);
        };
        for (int64_t b = 0; b < nb; ++b) {
            const uint8_t* g = g0 + (size_t)b * ref::kPackedQ4KBlock;
            scaled_q4_k_b_tiles(g, bt);
            // the next block (the next group's first after the last; past the end never faults)
            // comes in from DRAM while this one's tiles compute: the model's experts are not in cache
            for (size_t l = 0; l < ref::kPackedQ4KBlock; l += 64) _mm_prefetch((const char*)(g + ref::kPackedQ4KBlock + l), _MM_HINT_T0);
            for (int64_t tile = 0; tile < n_tiles; tile += 2) {
                const int64_t nt = std::min<int64_t>(2, n_tiles - tile);
                const int8_t* a0 = pa.a.data() + (tile * nb + b) * 4 * 1024;
                q4_k_block_products(a0, nt == 2 ? a0 + nb * 4 * 1024 : nullptr, bt, c[buf]);
                if (prev_g) finish_prev();
                prev_g = g, prev_b = b, prev_tile = tile, prev_n = nt;
                buf ^= 1;
            }
        }
        finish_prev();
        for (int64_t t = 0; t < n_tok; ++t) _mm512_storeu_ps(y + t * ldy + grp * kTile, _mm512_loadu_ps(acc.data() + t * kTile));
    }
    _tile_release();
}

// ---- BF16 (AMX-BF16) --------------------------------------------------------------------------
// C[16 rows][16 tokens] += A[16 rows][32 bf16] x B[16 pairs][16 tokens x 2]: A straight from the
// weight rows (a tile load with the row stride: nothing unpacked, no scales: one C per tile pair
// over the whole width), B the tokens' bf16 activations with each pair of consecutive elements of
// a token in one dword (the same 16 x 16 dword transpose as the int8 activations). Two row blocks
// share each B tile. Rows past the last full block of 16, widths that are not a multiple of 32 and
// calls of few tokens go to the avx512 table (VDPBF16PS or the widening kernel), whose sums run in
// another order: the results differ from those by float rounding.

// From 16 tokens in a call (a prefill chunk, or a step whose decode tokens share a call with one;
// an expert's slots): in a call of fewer, a token's sums are the avx512 kernel's whatever the
// others (FloatGemmIsTheGemvBitForBit); from 16 on they are summed in another order, as with the
// packed Q4_K tiles from 16 tokens.
constexpr int64_t kMinBf16Tokens = 16;

// vnni[(tile * n / 32 + chunk) * 512 + 32 * kk + 2 * i + {0, 1}] = elements 32 chunk + 2 kk + {0, 1}
// of token 16 tile + i (0 past the last token)
void prepare_bf16_acts(const void* const* acts, int64_t n_tok, int64_t n, std::vector<uint16_t>& vnni) {
    const int64_t n_tiles = (n_tok + kTile - 1) / kTile, n_chunks = n / 32;
    vnni.resize((size_t)(n_tiles * n_chunks * 512));
    for (int64_t tile = 0; tile < n_tiles; ++tile) {
        const uint16_t* a[kTile];
        for (int i = 0; i < kTile; ++i) {
            const int64_t t = tile * kTile + i;
            a[i] = t < n_tok ? static_cast<const uint16_t*>(acts[t]) : nullptr;
        }
        for (int64_t c = 0; c < n_chunks; ++c) {
            __m512i r[kTile];
            for (int i = 0; i < kTile; ++i) r[i] = a[i] ? _mm512_loadu_si512((const void*)(a[i] + 32 * c)) : _mm512_setzero_si512();
            transpose16x16(r);
            uint16_t* out = vnni.data() + (tile * n_chunks + c) * 512;
            for (int kk = 0; kk < 16; ++kk) _mm512_storeu_si512((void*)(out + 32 * kk), r[kk]);
        }
    }
}

void gemm_bf16_amx(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* const* acts,
                   int64_t n_tok, float* const* ys) {
    const GemmFn avx512 = kernels_for(Isa::avx512).gemm[(int)DType::BF16];
    const int64_t full = n_rows / kTile * kTile;
    if (n_tok < kMinBf16Tokens || n % 32 != 0 || full == 0) {
        avx512(w, row_stride, n_rows, n, acts, n_tok, ys);
        return;
    }
    thread_local std::vector<uint16_t> vnni;
    prepare_bf16_acts(acts, n_tok, n, vnni);
    const int64_t n_tiles = (n_tok + kTile - 1) / kTile, n_chunks = n / 32, blocks = full / kTile;
    configure_tiles(64);  // every tile 16 rows x 64 bytes: A tmm0/tmm3, B tmm1, C tmm2/tmm5
    alignas(64) float c0[kTile][kTile], c1[kTile][kTile];
    for (int64_t b = 0; b < blocks; b += 2) {
        const bool two = b + 1 < blocks;
        const uint8_t* a0 = w + (size_t)(b * kTile) * row_stride;
        const uint8_t* a1 = two ? a0 + (size_t)kTile * row_stride : a0;
        for (int64_t tile = 0; tile < n_tiles; ++tile) {
            const uint16_t* bt = vnni.data() + tile * n_chunks * 512;
            _tile_zero(2);
            _tile_zero(5);
            for (int64_t c = 0; c < n_chunks; ++c) {
                _tile_loadd(1, bt + c * 512, 64);
                _tile_loadd(0, a0 + 64 * c, (long)row_stride);
                _tile_dpbf16ps(2, 0, 1);
                if (two) {
                    _tile_loadd(3, a1 + 64 * c, (long)row_stride);
                    _tile_dpbf16ps(5, 3, 1);
                }
            }
            _tile_stored(2, c0, 64);
            const int64_t t0 = tile * kTile, nt = std::min<int64_t>(kTile, n_tok - t0);
            scatter_tile(c0, kTile, t0, nt, ys, b * kTile);
            if (two) {
                _tile_stored(5, c1, 64);
                scatter_tile(c1, kTile, t0, nt, ys, (b + 1) * kTile);
            }
        }
    }
    _tile_release();
    if (full < n_rows) {  // the last rows (fewer than 16): the avx512 kernel, its outputs shifted
        std::vector<float*> tail((size_t)n_tok);
        for (int64_t t = 0; t < n_tok; ++t) tail[(size_t)t] = ys[t] + full;
        avx512(w + (size_t)full * row_stride, row_stride, n_rows - full, n, acts, n_tok, tail.data());
    }
}

// Few tokens: the AVX-512 VNNI tiles of the avx512 table.
template <DType T, void (*Amx)(const uint8_t*, size_t, int64_t, int64_t, const void* const*, int64_t, float* const*)>
void gemm_dispatch(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* const* acts,
                   int64_t n_tok, float* const* ys) {
    if (n_tok < kMinTokens) {
        kernels_for(Isa::avx512).gemm[(int)T](w, row_stride, n_rows, n, acts, n_tok, ys);
        return;
    }
    Amx(w, row_stride, n_rows, n, acts, n_tok, ys);
}

}  // namespace

void fill_amx(KernelTable& t) {
    t.gemm[(int)DType::Q4_K] = gemm_dispatch<DType::Q4_K, gemm_q4_k_amx>;
    t.gemm[(int)DType::Q6_K] = gemm_dispatch<DType::Q6_K, gemm_q6_k_amx>;
    t.packed_gemm[(int)DType::Q4_K] = packed_q4_k_amx;
    if (cpu_features().amx_bf16) t.gemm[(int)DType::BF16] = gemm_bf16_amx;
}

}  // namespace tandem::cpu
