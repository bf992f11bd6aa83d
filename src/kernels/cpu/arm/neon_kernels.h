// AArch64 NEON kernels, included by exactly two files that compile them for their own target:
// neon.cpp (-march=armv8.2-a+dotprod+fp16, table Isa::neon) and neon_v8.cpp (-march=armv8-a,
// table Isa::neon_v8 for cores without the dot-product extension, e.g. Cortex-A53/A72). Each
// defines fill_neon_kernels() in its own anonymous namespace.
//
// Integer dot products: SDOT (s8 x s8 -> s32, four products per lane) where the target has it,
// otherwise widening multiplies and pairwise adds (same sum, other lanes). Only lane sums or lanes
// times one scalar are used, so both give the same exact integer per sub-block. Weight levels are
// made signed before the dot (Q4_0: q - 8, Q5_0: q - 16, Q6_K: q - 32); Q4_K/Q5_K keep their
// unsigned levels (0..15 / 0..31) and take the mins from the Q8_K block sums.
//
// Every dot kernel is a template over the number of activation rows NT: 1 for GEMV, kTile for the
// GEMM tile, where each weight block is decoded once and used for every token of the tile.
#pragma once

#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/fp16.h"
#include "kernels/cpu/attention_driver.h"
#include "kernels/cpu/kernels.h"
#include "kernels/reference/attention.h"
#include "kernels/reference/packed.h"
#include "kernels/reference/quants.h"

namespace tandem::cpu {
namespace {

using ref::BlockQ4_0;
using ref::BlockQ4_K;
using ref::BlockQ5_0;
using ref::BlockQ5_K;
using ref::BlockQ6_K;
using ref::BlockQ8_0;
using ref::BlockQ8_K;
using ref::kQK;
using ref::kQK_K;

constexpr int kTile = 4;  // tokens per GEMM tile

// FCVT between half and single precision is base ARMv8: no +fp16 needed.
inline float half_to_float(uint16_t h) {
    __fp16 v;
    std::memcpy(&v, &h, 2);
    return (float)v;
}
inline uint16_t float_to_half(float f) {
    const __fp16 v = (__fp16)f;
    uint16_t h;
    std::memcpy(&h, &v, 2);
    return h;
}
inline const float16_t* as_f16(const uint16_t* p) { return reinterpret_cast<const float16_t*>(p); }

// acc + 16 products of s8 pairs, summed into 4 s32 lanes
inline int32x4_t dot_s8(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, a, b);
#else
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
#endif
}
inline int32x4_t dot_s8(int8x16_t a0, int8x16_t b0, int8x16_t a1, int8x16_t b1) {
    return dot_s8(dot_s8(vdupq_n_s32(0), a0, b0), a1, b1);
}

// 6-bit scales and mins of a Q4_K/Q5_K block from the 12 packed bytes, with word operations:
// bytes 0-3 hold sc[0..3] (+ top bits of sc[4..7]), 4-7 hold m[0..3] (+ top bits of m[4..7]),
// 8-11 the low nibbles of sc[4..7] / m[4..7].
inline void unpack_k_scales(const uint8_t* s, uint8_t* sc, uint8_t* mn) {
    uint32_t w[3];
    std::memcpy(w, s, 12);
    const uint32_t v[4] = {w[0] & 0x3f3f3f3fu, (w[2] & 0x0f0f0f0fu) | ((w[0] >> 2) & 0x30303030u),
                           w[1] & 0x3f3f3f3fu, ((w[2] >> 4) & 0x0f0f0f0fu) | ((w[1] >> 2) & 0x30303030u)};
    std::memcpy(sc, v, 8);
    std::memcpy(mn, v + 2, 8);
}

// sum over j of m[j] * (bsums[2j] + bsums[2j+1]): the mins' share of a Q4_K/Q5_K block
inline int32_t k_min_sum(const BlockQ8_K& a, int16x8_t mins) {
    const int16x8_t bs = vpaddq_s16(vld1q_s16(a.bsums), vld1q_s16(a.bsums + 8));
    return vaddvq_s32(vmlal_high_s16(vmull_s16(vget_low_s16(bs), vget_low_s16(mins)), bs, mins));
}

// ---- activations ------------------------------------------------------------------------

// Q8_K exactly as the reference: x_max = element of largest |x| (first on ties), iscale =
// -127/x_max, q = nearest-even(iscale * x) (never beyond +-127), d = 1/iscale, bsums over 16.
void convert_q8_k(const float* x, void* out, int64_t n) {
    auto* y = static_cast<BlockQ8_K*>(out);
    for (int64_t ib = 0; ib < n / kQK_K; ++ib, x += kQK_K) {
        float32x4_t vmax = vdupq_n_f32(0.0f);
        for (int i = 0; i < kQK_K; i += 4) vmax = vmaxnmq_f32(vmax, vabsq_f32(vld1q_f32(x + i)));
        const float amax = vmaxnmvq_f32(vmax);
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
        for (int i = 0; i < kQK_K; i += 16) {
            int32x4_t q[4];
            for (int k = 0; k < 4; ++k) q[k] = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + i + 4 * k), iscale));
            const int16x8_t lo = vcombine_s16(vqmovn_s32(q[0]), vqmovn_s32(q[1]));
            const int16x8_t hi = vcombine_s16(vqmovn_s32(q[2]), vqmovn_s32(q[3]));
            vst1q_s8(y[ib].qs + i, vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi)));
            y[ib].bsums[i / 16] = (int16_t)(vaddlvq_s16(lo) + vaddlvq_s16(hi));
        }
        y[ib].d = 1.0f / iscale;
    }
}

// Q8_0 exactly as the reference: d = amax/127 stored as f16, q = round-half-away(x * 127/amax)
// clamped to +-127 (FCVTAS rounds like std::round).
void convert_q8_0(const float* x, void* out, int64_t n) {
    auto* y = static_cast<BlockQ8_0*>(out);
    const int32x4_t lim = vdupq_n_s32(127);
    for (int64_t ib = 0; ib < n / kQK; ++ib, x += kQK) {
        float32x4_t v[8];
        float32x4_t vmax = vdupq_n_f32(0.0f);
        for (int k = 0; k < 8; ++k) {
            v[k] = vld1q_f32(x + 4 * k);
            vmax = vmaxnmq_f32(vmax, vabsq_f32(v[k]));
        }
        const float d = vmaxnmvq_f32(vmax) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int16x8_t q16[4];
        for (int k = 0; k < 4; ++k) {
            int32x4_t a = vcvtaq_s32_f32(vmulq_n_f32(v[2 * k], id)), b = vcvtaq_s32_f32(vmulq_n_f32(v[2 * k + 1], id));
            a = vmaxq_s32(vminq_s32(a, lim), vnegq_s32(lim));
            b = vmaxq_s32(vminq_s32(b, lim), vnegq_s32(lim));
            q16[k] = vcombine_s16(vmovn_s32(a), vmovn_s32(b));
        }
        vst1q_s8(y[ib].qs, vcombine_s8(vmovn_s16(q16[0]), vmovn_s16(q16[1])));
        vst1q_s8(y[ib].qs + 16, vcombine_s8(vmovn_s16(q16[2]), vmovn_s16(q16[3])));
        y[ib].d = float_to_half(d);
    }
}

void convert_f16(const float* x, void* out, int64_t n) {
    auto* y = static_cast<uint16_t*>(out);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float16x8_t h = vcombine_f16(vcvt_f16_f32(vld1q_f32(x + i)), vcvt_f16_f32(vld1q_f32(x + i + 4)));
        vst1q_u16(y + i, vreinterpretq_u16_f16(h));
    }
    for (; i < n; ++i) y[i] = float_to_half(x[i]);
}

// ---- weights: one row (w, n elements) against NT activation rows a[t] -> out[t] ------------

// Q4_K: 64-element chunk c holds sub-block 2c in the low nibbles of qs[32c..32c+31], 2c+1 in the
// high ones. Per sub-block |sum| <= 32*15*127, times sc <= 63, 8 sub-blocks: fits in s32.
struct KernQ4K {
    using Act = BlockQ8_K;
    template <int NT>
    static void dot(const uint8_t* wp, const void* const* acts, int64_t n, float* out) {
        const auto* w = reinterpret_cast<const BlockQ4_K*>(wp);
        const uint8x16_t m4 = vdupq_n_u8(0x0f);
        float sum[NT] = {};
        for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
            uint8_t sc[8], mn[8];
            unpack_k_scales(w[ib].scales, sc, mn);
            const int16x8_t mins = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mn)));
            int32x4_t isum[NT];
            for (int t = 0; t < NT; ++t) isum[t] = vdupq_n_s32(0);
            for (int c = 0; c < 4; ++c) {
                const uint8x16_t q0 = vld1q_u8(w[ib].qs + 32 * c), q1 = vld1q_u8(w[ib].qs + 32 * c + 16);
                const int8x16_t l0 = vreinterpretq_s8_u8(vandq_u8(q0, m4)), l1 = vreinterpretq_s8_u8(vandq_u8(q1, m4));
                const int8x16_t h0 = vreinterpretq_s8_u8(vshrq_n_u8(q0, 4)), h1 = vreinterpretq_s8_u8(vshrq_n_u8(q1, 4));
                for (int t = 0; t < NT; ++t) {
                    const int8_t* x = static_cast<const Act*>(acts[t])[ib].qs + 64 * c;
                    isum[t] = vmlaq_n_s32(isum[t], dot_s8(l0, vld1q_s8(x), l1, vld1q_s8(x + 16)), sc[2 * c]);
                    isum[t] = vmlaq_n_s32(isum[t], dot_s8(h0, vld1q_s8(x + 32), h1, vld1q_s8(x + 48)), sc[2 * c + 1]);
                }
            }
            const float wd = half_to_float(w[ib].d), wdmin = half_to_float(w[ib].dmin);
            for (int t = 0; t < NT; ++t) {
                const Act& a = static_cast<const Act*>(acts[t])[ib];
                sum[t] += a.d * (wd * (float)vaddvq_s32(isum[t]) - wdmin * (float)k_min_sum(a, mins));
            }
        }
        for (int t = 0; t < NT; ++t) out[t] = sum[t];
    }
};

// Q5_K: Q4_K plus a fifth bit: bit j of qh[l] belongs to element l of sub-block j.
struct KernQ5K {
    using Act = BlockQ8_K;
    template <int NT>
    static void dot(const uint8_t* wp, const void* const* acts, int64_t n, float* out) {
        const auto* w = reinterpret_cast<const BlockQ5_K*>(wp);
        const uint8x16_t m4 = vdupq_n_u8(0x0f), b0 = vdupq_n_u8(1), b1 = vdupq_n_u8(2);
        float sum[NT] = {};
        for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
            uint8_t sc[8], mn[8];
            unpack_k_scales(w[ib].scales, sc, mn);
            const int16x8_t mins = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mn)));
            int32x4_t isum[NT];
            for (int t = 0; t < NT; ++t) isum[t] = vdupq_n_s32(0);
            uint8x16_t qh0 = vld1q_u8(w[ib].qh), qh1 = vld1q_u8(w[ib].qh + 16);  // bits 2c, 2c+1 in use
            for (int c = 0; c < 4; ++c) {
                const uint8x16_t q0 = vld1q_u8(w[ib].qs + 32 * c), q1 = vld1q_u8(w[ib].qs + 32 * c + 16);
                const int8x16_t l0 = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q0, m4), vshlq_n_u8(vandq_u8(qh0, b0), 4)));
                const int8x16_t l1 = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q1, m4), vshlq_n_u8(vandq_u8(qh1, b0), 4)));
                const int8x16_t h0 = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q0, 4), vshlq_n_u8(vandq_u8(qh0, b1), 3)));
                const int8x16_t h1 = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q1, 4), vshlq_n_u8(vandq_u8(qh1, b1), 3)));
                qh0 = vshrq_n_u8(qh0, 2);
                qh1 = vshrq_n_u8(qh1, 2);
                for (int t = 0; t < NT; ++t) {
                    const int8_t* x = static_cast<const Act*>(acts[t])[ib].qs + 64 * c;
                    isum[t] = vmlaq_n_s32(isum[t], dot_s8(l0, vld1q_s8(x), l1, vld1q_s8(x + 16)), sc[2 * c]);
                    isum[t] = vmlaq_n_s32(isum[t], dot_s8(h0, vld1q_s8(x + 32), h1, vld1q_s8(x + 48)), sc[2 * c + 1]);
                }
            }
            const float wd = half_to_float(w[ib].d), wdmin = half_to_float(w[ib].dmin);
            for (int t = 0; t < NT; ++t) {
                const Act& a = static_cast<const Act*>(acts[t])[ib];
                sum[t] += a.d * (wd * (float)vaddvq_s32(isum[t]) - wdmin * (float)k_min_sum(a, mins));
            }
        }
        for (int t = 0; t < NT; ++t) out[t] = sum[t];
    }
};

// Q6_K: element e = 128h + 32g + l has its low 4 bits in ql[64h + 32(g&1) + l] (high nibble when
// g >= 2) and its top 2 bits at bit 2g of qh[32h + l]; 16 sub-blocks of 16 with s8 scales.
// Levels q - 32 in -32..31: per sub-block |sum| <= 16*32*128, times |scale| <= 128, 16 of them.
struct KernQ6K {
    using Act = BlockQ8_K;
    template <int NT>
    static void dot(const uint8_t* wp, const void* const* acts, int64_t n, float* out) {
        const auto* w = reinterpret_cast<const BlockQ6_K*>(wp);
        const uint8x16_t m4 = vdupq_n_u8(0x0f), m3 = vdupq_n_u8(0x03), m30 = vdupq_n_u8(0x30);
        const int8x16_t off = vdupq_n_s8(32);
        float sum[NT] = {};
        for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
            int32x4_t isum[NT];
            for (int t = 0; t < NT; ++t) isum[t] = vdupq_n_s32(0);
            for (int h = 0; h < 2; ++h) {
                const uint8_t* ql = w[ib].ql + 64 * h;
                int8x16_t q[8];  // q[2g + k]: elements 128h + 32g + 16k .. +15 = sub-block 8h + 2g + k
                for (int k = 0; k < 2; ++k) {
                    const uint8x16_t qh = vld1q_u8(w[ib].qh + 32 * h + 16 * k);
                    const uint8x16_t la = vld1q_u8(ql + 16 * k), lb = vld1q_u8(ql + 32 + 16 * k);
                    const uint8x16_t v[4] = {
                        vorrq_u8(vandq_u8(la, m4), vshlq_n_u8(vandq_u8(qh, m3), 4)),
                        vorrq_u8(vandq_u8(lb, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 2), m3), 4)),
                        vorrq_u8(vshrq_n_u8(la, 4), vandq_u8(qh, m30)),
                        vorrq_u8(vshrq_n_u8(lb, 4), vandq_u8(vshrq_n_u8(qh, 2), m30))};
                    for (int g = 0; g < 4; ++g) q[2 * g + k] = vsubq_s8(vreinterpretq_s8_u8(v[g]), off);
                }
                const int8_t* scales = w[ib].scales + 8 * h;
                for (int t = 0; t < NT; ++t) {
                    const int8_t* x = static_cast<const Act*>(acts[t])[ib].qs + 128 * h;
                    for (int s = 0; s < 8; ++s)
                        isum[t] = vmlaq_n_s32(isum[t], dot_s8(vdupq_n_s32(0), q[s], vld1q_s8(x + 16 * s)), scales[s]);
                }
            }
            const float wd = half_to_float(w[ib].d);
            for (int t = 0; t < NT; ++t)
                sum[t] += wd * static_cast<const Act*>(acts[t])[ib].d * (float)vaddvq_s32(isum[t]);
        }
        for (int t = 0; t < NT; ++t) out[t] = sum[t];
    }
};

// Q3_K: element e = 128h + 32g + l has its 2 low bits at 2g of qs[32h + l] and its high bit at
// bit 4h + g of hmask[l] (clear: the level is 4 lower); 16 sub-blocks of 16 with 6-bit scales - 32.
// Levels in -4..3: per sub-block |sum| <= 16*4*128, times |scale| <= 32, 16 of them.
struct KernQ3K {
    using Act = BlockQ8_K;
    template <int NT>
    static void dot(const uint8_t* wp, const void* const* acts, int64_t n, float* out) {
        const auto* w = reinterpret_cast<const ref::BlockQ3_K*>(wp);
        const uint8x16_t m3 = vdupq_n_u8(3), four = vdupq_n_u8(4);
        float sum[NT] = {};
        for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
            // the 16 scales: low nibbles in bytes 0-7, top 2 bits in bytes 8-11 (word operations)
            uint32_t aux[4];
            std::memcpy(aux, w[ib].scales, 12);
            const uint32_t tmp = aux[2];
            aux[2] = ((aux[0] >> 4) & 0x0f0f0f0fu) | (((tmp >> 4) & 0x03030303u) << 4);
            aux[3] = ((aux[1] >> 4) & 0x0f0f0f0fu) | (((tmp >> 6) & 0x03030303u) << 4);
            aux[0] = (aux[0] & 0x0f0f0f0fu) | ((tmp & 0x03030303u) << 4);
            aux[1] = (aux[1] & 0x0f0f0f0fu) | (((tmp >> 2) & 0x03030303u) << 4);
            int8_t sc[16];
            std::memcpy(sc, aux, 16);
            int32x4_t isum[NT];
            for (int t = 0; t < NT; ++t) isum[t] = vdupq_n_s32(0);
            for (int k = 0; k < 2; ++k) {
                const uint8x16_t hm = vld1q_u8(w[ib].hmask + 16 * k);
                for (int h = 0; h < 2; ++h) {
                    const uint8x16_t q2 = vld1q_u8(w[ib].qs + 32 * h + 16 * k);
                    for (int g = 0; g < 4; ++g) {
                        const uint8x16_t lv = vandq_u8(vshlq_u8(q2, vdupq_n_s8((int8_t)(-2 * g))), m3);
                        const uint8x16_t hi = vandq_u8(vtstq_u8(hm, vdupq_n_u8((uint8_t)(1u << (4 * h + g)))), four);
                        const int8x16_t v = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lv, hi)), vreinterpretq_s8_u8(four));
                        const int s = 8 * h + 2 * g + k;  // sub-block of elements 128h + 32g + 16k ..
                        for (int t = 0; t < NT; ++t) {
                            const int8_t* x = static_cast<const Act*>(acts[t])[ib].qs + 16 * s;
                            isum[t] = vmlaq_n_s32(isum[t], dot_s8(vdupq_n_s32(0), v, vld1q_s8(x)), sc[s] - 32);
                        }
                    }
                }
            }
            const float wd = half_to_float(w[ib].d);
            for (int t = 0; t < NT; ++t)
                sum[t] += wd * static_cast<const Act*>(acts[t])[ib].d * (float)vaddvq_s32(isum[t]);
        }
        for (int t = 0; t < NT; ++t) out[t] = sum[t];
    }
};

// Q2_K: Q3_K's 2-bit layout without the high bits; 4-bit scale (low nibble) and min (high) per
// sub-block of 16: x = d sc q - dmin m, the mins through the Q8_K block sums.
struct KernQ2K {
    using Act = BlockQ8_K;
    template <int NT>
    static void dot(const uint8_t* wp, const void* const* acts, int64_t n, float* out) {
        const auto* w = reinterpret_cast<const ref::BlockQ2_K*>(wp);
        const uint8x16_t m3 = vdupq_n_u8(3);
        float sum[NT] = {};
        for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
            const uint8x16_t scm = vld1q_u8(w[ib].scales);
            const uint8x16_t mn8 = vshrq_n_u8(scm, 4);
            const int16x8_t mn_lo = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(mn8)));
            const int16x8_t mn_hi = vreinterpretq_s16_u16(vmovl_high_u8(mn8));
            int32x4_t isum[NT];
            for (int t = 0; t < NT; ++t) isum[t] = vdupq_n_s32(0);
            for (int h = 0; h < 2; ++h)
                for (int k = 0; k < 2; ++k) {
                    const uint8x16_t q2 = vld1q_u8(w[ib].qs + 32 * h + 16 * k);
                    for (int g = 0; g < 4; ++g) {
                        const int8x16_t v = vreinterpretq_s8_u8(vandq_u8(vshlq_u8(q2, vdupq_n_s8((int8_t)(-2 * g))), m3));
                        const int s = 8 * h + 2 * g + k;
                        for (int t = 0; t < NT; ++t) {
                            const int8_t* x = static_cast<const Act*>(acts[t])[ib].qs + 16 * s;
                            isum[t] = vmlaq_n_s32(isum[t], dot_s8(vdupq_n_s32(0), v, vld1q_s8(x)), w[ib].scales[s] & 15);
                        }
                    }
                }
            const float wd = half_to_float(w[ib].d), wdmin = half_to_float(w[ib].dmin);
            for (int t = 0; t < NT; ++t) {
                const Act& a = static_cast<const Act*>(acts[t])[ib];
                const int32_t msum = vaddvq_s32(vmlal_high_s16(vmull_s16(vget_low_s16(vld1q_s16(a.bsums)), vget_low_s16(mn_lo)),
                                                               vld1q_s16(a.bsums), mn_lo)) +
                                     vaddvq_s32(vmlal_high_s16(vmull_s16(vget_low_s16(vld1q_s16(a.bsums + 8)), vget_low_s16(mn_hi)),
                                                               vld1q_s16(a.bsums + 8), mn_hi));
                sum[t] += a.d * (wd * (float)vaddvq_s32(isum[t]) - wdmin * (float)msum);
            }
        }
        for (int t = 0; t < NT; ++t) out[t] = sum[t];
    }
};

// IQ4_XS: 8 sub-blocks of 32, 4-bit indices (element l < 16 in the low nibble of qs[16j + l],
// 16 + l in the high one) into the 16 IQ4 levels (TBL), 6-bit scales - 32.
struct KernIQ4XS {
    using Act = BlockQ8_K;
    template <int NT>
    static void dot(const uint8_t* wp, const void* const* acts, int64_t n, float* out) {
        const auto* w = reinterpret_cast<const ref::BlockIQ4_XS*>(wp);
        const int8x16_t levels = vld1q_s8(ref::kIq4nlValues);
        const uint8x16_t m4 = vdupq_n_u8(0x0f);
        float sum[NT] = {};
        for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
            int32x4_t isum[NT];
            for (int t = 0; t < NT; ++t) isum[t] = vdupq_n_s32(0);
            for (int j = 0; j < 8; ++j) {
                const int ls = (((w[ib].scales_l[j / 2] >> (4 * (j % 2))) & 0x0f) | (((w[ib].scales_h >> (2 * j)) & 3) << 4)) - 32;
                const uint8x16_t q = vld1q_u8(w[ib].qs + 16 * j);
                const int8x16_t lo = vqtbl1q_s8(levels, vandq_u8(q, m4)), hi = vqtbl1q_s8(levels, vshrq_n_u8(q, 4));
                for (int t = 0; t < NT; ++t) {
                    const int8_t* x = static_cast<const Act*>(acts[t])[ib].qs + 32 * j;
                    isum[t] = vmlaq_n_s32(isum[t], dot_s8(lo, vld1q_s8(x), hi, vld1q_s8(x + 16)), ls);
                }
            }
            const float wd = half_to_float(w[ib].d);
            for (int t = 0; t < NT; ++t)
                sum[t] += wd * static_cast<const Act*>(acts[t])[ib].d * (float)vaddvq_s32(isum[t]);
        }
        for (int t = 0; t < NT; ++t) out[t] = sum[t];
    }
};

// The *_0 family against Q8_0 activations: per 32-block, the signed levels lo (elements 0..15)
// and hi (16..31) dotted with the activations, times d_w * d_a, accumulated in float lanes.
template <typename Decode>
struct KernQ0 {
    using Act = BlockQ8_0;
    using Block = typename Decode::Block;
    template <int NT>
    static void dot(const uint8_t* wp, const void* const* acts, int64_t n, float* out) {
        const auto* w = reinterpret_cast<const Block*>(wp);
        float32x4_t acc[NT];
        for (int t = 0; t < NT; ++t) acc[t] = vdupq_n_f32(0.0f);
        for (int64_t ib = 0; ib < n / kQK; ++ib) {
            int8x16_t lo, hi;
            Decode::levels(w[ib], lo, hi);
            const float wd = half_to_float(w[ib].d);
            for (int t = 0; t < NT; ++t) {
                const Act& a = static_cast<const Act*>(acts[t])[ib];
                const int32x4_t p = dot_s8(lo, vld1q_s8(a.qs), hi, vld1q_s8(a.qs + 16));
                acc[t] = vmlaq_n_f32(acc[t], vcvtq_f32_s32(p), wd * half_to_float(a.d));
            }
        }
        for (int t = 0; t < NT; ++t) out[t] = vaddvq_f32(acc[t]);
    }
};

struct DecodeQ8_0 {
    using Block = BlockQ8_0;
    static void levels(const Block& b, int8x16_t& lo, int8x16_t& hi) {
        lo = vld1q_s8(b.qs);
        hi = vld1q_s8(b.qs + 16);
    }
};

struct DecodeQ4_0 {
    using Block = BlockQ4_0;
    static void levels(const Block& b, int8x16_t& lo, int8x16_t& hi) {
        const uint8x16_t q = vld1q_u8(b.qs);
        lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0f))), vdupq_n_s8(8));
        hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), vdupq_n_s8(8));
    }
};

// bit j of the 32-bit qh is the fifth bit of element j: each qh byte is spread over 8 lanes and
// tested against that lane's bit
struct DecodeQ5_0 {
    using Block = BlockQ5_0;
    static void levels(const Block& b, int8x16_t& lo, int8x16_t& hi) {
        static constexpr uint8_t kSpreadLo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
        static constexpr uint8_t kSpreadHi[16] = {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
        static constexpr uint8_t kBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
        uint32_t qh32;
        std::memcpy(&qh32, b.qh, 4);
        const uint8x16_t qh = vreinterpretq_u8_u32(vdupq_n_u32(qh32));
        const uint8x16_t bit = vld1q_u8(kBit), five = vdupq_n_u8(0x10);
        const uint8x16_t h_lo = vandq_u8(vtstq_u8(vqtbl1q_u8(qh, vld1q_u8(kSpreadLo)), bit), five);
        const uint8x16_t h_hi = vandq_u8(vtstq_u8(vqtbl1q_u8(qh, vld1q_u8(kSpreadHi)), bit), five);
        const uint8x16_t q = vld1q_u8(b.qs);
        lo = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q, vdupq_n_u8(0x0f)), h_lo)), vdupq_n_s8(16));
        hi = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q, 4), h_hi)), vdupq_n_s8(16));
    }
};

// IQ4_NL: Q4_0's nibbles as indices into the 16 IQ4 levels
struct DecodeIQ4NL {
    using Block = ref::BlockIQ4_NL;
    static void levels(const Block& b, int8x16_t& lo, int8x16_t& hi) {
        const int8x16_t levels = vld1q_s8(ref::kIq4nlValues);
        const uint8x16_t q = vld1q_u8(b.qs);
        lo = vqtbl1q_s8(levels, vandq_u8(q, vdupq_n_u8(0x0f)));
        hi = vqtbl1q_s8(levels, vshrq_n_u8(q, 4));
    }
};

// 16-bit float rows (F16, BF16: the activations in the same type) widened to f32 eight at a time,
// products in f32 (FMA)
struct WidenF16 {
    static float32x4_t lo(const uint16_t* p, float16x8_t& h) {
        h = vld1q_f16(as_f16(p));
        return vcvt_f32_f16(vget_low_f16(h));
    }
    static float32x4_t hi(float16x8_t h) { return vcvt_high_f32_f16(h); }
    static float one(uint16_t v) { return half_to_float(v); }
    using Reg = float16x8_t;
};
struct WidenBF16 {  // bf16 -> f32 is a 16-bit shift
    static float32x4_t lo(const uint16_t* p, uint16x8_t& h) {
        h = vld1q_u16(p);
        return vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16));
    }
    static float32x4_t hi(uint16x8_t h) { return vreinterpretq_f32_u32(vshll_high_n_u16(h, 16)); }
    static float one(uint16_t v) { return bf16_to_fp32(v); }
    using Reg = uint16x8_t;
};

template <class W>
struct KernHalf {
    template <int NT>
    static void dot(const uint8_t* wp, const void* const* acts, int64_t n, float* out) {
        const auto* w = reinterpret_cast<const uint16_t*>(wp);
        float32x4_t acc[NT][2];
        for (int t = 0; t < NT; ++t) acc[t][0] = acc[t][1] = vdupq_n_f32(0.0f);
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) {
            typename W::Reg wh;
            const float32x4_t w0 = W::lo(w + i, wh), w1 = W::hi(wh);
            for (int t = 0; t < NT; ++t) {
                typename W::Reg ah;
                const float32x4_t a0 = W::lo(static_cast<const uint16_t*>(acts[t]) + i, ah);
                acc[t][0] = vfmaq_f32(acc[t][0], w0, a0);
                acc[t][1] = vfmaq_f32(acc[t][1], w1, W::hi(ah));
            }
        }
        for (int t = 0; t < NT; ++t) {
            const auto* a = static_cast<const uint16_t*>(acts[t]);
            float s = vaddvq_f32(vaddq_f32(acc[t][0], acc[t][1]));
            for (int64_t j = i; j < n; ++j) s += W::one(w[j]) * W::one(a[j]);
            out[t] = s;
        }
    }
};
using KernF16 = KernHalf<WidenF16>;
using KernBF16 = KernHalf<WidenBF16>;

struct KernF32 {
    template <int NT>
    static void dot(const uint8_t* wp, const void* const* acts, int64_t n, float* out) {
        const auto* w = reinterpret_cast<const float*>(wp);
        float32x4_t acc[NT][2];
        for (int t = 0; t < NT; ++t) acc[t][0] = acc[t][1] = vdupq_n_f32(0.0f);
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) {
            const float32x4_t w0 = vld1q_f32(w + i), w1 = vld1q_f32(w + i + 4);
            for (int t = 0; t < NT; ++t) {
                const float* a = static_cast<const float*>(acts[t]) + i;
                acc[t][0] = vfmaq_f32(acc[t][0], w0, vld1q_f32(a));
                acc[t][1] = vfmaq_f32(acc[t][1], w1, vld1q_f32(a + 4));
            }
        }
        for (int t = 0; t < NT; ++t) {
            const auto* a = static_cast<const float*>(acts[t]);
            float s = vaddvq_f32(vaddq_f32(acc[t][0], acc[t][1]));
            for (int64_t j = i; j < n; ++j) s += w[j] * a[j];
            out[t] = s;
        }
    }
};

template <typename K>
void gemv(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* act, float* y) {
    for (int64_t r = 0; r < n_rows; ++r) {
        if (r + 2 < n_rows) __builtin_prefetch(w + (size_t)(r + 2) * row_stride);
        K::template dot<1>(w + (size_t)r * row_stride, &act, n, y + r);
    }
}

// kTile tokens at a time (each weight row decoded once per tile), then the remaining tokens alone
template <typename K>
void gemm(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* const* acts, int64_t n_tok,
          float* const* ys) {
    int64_t t0 = 0;
    for (; t0 + kTile <= n_tok; t0 += kTile) {
        float out[kTile];
        for (int64_t r = 0; r < n_rows; ++r) {
            K::template dot<kTile>(w + (size_t)r * row_stride, acts + t0, n, out);
            for (int t = 0; t < kTile; ++t) ys[t0 + t][r] = out[t];
        }
    }
    for (; t0 < n_tok; ++t0) gemv<K>(w, row_stride, n_rows, n, acts[t0], ys[t0]);
}

// ---- attention over the f16 KV cache (any head_dim) --------------------------------------

// keys transposed: 8 positions per step, one multiply-add per dimension
void attn_scores(const float* q, const uint16_t* k, int64_t stride, int64_t n_pos, int64_t hd, float* scores) {
    int64_t p0 = 0;
    for (; p0 + 8 <= n_pos; p0 += 8) {
        float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
        for (int64_t i = 0; i < hd; ++i) {
            const float16x8_t kh = vld1q_f16(as_f16(k + i * stride + p0));
            acc0 = vfmaq_n_f32(acc0, vcvt_f32_f16(vget_low_f16(kh)), q[i]);
            acc1 = vfmaq_n_f32(acc1, vcvt_high_f32_f16(kh), q[i]);
        }
        vst1q_f32(scores + p0, acc0);
        vst1q_f32(scores + p0 + 4, acc1);
    }
    for (; p0 < n_pos; ++p0) {
        float s = 0.0f;
        for (int64_t i = 0; i < hd; ++i) s += q[i] * half_to_float(k[i * stride + p0]);
        scores[p0] = s;
    }
}

void attn_values(const float* w, const uint16_t* v, int64_t stride, int64_t n_pos, int64_t hd, float* out) {
    int64_t i = 0;
    for (; i + 8 <= hd; i += 8) {
        float32x4_t o0 = vld1q_f32(out + i), o1 = vld1q_f32(out + i + 4);
        for (int64_t p = 0; p < n_pos; ++p) {
            const float16x8_t vh = vld1q_f16(as_f16(v + p * stride + i));
            o0 = vfmaq_n_f32(o0, vcvt_f32_f16(vget_low_f16(vh)), w[p]);
            o1 = vfmaq_n_f32(o1, vcvt_high_f32_f16(vh), w[p]);
        }
        vst1q_f32(out + i, o0);
        vst1q_f32(out + i + 4, o1);
    }
    for (; i < hd; ++i)
        for (int64_t p = 0; p < n_pos; ++p) out[i] += w[p] * half_to_float(v[p * stride + i]);
}

// W8A8: acc[r] = sum_k x_q[k] * w[r][k], exact in int32 (kernels/reference/int8.h).
void gemv_i8(const int8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const int8_t* x, int32_t* acc) {
    for (int64_t r = 0; r < n_rows; ++r) {
        const int8_t* row = w + (size_t)r * row_stride;
        int32x4_t s0 = vdupq_n_s32(0), s1 = vdupq_n_s32(0);
        int64_t k = 0;
        for (; k + 32 <= n; k += 32) {
            s0 = dot_s8(s0, vld1q_s8(row + k), vld1q_s8(x + k));
            s1 = dot_s8(s1, vld1q_s8(row + k + 16), vld1q_s8(x + k + 16));
        }
        for (; k + 16 <= n; k += 16) s0 = dot_s8(s0, vld1q_s8(row + k), vld1q_s8(x + k));
        int32_t sum = vaddvq_s32(vaddq_s32(s0, s1));
        for (; k < n; ++k) sum += (int32_t)row[k] * (int32_t)x[k];
        acc[r] = sum;
    }
}

#include "kernels/cpu/arm/neon_attention.h"
#include "kernels/cpu/arm/neon_packed.h"

void fill_neon_kernels(KernelTable& t) {
    t.gemv_i8 = gemv_i8;
    // every type with a packed layout is repacked at load into 16-row groups (neon_packed.h)
    t.packed_gemm[(int)DType::Q4_K] = packed_gemm_neon<DType::Q4_K>;
    t.packed_gemm[(int)DType::Q5_K] = packed_gemm_neon<DType::Q5_K>;
    t.packed_gemm[(int)DType::IQ4_XS] = packed_gemm_neon<DType::IQ4_XS>;
    t.packed_gemm[(int)DType::Q3_K] = packed_gemm_neon<DType::Q3_K>;
    t.packed_gemm[(int)DType::Q2_K] = packed_gemm_neon<DType::Q2_K>;
    t.packed_gemm[(int)DType::Q6_K] = packed_gemm_neon<DType::Q6_K>;
    t.packed_gemm[(int)DType::Q4_0] = packed_gemm_q0_neon<DType::Q4_0>;
    t.packed_gemm[(int)DType::IQ4_NL] = packed_gemm_q0_neon<DType::IQ4_NL>;
    t.packed_gemm[(int)DType::Q4_1] = packed_gemm_q0_neon<DType::Q4_1>;
    t.packed_gemm[(int)DType::Q5_0] = packed_gemm_q0_neon<DType::Q5_0>;
    t.packed_gemm[(int)DType::Q5_1] = packed_gemm_q0_neon<DType::Q5_1>;
    t.packed_gemm[(int)DType::Q8_0] = packed_gemm_q0_neon<DType::Q8_0>;
    t.convert[(int)DType::Q8_K] = convert_q8_k;
    t.convert[(int)DType::Q8_0] = convert_q8_0;
    t.convert[(int)DType::F16] = convert_f16;
#define TANDEM_NEON(T, K)               \
    t.gemv[(int)DType::T] = gemv<K>;    \
    t.gemm[(int)DType::T] = gemm<K>;    \
    t.fast[(int)DType::T] = true;
    TANDEM_NEON(Q4_K, KernQ4K)
    TANDEM_NEON(Q5_K, KernQ5K)
    TANDEM_NEON(Q6_K, KernQ6K)
    TANDEM_NEON(Q8_0, KernQ0<DecodeQ8_0>)
    TANDEM_NEON(Q4_0, KernQ0<DecodeQ4_0>)
    TANDEM_NEON(Q5_0, KernQ0<DecodeQ5_0>)
    TANDEM_NEON(IQ4_NL, KernQ0<DecodeIQ4NL>)
    TANDEM_NEON(Q3_K, KernQ3K)
    TANDEM_NEON(Q2_K, KernQ2K)
    TANDEM_NEON(IQ4_XS, KernIQ4XS)
    TANDEM_NEON(F16, KernF16)
    TANDEM_NEON(BF16, KernBF16)
    TANDEM_NEON(F32, KernF32)
#undef TANDEM_NEON
    t.attn_scores = attn_scores;
    t.attn_values = attn_values;
    t.attention = attention_neon;  // (the flash kernel: the forward's attend() path, head_dim % 16 == 0)
}

}  // namespace
}  // namespace tandem::cpu
