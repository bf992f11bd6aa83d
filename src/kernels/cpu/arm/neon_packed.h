// NEON kernels over the packed 16-row layouts of kernels/reference/packed.h (every one: Q4_K,
// Q5_K, IQ4_XS, Q6_K, Q3_K and Q2_K x16, and the 32-element types'), included by neon_kernels.h inside its anonymous namespace (compiled once per NEON
// table).
//
// The layout made for VPDPBUSD suits SDOT by lane as it is: a 64-byte chunk holds 4 columns of
// 16 rows, i.e. four 16-byte vectors of 4 rows x 4 columns, and `vdotq_laneq_s32(acc, w, a, i)`
// multiplies each row's 4 bytes by the 4 activations in lane i of a: 4 row sums per instruction,
// no horizontal adds, the 16 rows' scales already spread out for whole-vector multiplies. Weight
// levels stay unsigned (Q4_K 0..15, Q5_K 0..31 with its fifth bits or'ed in, Q6_K 0..63:
// non-negative s8 for SDOT); the Q4_K/Q5_K mins and the Q6_K offset of 32 come back through the
// Q8_K block sums, as on x86. Integer sums are exact, so
// the result equals the reference up to float summation order. Tiles of up to 4 tokens share each
// unpacked chunk.
// (No #include here: this file is read inside neon_kernels.h's namespaces; that file includes
// <algorithm> and kernels/reference/packed.h.)
#pragma once

namespace pq4n = ref::packed_q4_k;
namespace pq6n = ref::packed_q6_k;
namespace piq4n = ref::packed_iq4_xs;
namespace pq3n = ref::packed_q3_k;
namespace pq2n = ref::packed_q2_k;

constexpr int kPackedTile = 4;  // tokens per pass over a group

// acc[r] += sum_b w[4r + b] * a[4L + b], r = 0..3: one lane of a against four rows
template <int L>
inline int32x4_t dot_lane(int32x4_t acc, int8x16_t w, int8x16_t a) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_laneq_s32(acc, w, a, L);
#else  // widening products of the lane's 4 bytes, repeated, then per-row sums of 4
    const int8x16_t b = vreinterpretq_s8_s32(vdupq_laneq_s32(vreinterpretq_s32_s8(a), L));
    const int32x4_t lo = vpaddlq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(b)));
    const int32x4_t hi = vpaddlq_s16(vmull_high_s8(w, b));
    return vaddq_s32(acc, vpaddq_s32(lo, hi));
#endif
}

// 16 bytes (one per row) as four int32x4 (rows 4k .. 4k + 3)
inline void widen_u8(uint8x16_t v, int32x4_t* out) {
    const uint16x8_t lo = vmovl_u8(vget_low_u8(v)), hi = vmovl_u8(vget_high_u8(v));
    out[0] = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(lo)));
    out[1] = vreinterpretq_s32_u32(vmovl_u16(vget_high_u16(lo)));
    out[2] = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(hi)));
    out[3] = vreinterpretq_s32_u32(vmovl_u16(vget_high_u16(hi)));
}
inline void widen_s8(int8x16_t v, int32x4_t* out) {
    const int16x8_t lo = vmovl_s8(vget_low_s8(v)), hi = vmovl_s8(vget_high_s8(v));
    out[0] = vmovl_s16(vget_low_s16(lo));
    out[1] = vmovl_s16(vget_high_s16(lo));
    out[2] = vmovl_s16(vget_low_s16(hi));
    out[3] = vmovl_s16(vget_high_s16(hi));
}

// y[t * ldy + 4k + l] += a.d * (d . isum - dmin . mn) for one block's 16 rows (f16 d/dmin[16])
inline void add_block(float* y, const uint8_t* d16, const uint8_t* dmin16, float ad, const int32x4_t* isum,
                      const int32x4_t* mn) {
    for (int k = 0; k < 4; ++k) {
        const float32x4_t d = vcvt_f32_f16(vld1_f16(reinterpret_cast<const float16_t*>(d16) + 4 * k));
        float32x4_t v = vmulq_f32(d, vcvtq_f32_s32(isum[k]));
        if (dmin16) {
            const float32x4_t dm = vcvt_f32_f16(vld1_f16(reinterpret_cast<const float16_t*>(dmin16) + 4 * k));
            v = vmlsq_f32(v, dm, vcvtq_f32_s32(mn[k]));
        }
        vst1q_f32(y + 4 * k, vmlaq_n_f32(vld1q_f32(y + 4 * k), v, ad));
    }
}

// Bit B of every byte of qh moved to bit 4 (the fifth bit of a Q5_K level), the rest cleared
template <int B>
inline uint8x16_t fifth_bit(uint8x16_t qh) {
    const uint8x16_t m10 = vdupq_n_u8(0x10);
    if constexpr (B < 4) return vandq_u8(vshlq_n_u8(qh, 4 - B), m10);
    else if constexpr (B > 4) return vandq_u8(vshrq_n_u8(qh, B - 4), m10);
    else return vandq_u8(qh, m10);
}

// The layouts with 32-element sub-blocks of 4-bit chunks: Q4_K x16, Q5_K x16 (levels 0..31 with
// the fifth bits), IQ4_XS x16 (indices into its 16 signed levels, looked up with TBL; signed
// scales, no mins)
enum class K32n { q4, q5, iq4 };

// One such group x T tokens: y[t * ldy + r] (zeroed here)
template <K32n K, int T>
void k32_x16(const uint8_t* g, int64_t nb, const BlockQ8_K* const* a, float* y, int64_t ldy) {
    for (int t = 0; t < T; ++t)
        for (int k = 0; k < 4; ++k) vst1q_f32(y + t * ldy + 4 * k, vdupq_n_f32(0));
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    constexpr bool Q5 = K == K32n::q5, IQ4 = K == K32n::iq4;
    constexpr size_t kBlock = Q5 ? ref::kPackedQ5KBlock : IQ4 ? ref::kPackedIQ4XSBlock : ref::kPackedQ4KBlock;
    constexpr size_t kSc = IQ4 ? piq4n::sc : pq4n::sc, kQs = IQ4 ? piq4n::qs : pq4n::qs;
    const int8x16_t levels = vld1q_s8(ref::kIq4nlValues);
    for (int64_t ib = 0; ib < nb; ++ib, g += kBlock) {
        int32x4_t isum[T][4];
        for (int t = 0; t < T; ++t)
            for (int k = 0; k < 4; ++k) isum[t][k] = vdupq_n_s32(0);
        for (int j = 0; j < 8; ++j) {  // sub-block j: chunks 4j .. 4j + 3
            int32x4_t s[T][4];
            int8x16_t alo[T], ahi[T];
            for (int t = 0; t < T; ++t) {
                alo[t] = vld1q_s8(a[t][ib].qs + 32 * j);  // lane i: the low nibbles' columns of chunk 4j + i
                ahi[t] = vld1q_s8(a[t][ib].qs + 32 * j + 16);
                for (int k = 0; k < 4; ++k) s[t][k] = vdupq_n_s32(0);
            }
            uint8x16_t qh[4];  // Q5_K: the fifth bits of sub-block j, 16 bytes per 4 rows as the chunks
            if constexpr (Q5)
                for (int k = 0; k < 4; ++k) qh[k] = vld1q_u8(g + ref::packed_q5_k::qh + 64 * j + 16 * k);
            auto chunk = [&]<int I>() {
                const uint8_t* c = g + kQs + 64 * (4 * j + I);
                for (int k = 0; k < 4; ++k) {
                    const uint8x16_t w = vld1q_u8(c + 16 * k);
                    uint8x16_t lo = vandq_u8(w, m4), hi = vshrq_n_u8(w, 4);
                    if constexpr (Q5) {  // bits 2I (low nibble) and 2I + 1 (high) of qh
                        lo = vorrq_u8(lo, fifth_bit<2 * I>(qh[k]));
                        hi = vorrq_u8(hi, fifth_bit<2 * I + 1>(qh[k]));
                    }
                    int8x16_t wl = vreinterpretq_s8_u8(lo), wh = vreinterpretq_s8_u8(hi);
                    if constexpr (IQ4) {
                        wl = vqtbl1q_s8(levels, lo);
                        wh = vqtbl1q_s8(levels, hi);
                    }
                    for (int t = 0; t < T; ++t) s[t][k] = dot_lane<I>(dot_lane<I>(s[t][k], wl, alo[t]), wh, ahi[t]);
                }
            };
            chunk.template operator()<0>();
            chunk.template operator()<1>();
            chunk.template operator()<2>();
            chunk.template operator()<3>();
            int32x4_t sc[4];
            if constexpr (IQ4) widen_s8(vld1q_s8(reinterpret_cast<const int8_t*>(g + kSc + 16 * j)), sc);
            else widen_u8(vld1q_u8(g + kSc + 16 * j), sc);
            for (int t = 0; t < T; ++t)
                for (int k = 0; k < 4; ++k) isum[t][k] = vmlaq_s32(isum[t][k], s[t][k], sc[k]);
        }
        if constexpr (IQ4) {  // x = d sc level: no mins
            for (int t = 0; t < T; ++t) add_block(y + t * ldy, g + piq4n::d, nullptr, a[t][ib].d, isum[t], nullptr);
            continue;
        }
        // the mins: m[pair p][row][2p, 2p + 1] against the Q8_K sums of sub-blocks 2p, 2p + 1
        int32x4_t mw[8][4];
        for (int p = 0; p < 4; ++p) {
            const uint8x16x2_t mm = vld2q_u8(g + pq4n::m + 32 * p);
            widen_u8(mm.val[0], mw[2 * p]);
            widen_u8(mm.val[1], mw[2 * p + 1]);
        }
        for (int t = 0; t < T; ++t) {
            const int16_t* bs = a[t][ib].bsums;
            int32x4_t mn[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
            for (int sb = 0; sb < 8; ++sb) {
                const int32_t ps = (int32_t)bs[2 * sb] + bs[2 * sb + 1];
                for (int k = 0; k < 4; ++k) mn[k] = vmlaq_n_s32(mn[k], mw[sb][k], ps);
            }
            add_block(y + t * ldy, g + pq4n::d, g + pq4n::dmin, a[t][ib].d, isum[t], mn);
        }
    }
}

// The layouts with 16-element sub-blocks (units): Q6_K x16 (qh chunk, ql chunks 0 and 1; the
// four operand vectors meet the activations 16s + {0, 8, 4, 12}: lanes 0, 2, 1, 3 of a.qs + 16s),
// Q3_K x16 (a q2 chunk of 2-bit planes + 4 high-bit masks; levels q2 + 4h, the 4 back through
// the block sums) and Q2_K x16 (the q2 chunk; unsigned scales and mins). Q3_K/Q2_K plane k meets
// activations 16s + 4k (lane k).
enum class K16n { q6, q3, q2 };

// The four operand vectors of rows 4k .. 4k + 3 of unit u
template <K16n K>
inline void k16_operands(const uint8_t* u, int k, int8x16_t* w) {
    const uint8x16_t m3 = vdupq_n_u8(0x03);
    if constexpr (K == K16n::q6) {
        const uint8x16_t m4 = vdupq_n_u8(0x0f);
        const uint8x16_t qh = vld1q_u8(u + 16 * k), l0 = vld1q_u8(u + 64 + 16 * k), l1 = vld1q_u8(u + 128 + 16 * k);
        w[0] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(l0, m4), vshlq_n_u8(vandq_u8(qh, m3), 4)));
        w[1] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(l0, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 2), m3), 4)));
        w[2] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(l1, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 4), m3), 4)));
        w[3] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(l1, 4), vshlq_n_u8(vshrq_n_u8(qh, 6), 4)));
    } else {
        const uint8x16_t q = vld1q_u8(u + 16 * k);
        uint8x16_t v[4] = {vandq_u8(q, m3), vandq_u8(vshrq_n_u8(q, 2), m3), vandq_u8(vshrq_n_u8(q, 4), m3),
                           vshrq_n_u8(q, 6)};
        if constexpr (K == K16n::q3) {  // + 4 where mask j has bit 4r + b: bits 16k .. 16k + 15 here
            static const uint8_t kBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
            const uint8x16_t bit = vld1q_u8(kBit), four = vdupq_n_u8(4);
            for (int j = 0; j < 4; ++j) {
                uint16_t h;
                std::memcpy(&h, u + 64 + 8 * j + 2 * k, 2);
                const uint8x16_t hb = vcombine_u8(vdup_n_u8((uint8_t)h), vdup_n_u8((uint8_t)(h >> 8)));
                v[j] = vorrq_u8(v[j], vandq_u8(vtstq_u8(hb, bit), four));
            }
        }
        for (int j = 0; j < 4; ++j) w[j] = vreinterpretq_s8_u8(v[j]);
    }
}

// One such group x T tokens: y[t * ldy + r] (zeroed here)
template <K16n K, int T>
void k16_x16(const uint8_t* g, int64_t nb, const BlockQ8_K* const* a, float* y, int64_t ldy) {
    for (int t = 0; t < T; ++t)
        for (int k = 0; k < 4; ++k) vst1q_f32(y + t * ldy + 4 * k, vdupq_n_f32(0));
    constexpr size_t kBlock = K == K16n::q6 ? ref::kPackedQ6KBlock : K == K16n::q3 ? ref::kPackedQ3KBlock
                                                                                    : ref::kPackedQ2KBlock;
    constexpr size_t kSc = K == K16n::q2 ? pq2n::sc : pq6n::sc;  // (Q3_K's scales sit where Q6_K's do)
    for (int64_t ib = 0; ib < nb; ++ib, g += kBlock) {
        // corr: sum of sc_s bsums_s (Q6_K/Q3_K: the levels' offset), or of m_s bsums_s (Q2_K: the mins)
        int32x4_t isum[T][4], corr[T][4];
        for (int t = 0; t < T; ++t)
            for (int k = 0; k < 4; ++k) isum[t][k] = corr[t][k] = vdupq_n_s32(0);
        for (int p = 0; p < 8; ++p) {  // units 2p, 2p + 1 share a load of their scales ([row][2] pairs)
            int8x16x2_t scp;
            uint8x16x2_t mp;
            if constexpr (K == K16n::q2) {
                const uint8x16x2_t su = vld2q_u8(g + kSc + 32 * p);
                scp = {{vreinterpretq_s8_u8(su.val[0]), vreinterpretq_s8_u8(su.val[1])}};  // (0..15)
                mp = vld2q_u8(g + pq2n::m + 32 * p);
            } else {
                scp = vld2q_s8(reinterpret_cast<const int8_t*>(g + kSc + 32 * p));
            }
            for (int e = 0; e < 2; ++e) {
                const int s = 2 * p + e;
                int32x4_t sc[4], cw[4];  // cw: what the block sums are weighted by (scales, or mins)
                widen_s8(scp.val[e], sc);
                if constexpr (K == K16n::q2) widen_u8(mp.val[e], cw);
                else
                    for (int k = 0; k < 4; ++k) cw[k] = sc[k];
                const uint8_t* u = g + (K == K16n::q6 ? pq6n::qh(s) : K == K16n::q3 ? pq3n::q2(s) : pq2n::q2(s));
                int32x4_t acc[T][4];
                int8x16_t av[T];
                for (int t = 0; t < T; ++t) {
                    av[t] = vld1q_s8(a[t][ib].qs + 16 * s);
                    for (int k = 0; k < 4; ++k) acc[t][k] = vdupq_n_s32(0);
                }
                for (int k = 0; k < 4; ++k) {  // rows 4k .. 4k + 3
                    int8x16_t w[4];
                    k16_operands<K>(u, k, w);
                    for (int t = 0; t < T; ++t) {
                        if constexpr (K == K16n::q6)
                            acc[t][k] = dot_lane<3>(
                                dot_lane<1>(dot_lane<2>(dot_lane<0>(acc[t][k], w[0], av[t]), w[1], av[t]), w[2], av[t]), w[3],
                                av[t]);
                        else
                            acc[t][k] = dot_lane<3>(
                                dot_lane<2>(dot_lane<1>(dot_lane<0>(acc[t][k], w[0], av[t]), w[1], av[t]), w[2], av[t]), w[3],
                                av[t]);
                    }
                }
                for (int t = 0; t < T; ++t) {
                    const int32_t bsum = a[t][ib].bsums[s];
                    for (int k = 0; k < 4; ++k) {
                        isum[t][k] = vmlaq_s32(isum[t][k], acc[t][k], sc[k]);
                        corr[t][k] = vmlaq_n_s32(corr[t][k], cw[k], bsum);
                    }
                }
            }
        }
        for (int t = 0; t < T; ++t) {
            if constexpr (K == K16n::q2) {  // d sc . q - dmin m . bsums
                add_block(y + t * ldy, g + pq2n::d, g + pq2n::dmin, a[t][ib].d, isum[t], corr[t]);
            } else {  // levels q - 32 (Q6_K), q2 + 4h - 4 (Q3_K)
                constexpr int kShift = K == K16n::q6 ? 5 : 2;
                int32x4_t v[4];
                for (int k = 0; k < 4; ++k) v[k] = vsubq_s32(isum[t][k], vshlq_n_s32(corr[t][k], kShift));
                add_block(y + t * ldy, g + pq6n::d, nullptr, a[t][ib].d, v, nullptr);
            }
        }
    }
}

// The 32-element block types (Q4_0, IQ4_NL, Q4_1, Q5_0, Q5_1, Q8_0 x16; Q8_0 activations). A
// 4-bit chunk i meets the block's activations 4i.. (low nibbles, lane i of qs[0..15]) and 16 + 4i..
// (high, lane i of qs[16..31]); Q8_0's chunk i the activations 4i.. (lane i % 4 of the half i / 4).
// Levels: Q4_0 / Q5_0 unsigned (the 8 / 16 back through the activation block's sum), IQ4_NL its
// signed table values (TBL), Q4_1 / Q5_1 unsigned with d q + m (the m through the sum), Q8_0 as
// stored. Per 4 rows and block: y += (d da) isum' [+ m (da asum)] (llama.cpp's order), the float
// sums kept in registers.
template <DType K>
struct Q0nTraits : ref::Q0Const<K> {
    static constexpr int kOffset = K == DType::Q4_0 ? 8 : K == DType::Q5_0 ? 16 : 0;
};

// One group x T tokens of a 32-element type: y[t * ldy + r] (written here)
template <DType K, int T>
void q0_x16(const uint8_t* g, int64_t nb, const BlockQ8_0* const* a, float* y, int64_t ldy) {
    using Tr = Q0nTraits<K>;
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    const int8x16_t levels = vld1q_s8(ref::kIq4nlValues);
    float32x4_t acc[T][4];
    for (int t = 0; t < T; ++t)
        for (int k = 0; k < 4; ++k) acc[t][k] = vdupq_n_f32(0.0f);
    for (int64_t ib = 0; ib < nb; ++ib, g += Tr::kBytes) {
        int8x16_t a0[T], a1[T];
        float da[T];
        int32_t asum[T];
        for (int t = 0; t < T; ++t) {
            a0[t] = vld1q_s8(a[t][ib].qs);
            a1[t] = vld1q_s8(a[t][ib].qs + 16);
            da[t] = half_to_float(a[t][ib].d);
            asum[t] = (int32_t)vaddlvq_s8(a0[t]) + (int32_t)vaddlvq_s8(a1[t]);
        }
        for (int k = 0; k < 4; ++k) {  // rows 4k .. 4k + 3: 16 bytes of each chunk
            int32x4_t s[T];
            for (int t = 0; t < T; ++t) s[t] = vdupq_n_s32(0);
            if constexpr (K == DType::Q8_0) {
                auto chunk = [&]<int I>() {
                    const int8x16_t w = vld1q_s8(reinterpret_cast<const int8_t*>(g + Tr::kQs + 64 * I + 16 * k));
                    for (int t = 0; t < T; ++t) s[t] = dot_lane<I % 4>(s[t], w, I < 4 ? a0[t] : a1[t]);
                };
                chunk.template operator()<0>();
                chunk.template operator()<1>();
                chunk.template operator()<2>();
                chunk.template operator()<3>();
                chunk.template operator()<4>();
                chunk.template operator()<5>();
                chunk.template operator()<6>();
                chunk.template operator()<7>();
            } else {
                uint8x16_t qh = vdupq_n_u8(0);
                if constexpr (Tr::kQh != 0) qh = vld1q_u8(g + Tr::kQh + 16 * k);
                auto chunk = [&]<int I>() {
                    const uint8x16_t w = vld1q_u8(g + Tr::kQs + 64 * I + 16 * k);
                    uint8x16_t lo = vandq_u8(w, m4), hi = vshrq_n_u8(w, 4);
                    if constexpr (Tr::kQh != 0) {  // bits 2I (low nibble) and 2I + 1 (high) of qh
                        lo = vorrq_u8(lo, fifth_bit<2 * I>(qh));
                        hi = vorrq_u8(hi, fifth_bit<2 * I + 1>(qh));
                    }
                    int8x16_t wl = vreinterpretq_s8_u8(lo), wh = vreinterpretq_s8_u8(hi);
                    if constexpr (K == DType::IQ4_NL) {
                        wl = vqtbl1q_s8(levels, lo);
                        wh = vqtbl1q_s8(levels, hi);
                    }
                    for (int t = 0; t < T; ++t) s[t] = dot_lane<I>(dot_lane<I>(s[t], wl, a0[t]), wh, a1[t]);
                };
                chunk.template operator()<0>();
                chunk.template operator()<1>();
                chunk.template operator()<2>();
                chunk.template operator()<3>();
            }
            const float32x4_t d = vcvt_f32_f16(vld1_f16(reinterpret_cast<const float16_t*>(g) + 4 * k));
            float32x4_t dm = vdupq_n_f32(0.0f);
            if constexpr (Tr::kM != 0) dm = vcvt_f32_f16(vld1_f16(reinterpret_cast<const float16_t*>(g + Tr::kM) + 4 * k));
            for (int t = 0; t < T; ++t) {
                int32x4_t sum = s[t];
                if constexpr (Tr::kOffset != 0) sum = vsubq_s32(sum, vdupq_n_s32(Tr::kOffset * asum[t]));
                // llama.cpp's order: the two scales' product, then one multiply-add per block
                acc[t][k] = vmlaq_f32(acc[t][k], vcvtq_f32_s32(sum), vmulq_n_f32(d, da[t]));
                if constexpr (Tr::kM != 0) acc[t][k] = vmlaq_n_f32(acc[t][k], dm, da[t] * (float)asum[t]);
            }
        }
    }
    for (int t = 0; t < T; ++t)
        for (int k = 0; k < 4; ++k) vst1q_f32(y + t * ldy + 4 * k, acc[t][k]);
}

template <DType K, int T>
void q0_group(const uint8_t* g, int64_t nb, const void* const* acts, float* y, int64_t ldy) {
    const BlockQ8_0* a[T];
    for (int t = 0; t < T; ++t) a[t] = static_cast<const BlockQ8_0*>(acts[t]);
    q0_x16<K, T>(g, nb, a, y, ldy);
}

using PackedGroupFn = void (*)(const uint8_t*, int64_t, const BlockQ8_K* const*, float*, int64_t);

template <template <int> class K>
constexpr PackedGroupFn kPackedFns[kPackedTile] = {K<1>::fn, K<2>::fn, K<3>::fn, K<4>::fn};
template <int T>
struct Q4KX16 {
    static constexpr PackedGroupFn fn = k32_x16<K32n::q4, T>;
};
template <int T>
struct Q5KX16 {
    static constexpr PackedGroupFn fn = k32_x16<K32n::q5, T>;
};
template <int T>
struct IQ4XSX16 {
    static constexpr PackedGroupFn fn = k32_x16<K32n::iq4, T>;
};
template <int T>
struct Q6KX16 {
    static constexpr PackedGroupFn fn = k16_x16<K16n::q6, T>;
};
template <int T>
struct Q3KX16 {
    static constexpr PackedGroupFn fn = k16_x16<K16n::q3, T>;
};
template <int T>
struct Q2KX16 {
    static constexpr PackedGroupFn fn = k16_x16<K16n::q2, T>;
};

// The 32-element types' packed_gemm entry: every group, the tokens in tiles of up to kPackedTile
template <DType K>
void packed_gemm_q0_neon(const uint8_t* w, int64_t n_groups, int64_t n, const void* const* acts, int64_t n_tok,
                         float* y, int64_t ldy) {
    using Fn = void (*)(const uint8_t*, int64_t, const void* const*, float*, int64_t);
    static constexpr Fn fns[kPackedTile] = {q0_group<K, 1>, q0_group<K, 2>, q0_group<K, 3>, q0_group<K, 4>};
    const size_t gb = ref::packed_group_bytes(K, n);
    const int64_t nb = n / ref::kQK;
    for (int64_t g = 0; g < n_groups; ++g)
        for (int64_t t0 = 0; t0 < n_tok; t0 += kPackedTile) {
            const int64_t nt = std::min<int64_t>(kPackedTile, n_tok - t0);
            fns[nt - 1](w + (size_t)g * gb, nb, acts + t0, y + t0 * ldy + g * ref::kPackRows, ldy);
        }
}

// The packed_gemm entry: every group, the tokens in tiles of up to kPackedTile
template <DType kType>
void packed_gemm_neon(const uint8_t* w, int64_t n_groups, int64_t n, const void* const* acts, int64_t n_tok, float* y,
                      int64_t ldy) {
    const PackedGroupFn* fns = kType == DType::Q6_K   ? kPackedFns<Q6KX16>
                               : kType == DType::Q3_K ? kPackedFns<Q3KX16>
                               : kType == DType::Q2_K ? kPackedFns<Q2KX16>
                               : kType == DType::Q5_K ? kPackedFns<Q5KX16>
                               : kType == DType::IQ4_XS ? kPackedFns<IQ4XSX16>
                                                      : kPackedFns<Q4KX16>;
    const size_t gb = ref::packed_group_bytes(kType, n);
    const int64_t nb = n / kQK_K;
    for (int64_t g = 0; g < n_groups; ++g)
        for (int64_t t0 = 0; t0 < n_tok; t0 += kPackedTile) {
            const int64_t nt = std::min<int64_t>(kPackedTile, n_tok - t0);
            const BlockQ8_K* a[kPackedTile];
            for (int64_t t = 0; t < nt; ++t) a[t] = static_cast<const BlockQ8_K*>(acts[t0 + t]);
            fns[nt - 1](w + (size_t)g * gb, nb, a, y + t0 * ldy + g * ref::kPackRows, ldy);
        }
}
