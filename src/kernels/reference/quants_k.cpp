// Scalar reference for the K types (super-blocks of 256): Q4_K, Q5_K, Q6_K and the Q8_K
// activations they are dotted with. Dequantization repeats ggml's float operations in ggml's
// order so the results are bit-identical to llama.cpp; see quants.cpp for the conventions.
#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/fp16.h"
#include "kernels/reference/quants_internal.h"

namespace tandem::ref::detail {
namespace {

// Sub-block lengths are int64_t so that offsets like x + sub_len * j are computed in 64 bits.
constexpr int64_t sub_len = 32;           // elements per sub-block of Q4_K / Q5_K
constexpr int n_sub = kQK_K / sub_len;    // 8
constexpr int64_t sub6_len = 16;          // elements per sub-block of Q6_K
constexpr int n_sub6 = kQK_K / sub6_len;  // 16
constexpr double inf = std::numeric_limits<double>::infinity();

// f16 round trip: the value a stored f16 field will really have.
float round_fp16(float v) {
    return fp16_to_fp32(fp32_to_fp16(v));
}

// ---- Q4_K / Q5_K: 6-bit scales and mins of the 8 sub-blocks packed in 12 bytes.
// Sub-blocks 0..3: low 6 bits of bytes j (scale) and j+4 (min). Sub-blocks 4..7: low 4 bits in
// byte j+4 (scale in the low nibble, min in the high one), top 2 bits in the top 2 bits of bytes
// j-4 (scale) and j (min).
void unpack_scales(const uint8_t* s, uint8_t* sc, uint8_t* m) {
    for (int j = 0; j < 4; ++j) {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
    }
    for (int j = 4; j < n_sub; ++j) {
        sc[j] = (uint8_t)((s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4));
        m[j] = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

void pack_scales(const uint8_t* sc, const uint8_t* m, uint8_t* s) {
    for (int j = 0; j < 4; ++j) {
        s[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = (uint8_t)((m[j] & 63) | ((m[j + 4] >> 4) << 6));
        s[j + 8] = (uint8_t)((sc[j + 4] & 0x0f) | ((m[j + 4] & 0x0f) << 4));
    }
}

// Levels of one Q4_K / Q5_K super-block: x[i] = d * sc[i/32] * q[i] - dmin * m[i/32].
struct KLevels {
    uint8_t q[kQK_K];
    uint8_t sc[n_sub];
    uint8_t m[n_sub];
};

// qs: 64-element chunk c holds sub-block 2c in the low nibbles of qs[32c .. 32c+31] and sub-block
// 2c+1 in the high nibbles. Q5_K: bit j of qh[l] is the fifth bit of element l of sub-block j.
void unpack(const BlockQ4_K& b, KLevels& lv) {
    unpack_scales(b.scales, lv.sc, lv.m);
    for (int j = 0; j < n_sub; ++j) {
        const uint8_t* qs = b.qs + sub_len * (j / 2);
        for (int l = 0; l < sub_len; ++l) lv.q[sub_len * j + l] = (uint8_t)((qs[l] >> (4 * (j % 2))) & 0x0f);
    }
}

void unpack(const BlockQ5_K& b, KLevels& lv) {
    unpack_scales(b.scales, lv.sc, lv.m);
    for (int j = 0; j < n_sub; ++j) {
        const uint8_t* qs = b.qs + sub_len * (j / 2);
        for (int l = 0; l < sub_len; ++l) {
            const int lo = (qs[l] >> (4 * (j % 2))) & 0x0f;
            const int hi = (b.qh[l] >> j) & 1;
            lv.q[sub_len * j + l] = (uint8_t)(lo | (hi << 4));
        }
    }
}

void pack(const KLevels& lv, BlockQ4_K& b) {
    pack_scales(lv.sc, lv.m, b.scales);
    for (int c = 0; c < n_sub / 2; ++c) {
        for (int l = 0; l < sub_len; ++l) {
            b.qs[sub_len * c + l] =
                (uint8_t)(lv.q[2 * sub_len * c + l] | (lv.q[2 * sub_len * c + sub_len + l] << 4));
        }
    }
}

void pack(const KLevels& lv, BlockQ5_K& b) {
    pack_scales(lv.sc, lv.m, b.scales);
    std::memset(b.qh, 0, sizeof(b.qh));
    for (int j = 0; j < n_sub; ++j) {
        for (int l = 0; l < sub_len; ++l) b.qh[l] |= (uint8_t)(((lv.q[sub_len * j + l] >> 4) & 1) << j);
    }
    for (int c = 0; c < n_sub / 2; ++c) {
        for (int l = 0; l < sub_len; ++l) {
            b.qs[sub_len * c + l] = (uint8_t)((lv.q[2 * sub_len * c + l] & 0x0f) |
                                              ((lv.q[2 * sub_len * c + sub_len + l] & 0x0f) << 4));
        }
    }
}

// ---- Q6_K: element e of a super-block, with h = e / 128, g = (e % 128) / 32, l = e % 32:
// low 4 bits in ql[64h + 32(g&1) + l] (high nibble when g >= 2), top 2 bits at bit 2g of
// qh[32h + l]; level q - 32 with q in 0..63, scale scales[e / 16].
void unpack(const BlockQ6_K& b, int8_t* v) {
    for (int e = 0; e < kQK_K; ++e) {
        const int h = e / 128, g = (e % 128) / 32, l = e % 32;
        const int lo = (b.ql[64 * h + 32 * (g & 1) + l] >> (g >= 2 ? 4 : 0)) & 0x0f;
        const int hi = (b.qh[32 * h + l] >> (2 * g)) & 3;
        v[e] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

void pack(const int8_t* v, BlockQ6_K& b) {
    std::memset(b.ql, 0, sizeof(b.ql));
    std::memset(b.qh, 0, sizeof(b.qh));
    for (int e = 0; e < kQK_K; ++e) {
        const int h = e / 128, g = (e % 128) / 32, l = e % 32;
        const int q = v[e] + 32;
        b.ql[64 * h + 32 * (g & 1) + l] |= (uint8_t)((q & 0x0f) << (g >= 2 ? 4 : 0));
        b.qh[32 * h + l] |= (uint8_t)((q >> 4) << (2 * g));
    }
}

// ---- Dequantization.

template <typename Block>
void dequantize_affine(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const Block*>(src);
    KLevels lv;
    for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
        const float d = fp16_to_fp32(blocks[ib].d);
        const float dmin = fp16_to_fp32(blocks[ib].dmin);
        unpack(blocks[ib], lv);
        float* y = dst + ib * kQK_K;
        for (int j = 0; j < n_sub; ++j) {
            const float d1 = d * (float)lv.sc[j];
            const float m1 = dmin * (float)lv.m[j];
            for (int l = 0; l < sub_len; ++l) y[sub_len * j + l] = d1 * (float)lv.q[sub_len * j + l] - m1;
        }
    }
}

// ---- Quantization of Q4_K / Q5_K.

struct Affine {
    float s = 0;  // x ~ s * q - m with s >= 0, m >= 0
    float m = 0;
};

void affine_levels(const float* x, Affine a, int nmax, uint8_t* q) {
    const float inv = a.s > 0 ? 1.0f / a.s : 0.0f;
    for (int i = 0; i < sub_len; ++i) {
        q[i] = a.s > 0 ? (uint8_t)round_clamp((x[i] + a.m) * inv, 0, nmax) : 0;
    }
}

double affine_error(const float* x, Affine a, const uint8_t* q) {
    double err = 0;
    for (int i = 0; i < sub_len; ++i) {
        const double r = (double)x[i] - ((double)a.s * q[i] - a.m);
        err += r * r;
    }
    return err;
}

// Least-squares (s, m) for fixed levels, under the format's constraints s >= 0, m >= 0.
Affine affine_lsq(const float* x, const uint8_t* q) {
    double sq = 0, sqq = 0, sx = 0, sxq = 0;
    for (int i = 0; i < sub_len; ++i) {
        sq += q[i];
        sqq += (double)q[i] * q[i];
        sx += x[i];
        sxq += (double)x[i] * q[i];
    }
    const double det = sub_len * sqq - sq * sq;
    double s = 0, b = 0;  // x ~ s * q + b
    if (det > 0) {
        s = (sub_len * sxq - sq * sx) / det;
        b = (sqq * sx - sq * sxq) / det;
    } else {
        b = std::min(sx / sub_len, 0.0);  // all levels equal: fit the offset alone
    }
    if (b > 0) {
        b = 0;
        s = sqq > 0 ? sxq / sqq : 0;
    }
    if (s < 0) {
        s = 0;
        b = std::min(sx / sub_len, 0.0);
    }
    return {(float)s, (float)-b};
}

// Best (s, m) for one sub-block: a grid over the step (the range split into nmax-1 .. nmax+1
// steps) with a least-squares fit for each, then re-rounding and re-fitting while it improves.
Affine fit_affine(const float* x, int nmax) {
    float lo = 0, hi = -std::numeric_limits<float>::infinity();
    for (int i = 0; i < sub_len; ++i) {
        lo = std::min(lo, x[i]);
        hi = std::max(hi, x[i]);
    }
    if (!(hi > lo) || !std::isfinite(hi - lo)) return {0, std::isfinite(lo) ? -lo : 0};
    uint8_t q[sub_len];
    Affine best;
    double best_err = inf;
    for (int k = -5; k <= 5; ++k) {  // 11 steps: quality within 2% of 21, twice as fast
        affine_levels(x, {(hi - lo) / ((float)nmax + 0.2f * (float)k), -lo}, nmax, q);
        const Affine a = affine_lsq(x, q);
        const double err = affine_error(x, a, q);
        if (err < best_err) {
            best_err = err;
            best = a;
        }
    }
    for (int it = 0; it < 8; ++it) {
        affine_levels(x, best, nmax, q);
        const Affine a = affine_lsq(x, q);
        const double err = affine_error(x, a, q);
        if (!(err < best_err)) break;
        best_err = err;
        best = a;
    }
    return best;
}

// Levels and squared error of sub-block x for the 6-bit pair (sc, m) under super scales d, dmin,
// computed with the dequantizer's float operations.
double sub_block_error(const float* x, float d, float dmin, int sc, int m, int nmax, uint8_t* q) {
    const float d1 = d * (float)sc;
    const float m1 = dmin * (float)m;
    const float inv = d1 > 0 ? 1.0f / d1 : 0.0f;
    double err = 0;
    for (int i = 0; i < sub_len; ++i) {
        q[i] = d1 > 0 ? (uint8_t)round_clamp((x[i] + m1) * inv, 0, nmax) : 0;
        const double r = (double)x[i] - (double)(d1 * (float)q[i] - m1);
        err += r * r;
    }
    return err;
}

// One super-block of Q4_K (nmax 15) or Q5_K (nmax 31). Fits every sub-block, quantizes the
// scales and mins to 6 bits under f16 super scales, then alternates (a) choosing each sub-block's
// integer pair among the neighbours of the rounded values, by the real error, and (b) re-fitting
// d and dmin by least squares for the chosen integers. Keeps the best state seen.
void quantize_affine_block(const float* x, int nmax, uint16_t* d_out, uint16_t* dmin_out, KLevels& out) {
    Affine sub[n_sub];
    float max_s = 0, max_m = 0;
    for (int j = 0; j < n_sub; ++j) {
        sub[j] = fit_affine(x + sub_len * j, nmax);
        max_s = std::max(max_s, sub[j].s);
        max_m = std::max(max_m, sub[j].m);
    }
    float d = round_fp16(max_s / 63), dmin = round_fp16(max_m / 63);
    double best_total = inf;
    KLevels lv;
    uint8_t q[sub_len];
    for (int it = 0; it < 2; ++it) {  // a third round gains < 0.5% RMSE
        if (!std::isfinite(d) || !std::isfinite(dmin)) break;
        double total = 0;
        for (int j = 0; j < n_sub; ++j) {
            const float* xj = x + sub_len * j;
            const int sc0 = d > 0 ? round_clamp(sub[j].s / d, 0, 63) : 0;
            const int m0 = dmin > 0 ? round_clamp(sub[j].m / dmin, 0, 63) : 0;
            double best = inf;
            for (int sc = std::max(sc0 - 1, 0); sc <= std::min(sc0 + 1, 63); ++sc) {
                for (int m = std::max(m0 - 1, 0); m <= std::min(m0 + 1, 63); ++m) {
                    const double err = sub_block_error(xj, d, dmin, sc, m, nmax, q);
                    if (err < best) {
                        best = err;
                        lv.sc[j] = (uint8_t)sc;
                        lv.m[j] = (uint8_t)m;
                        std::memcpy(lv.q + sub_len * j, q, sub_len);
                    }
                }
            }
            total += best;
        }
        if (!(total < best_total)) break;
        best_total = total;
        out = lv;
        *d_out = fp32_to_fp16(d);
        *dmin_out = fp32_to_fp16(dmin);

        // x_i ~ d * A_i - dmin * B_i with A = sc * q, B = m: 2x2 normal equations.
        double saa = 0, sab = 0, sbb = 0, sxa = 0, sxb = 0;
        for (int j = 0; j < n_sub; ++j) {
            for (int64_t i = sub_len * j; i < sub_len * (j + 1); ++i) {
                const double a = (double)lv.sc[j] * lv.q[i], b = lv.m[j];
                saa += a * a;
                sab += a * b;
                sbb += b * b;
                sxa += x[i] * a;
                sxb += x[i] * b;
            }
        }
        const double det = saa * sbb - sab * sab;
        if (det > 1e-9 * saa * sbb) {
            d = round_fp16((float)((sxa * sbb - sxb * sab) / det));
            dmin = round_fp16((float)((sxa * sab - sxb * saa) / det));
        } else if (saa > 0) {
            d = round_fp16((float)(sxa / saa));
        }
        if (d < 0 || dmin < 0) break;
    }
    if (best_total == inf) {  // non-finite input: a valid all-zero block
        out = KLevels{};
        *d_out = 0;
        *dmin_out = 0;
    }
}

template <typename Block>
void quantize_affine(const float* src, void* dst, int64_t n, int nmax) {
    auto* blocks = static_cast<Block*>(dst);
    KLevels lv;
    for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
        quantize_affine_block(src + ib * kQK_K, nmax, &blocks[ib].d, &blocks[ib].dmin, lv);
        pack(lv, blocks[ib]);
    }
}

// ---- Quantization of Q6_K.

double sub_block6_error(const float* x, float d, int sc, int8_t* v) {
    const float d1 = d * (float)sc;
    const float inv = d1 != 0 ? 1.0f / d1 : 0.0f;
    double err = 0;
    for (int i = 0; i < sub6_len; ++i) {
        v[i] = d1 != 0 ? (int8_t)round_clamp(x[i] * inv, -32, 31) : 0;
        const double r = (double)x[i] - (double)(d1 * (float)v[i]);
        err += r * r;
    }
    return err;
}

// Symmetric fit per sub-block of 16, then the 16 scales are themselves fitted symmetrically to
// int8 under an f16 d; then alternates neighbour search of each int8 scale by the real error and a
// least-squares re-fit of d, keeping the best state seen.
void quantize_q6_k_block(const float* x, BlockQ6_K& b) {
    float s[n_sub6];
    int8_t v[kQK_K], best_v[kQK_K], sc[n_sub6];
    for (int j = 0; j < n_sub6; ++j) s[j] = fit_symmetric(x + sub6_len * j, sub6_len, 32, v + sub6_len * j);
    float d = round_fp16(fit_symmetric(s, n_sub6, 128, sc));
    double best_total = inf;
    uint16_t best_d = 0;
    int8_t best_sc[n_sub6] = {};
    std::memset(best_v, 0, sizeof(best_v));
    int8_t tmp[sub6_len];
    for (int it = 0; it < 4; ++it) {
        if (!std::isfinite(d)) break;
        double total = 0;
        for (int j = 0; j < n_sub6; ++j) {
            const int c0 = d != 0 ? round_clamp(s[j] / d, -128, 127) : 0;
            double best = inf;
            for (int c = std::max(c0 - 1, -128); c <= std::min(c0 + 1, 127); ++c) {
                const double err = sub_block6_error(x + sub6_len * j, d, c, tmp);
                if (err < best) {
                    best = err;
                    sc[j] = (int8_t)c;
                    std::memcpy(v + sub6_len * j, tmp, sub6_len);
                }
            }
            total += best;
        }
        if (!(total < best_total)) break;
        best_total = total;
        best_d = fp32_to_fp16(d);
        std::memcpy(best_sc, sc, sizeof(sc));
        std::memcpy(best_v, v, sizeof(v));

        double saa = 0, sxa = 0;  // x_i ~ d * A_i with A = sc * q
        for (int j = 0; j < n_sub6; ++j) {
            for (int64_t i = sub6_len * j; i < sub6_len * (j + 1); ++i) {
                const double a = (double)sc[j] * v[i];
                saa += a * a;
                sxa += x[i] * a;
            }
        }
        if (saa == 0) break;
        d = round_fp16((float)(sxa / saa));
    }
    b.d = best_d;
    std::memcpy(b.scales, best_sc, sizeof(best_sc));
    pack(best_v, b);
}

}  // namespace

void q4_k_scales(const uint8_t* scales, uint8_t* sc, uint8_t* m) { unpack_scales(scales, sc, m); }

void q4_k_levels(const BlockQ4_K& b, uint8_t* q, uint8_t* sc, uint8_t* m) {
    KLevels lv;
    unpack(b, lv);
    std::memcpy(q, lv.q, kQK_K);
    std::memcpy(sc, lv.sc, n_sub);
    std::memcpy(m, lv.m, n_sub);
}

void q4_k_from_levels(const uint8_t* q, const uint8_t* sc, const uint8_t* m, BlockQ4_K& b) {
    KLevels lv;
    std::memcpy(lv.q, q, kQK_K);
    std::memcpy(lv.sc, sc, n_sub);
    std::memcpy(lv.m, m, n_sub);
    pack(lv, b);
}

void q5_k_levels(const BlockQ5_K& b, uint8_t* q, uint8_t* sc, uint8_t* m) {
    KLevels lv;
    unpack(b, lv);
    std::memcpy(q, lv.q, kQK_K);
    std::memcpy(sc, lv.sc, n_sub);
    std::memcpy(m, lv.m, n_sub);
}

void q5_k_from_levels(const uint8_t* q, const uint8_t* sc, const uint8_t* m, BlockQ5_K& b) {
    KLevels lv;
    std::memcpy(lv.q, q, kQK_K);
    std::memcpy(lv.sc, sc, n_sub);
    std::memcpy(lv.m, m, n_sub);
    pack(lv, b);
}

void q6_k_levels(const BlockQ6_K& b, uint8_t* q) {
    int8_t v[kQK_K];
    unpack(b, v);
    for (int e = 0; e < kQK_K; ++e) q[e] = (uint8_t)(v[e] + 32);
}

void q6_k_from_levels(const uint8_t* q, BlockQ6_K& b) {
    int8_t v[kQK_K];
    for (int e = 0; e < kQK_K; ++e) v[e] = (int8_t)(q[e] - 32);
    pack(v, b);
}

void dequantize_q4_k(const void* src, float* dst, int64_t n) {
    dequantize_affine<BlockQ4_K>(src, dst, n);
}
void dequantize_q5_k(const void* src, float* dst, int64_t n) {
    dequantize_affine<BlockQ5_K>(src, dst, n);
}

void dequantize_q6_k(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const BlockQ6_K*>(src);
    int8_t v[kQK_K];
    for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
        const float d = fp16_to_fp32(blocks[ib].d);
        unpack(blocks[ib], v);
        for (int j = 0; j < n_sub6; ++j) {
            const float sc = blocks[ib].scales[j];
            for (int64_t e = sub6_len * j; e < sub6_len * (j + 1); ++e) {
                dst[ib * kQK_K + e] = d * sc * (float)v[e];
            }
        }
    }
}

void dequantize_q8_k(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const BlockQ8_K*>(src);
    for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
        for (int e = 0; e < kQK_K; ++e) dst[ib * kQK_K + e] = blocks[ib].d * (float)blocks[ib].qs[e];
    }
}

void quantize_q4_k(const float* src, void* dst, int64_t n) {
    quantize_affine<BlockQ4_K>(src, dst, n, 15);
}
void quantize_q5_k(const float* src, void* dst, int64_t n) {
    quantize_affine<BlockQ5_K>(src, dst, n, 31);
}

void quantize_q6_k(const float* src, void* dst, int64_t n) {
    auto* blocks = static_cast<BlockQ6_K*>(dst);
    for (int64_t ib = 0; ib < n / kQK_K; ++ib) quantize_q6_k_block(src + ib * kQK_K, blocks[ib]);
}

// Q8_K is the activation type of the K weights and is quantized as ggml does, so activations are
// byte-identical to llama.cpp's: the element of largest magnitude x_max (the first one on ties)
// maps to -127, i.e. d = -x_max / 127 (d has the opposite sign of x_max), levels rounded to
// nearest-even and capped at 127; an all-zero block gets d = 0.
void quantize_q8_k(const float* src, void* dst, int64_t n) {
    auto* blocks = static_cast<BlockQ8_K*>(dst);
    for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
        const float* x = src + ib * kQK_K;
        BlockQ8_K& b = blocks[ib];
        float amax = 0, xmax = 0;
        for (int e = 0; e < kQK_K; ++e) {
            if (std::fabs(x[e]) > amax) {
                amax = std::fabs(x[e]);
                xmax = x[e];
            }
        }
        if (amax == 0) {
            b.d = 0;
            std::memset(b.qs, 0, sizeof(b.qs));
        } else {
            const float iscale = -127.0f / xmax;
            for (int e = 0; e < kQK_K; ++e) b.qs[e] = (int8_t)round_clamp(iscale * x[e], -128, 127);
            b.d = 1 / iscale;
        }
        for (int j = 0; j < kQK_K / 16; ++j) {
            int sum = 0;
            for (int l = 0; l < 16; ++l) sum += b.qs[16 * j + l];
            b.bsums[j] = (int16_t)sum;
        }
    }
}

// ---- Dot products with Q8_K activations: exact integer sums per sub-block, the mins through
// the activation block sums, scaled and accumulated in double.

template <typename Block>
double dot_affine_q8_k(const void* w, const void* a, int64_t n) {
    const auto* wb = static_cast<const Block*>(w);
    const auto* ab = static_cast<const BlockQ8_K*>(a);
    KLevels lv;
    double sum = 0;
    for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
        unpack(wb[ib], lv);
        int64_t sum_q = 0, sum_m = 0;
        for (int64_t j = 0; j < n_sub; ++j) {
            int32_t isum = 0;
            for (int64_t e = sub_len * j; e < sub_len * (j + 1); ++e) isum += (int32_t)lv.q[e] * ab[ib].qs[e];
            sum_q += (int64_t)lv.sc[j] * isum;
            sum_m += (int64_t)lv.m[j] * (ab[ib].bsums[2 * j] + ab[ib].bsums[2 * j + 1]);
        }
        const double da = ab[ib].d;
        sum += (double)fp16_to_fp32(wb[ib].d) * da * (double)sum_q -
               (double)fp16_to_fp32(wb[ib].dmin) * da * (double)sum_m;
    }
    return sum;
}

double dot_q4_k_q8_k(const void* w, const void* a, int64_t n) {
    return dot_affine_q8_k<BlockQ4_K>(w, a, n);
}
double dot_q5_k_q8_k(const void* w, const void* a, int64_t n) {
    return dot_affine_q8_k<BlockQ5_K>(w, a, n);
}

double dot_q6_k_q8_k(const void* w, const void* a, int64_t n) {
    const auto* wb = static_cast<const BlockQ6_K*>(w);
    const auto* ab = static_cast<const BlockQ8_K*>(a);
    int8_t v[kQK_K];
    double sum = 0;
    for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
        unpack(wb[ib], v);
        int64_t isum = 0;
        for (int j = 0; j < n_sub6; ++j) {
            int32_t sub = 0;
            for (int l = 0; l < sub6_len; ++l)
                sub += (int32_t)v[sub6_len * j + l] * ab[ib].qs[sub6_len * j + l];
            isum += (int64_t)wb[ib].scales[j] * sub;
        }
        sum += (double)fp16_to_fp32(wb[ib].d) * (double)ab[ib].d * (double)isum;
    }
    return sum;
}

double dot_q8_k_q8_k(const void* w, const void* a, int64_t n) {
    const auto* wb = static_cast<const BlockQ8_K*>(w);
    const auto* ab = static_cast<const BlockQ8_K*>(a);
    double sum = 0;
    for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
        int64_t isum = 0;
        for (int e = 0; e < kQK_K; ++e) isum += (int64_t)wb[ib].qs[e] * ab[ib].qs[e];
        sum += (double)wb[ib].d * (double)ab[ib].d * (double)isum;
    }
    return sum;
}

}  // namespace tandem::ref::detail
