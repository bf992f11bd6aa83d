// Reference dequantization and dot products of the types Tandem reads but does not write:
// Q4_1, Q5_1, IQ4_NL (activations as Q8_0) and Q2_K, Q3_K, IQ4_XS (activations as Q8_K), in
// llama.cpp's block layouts (quants.h). Dequantization rounds like ggml's scalar code
// (-ffp-contract=off, the same float operations in the same order); dots sum exact integer
// products per sub-block and scale them in double.
#include <cstddef>
#include <cstring>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "kernels/reference/quants_internal.h"

namespace tandem::ref::detail {
namespace {

// ---- Q4_1 / Q5_1 / IQ4_NL: 32 elements, element j in the low nibble of qs[j], j + 16 in the high

void levels(const BlockQ4_1& b, int* q) {
    for (int j = 0; j < kQK / 2; ++j) {
        q[j] = b.qs[j] & 0x0f;
        q[j + kQK / 2] = b.qs[j] >> 4;
    }
}

void levels(const BlockQ5_1& b, int* q) {
    uint32_t qh;
    std::memcpy(&qh, b.qh, 4);
    for (int j = 0; j < kQK / 2; ++j) {
        q[j] = (b.qs[j] & 0x0f) | (int)(((qh >> j) << 4) & 0x10);
        q[j + kQK / 2] = (b.qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
    }
}

template <typename Block>
void dequantize_affine32(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const Block*>(src);
    int q[kQK];
    for (int64_t ib = 0; ib < n / kQK; ++ib, dst += kQK) {
        const float d = fp16_to_fp32(blocks[ib].d), m = fp16_to_fp32(blocks[ib].m);
        levels(blocks[ib], q);
        for (int j = 0; j < kQK; ++j) dst[j] = (float)q[j] * d + m;
    }
}

// sum_j (d * q_j + m) * da * a_j = da * (d * sum q_j a_j + m * sum a_j)
template <typename Block>
double dot_affine32(const void* w, const void* a, int64_t n) {
    const auto* wb = static_cast<const Block*>(w);
    const auto* ab = static_cast<const BlockQ8_0*>(a);
    int q[kQK];
    double sum = 0;
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        levels(wb[ib], q);
        int64_t qa = 0, sa = 0;
        for (int j = 0; j < kQK; ++j) {
            qa += (int64_t)q[j] * ab[ib].qs[j];
            sa += ab[ib].qs[j];
        }
        sum += (double)fp16_to_fp32(ab[ib].d) *
               ((double)fp16_to_fp32(wb[ib].d) * (double)qa + (double)fp16_to_fp32(wb[ib].m) * (double)sa);
    }
    return sum;
}

// ---- Q2_K / Q3_K: element e = 128 * half + 32 * j + l sits in qs[32 * half + l] at bits 2j

inline int q2_at(const uint8_t* qs, int e) {
    const int half = e / 128, j = (e % 128) / 32, l = e % 32;
    return (qs[32 * half + l] >> (2 * j)) & 3;
}

// Q3_K's 16 six-bit scales: low 4 bits in bytes 0..7 (nibbles), high 2 bits in bytes 8..11
void q3_k_scales(const uint8_t* s, int8_t* sc) {
    for (int i = 0; i < 16; ++i) {
        const int lo = i < 8 ? s[i] & 0x0f : s[i - 8] >> 4;
        const int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        sc[i] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

}  // namespace

void q2_k_levels(const BlockQ2_K& b, uint8_t* q, uint8_t* sc, uint8_t* m) {
    for (int e = 0; e < kQK_K; ++e) q[e] = (uint8_t)q2_at(b.qs, e);
    for (int i = 0; i < 16; ++i) {
        sc[i] = b.scales[i] & 0x0f;
        m[i] = b.scales[i] >> 4;
    }
}

void q3_k_levels(const BlockQ3_K& b, int8_t* v, int8_t* sc) {
    for (int e = 0; e < kQK_K; ++e) {
        const int l = e % 32, bit = e / 32;  // hmask: bit (e / 32) of byte (e % 32)
        const int h = (b.hmask[l] >> bit) & 1;
        v[e] = (int8_t)(q2_at(b.qs, e) - (h ? 0 : 4));
    }
    q3_k_scales(b.scales, sc);
}

namespace {
// 2-bit levels into qs: element e = 128 h + 32 j + l at bits 2j of qs[32 h + l]
void put_q2(const uint8_t* q, uint8_t* qs) {
    std::memset(qs, 0, kQK_K / 4);
    for (int e = 0; e < kQK_K; ++e) qs[32 * (e / 128) + e % 32] |= (uint8_t)((q[e] & 3) << (2 * ((e % 128) / 32)));
}
}  // namespace

void q2_k_from_levels(const uint8_t* q, const uint8_t* sc, const uint8_t* m, BlockQ2_K& b) {
    put_q2(q, b.qs);
    for (int i = 0; i < 16; ++i) b.scales[i] = (uint8_t)((sc[i] & 15) | (m[i] << 4));
}

void q3_k_from_levels(const int8_t* v, const int8_t* sc, BlockQ3_K& b) {
    uint8_t q[kQK_K];
    std::memset(b.hmask, 0, sizeof b.hmask);
    for (int e = 0; e < kQK_K; ++e) {
        const int u = v[e] + 4;  // 0..7: two low bits, and the high bit (clear: the level is 4 lower)
        q[e] = (uint8_t)(u & 3);
        b.hmask[e % 32] |= (uint8_t)((u >> 2) << (e / 32));
    }
    put_q2(q, b.qs);
    std::memset(b.scales, 0, sizeof b.scales);
    for (int i = 0; i < 16; ++i) {
        const int s6 = sc[i] + 32;
        b.scales[i % 8] |= (uint8_t)((s6 & 15) << (4 * (i / 8)));
        b.scales[8 + i % 4] |= (uint8_t)((s6 >> 4) << (2 * (i / 4)));
    }
}

void iq4_xs_scales(const BlockIQ4_XS& b, int8_t* ls) {
    for (int ib = 0; ib < 8; ++ib)
        ls[ib] = (int8_t)((((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f) | (((b.scales_h >> (2 * ib)) & 3) << 4)) - 32);
}

void iq4_xs_levels(const BlockIQ4_XS& b, uint8_t* q, int8_t* ls) {
    iq4_xs_scales(b, ls);
    for (int j = 0; j < 8; ++j)
        for (int l = 0; l < 16; ++l) {
            q[32 * j + l] = b.qs[16 * j + l] & 0x0f;
            q[32 * j + 16 + l] = b.qs[16 * j + l] >> 4;
        }
}

void iq4_xs_from_levels(const uint8_t* q, const int8_t* ls, BlockIQ4_XS& b) {
    b.scales_h = 0;
    std::memset(b.scales_l, 0, sizeof b.scales_l);
    for (int j = 0; j < 8; ++j) {
        const int s6 = ls[j] + 32;
        b.scales_l[j / 2] |= (uint8_t)((s6 & 15) << (4 * (j % 2)));
        b.scales_h |= (uint16_t)((s6 >> 4) << (2 * j));
        for (int l = 0; l < 16; ++l) b.qs[16 * j + l] = (uint8_t)((q[32 * j + l] & 15) | (q[32 * j + 16 + l] << 4));
    }
}

void dequantize_q4_1(const void* src, float* dst, int64_t n) { dequantize_affine32<BlockQ4_1>(src, dst, n); }
void dequantize_q5_1(const void* src, float* dst, int64_t n) { dequantize_affine32<BlockQ5_1>(src, dst, n); }
double dot_q4_1_q8_0(const void* w, const void* a, int64_t n) { return dot_affine32<BlockQ4_1>(w, a, n); }
double dot_q5_1_q8_0(const void* w, const void* a, int64_t n) { return dot_affine32<BlockQ5_1>(w, a, n); }

void dequantize_iq4_nl(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const BlockIQ4_NL*>(src);
    for (int64_t ib = 0; ib < n / kQK; ++ib, dst += kQK) {
        const float d = fp16_to_fp32(blocks[ib].d);
        for (int j = 0; j < kQK / 2; ++j) {
            dst[j] = d * (float)kIq4nlValues[blocks[ib].qs[j] & 0x0f];
            dst[j + kQK / 2] = d * (float)kIq4nlValues[blocks[ib].qs[j] >> 4];
        }
    }
}

double dot_iq4_nl_q8_0(const void* w, const void* a, int64_t n) {
    const auto* wb = static_cast<const BlockIQ4_NL*>(w);
    const auto* ab = static_cast<const BlockQ8_0*>(a);
    double sum = 0;
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        int32_t isum = 0;
        for (int j = 0; j < kQK / 2; ++j)
            isum += kIq4nlValues[wb[ib].qs[j] & 0x0f] * ab[ib].qs[j] + kIq4nlValues[wb[ib].qs[j] >> 4] * ab[ib].qs[j + 16];
        sum += (double)isum * fp16_to_fp32(wb[ib].d) * fp16_to_fp32(ab[ib].d);
    }
    return sum;
}

void dequantize_q2_k(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const BlockQ2_K*>(src);
    uint8_t q[kQK_K], sc[16], m[16];
    for (int64_t ib = 0; ib < n / kQK_K; ++ib, dst += kQK_K) {
        const float d = fp16_to_fp32(blocks[ib].d), dmin = fp16_to_fp32(blocks[ib].dmin);
        q2_k_levels(blocks[ib], q, sc, m);
        for (int i = 0; i < 16; ++i) {
            const float dl = d * (float)sc[i], ml = dmin * (float)m[i];
            for (int l = 0; l < 16; ++l) dst[16 * i + l] = dl * (float)q[16 * i + l] - ml;
        }
    }
}

double dot_q2_k_q8_k(const void* w, const void* a, int64_t n) {
    const auto* wb = static_cast<const BlockQ2_K*>(w);
    const auto* ab = static_cast<const BlockQ8_K*>(a);
    uint8_t q[kQK_K], sc[16], m[16];
    double sum = 0;
    for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
        q2_k_levels(wb[ib], q, sc, m);
        int64_t qsum = 0, msum = 0;
        for (int i = 0; i < 16; ++i) {
            int32_t s = 0;
            for (int l = 0; l < 16; ++l) s += q[16 * i + l] * ab[ib].qs[16 * i + l];
            qsum += (int64_t)sc[i] * s;
            msum += (int64_t)m[i] * ab[ib].bsums[i];
        }
        sum += (double)ab[ib].d * ((double)fp16_to_fp32(wb[ib].d) * (double)qsum -
                                   (double)fp16_to_fp32(wb[ib].dmin) * (double)msum);
    }
    return sum;
}

void dequantize_q3_k(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const BlockQ3_K*>(src);
    int8_t v[kQK_K], sc[16];
    for (int64_t ib = 0; ib < n / kQK_K; ++ib, dst += kQK_K) {
        const float d = fp16_to_fp32(blocks[ib].d);
        q3_k_levels(blocks[ib], v, sc);
        for (int i = 0; i < 16; ++i) {
            const float dl = d * (float)sc[i];
            for (int l = 0; l < 16; ++l) dst[16 * i + l] = dl * (float)v[16 * i + l];
        }
    }
}

double dot_q3_k_q8_k(const void* w, const void* a, int64_t n) {
    const auto* wb = static_cast<const BlockQ3_K*>(w);
    const auto* ab = static_cast<const BlockQ8_K*>(a);
    int8_t v[kQK_K], sc[16];
    double sum = 0;
    for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
        q3_k_levels(wb[ib], v, sc);
        int64_t isum = 0;
        for (int i = 0; i < 16; ++i) {
            int32_t s = 0;
            for (int l = 0; l < 16; ++l) s += v[16 * i + l] * ab[ib].qs[16 * i + l];
            isum += (int64_t)sc[i] * s;
        }
        sum += (double)ab[ib].d * (double)fp16_to_fp32(wb[ib].d) * (double)isum;
    }
    return sum;
}

void dequantize_iq4_xs(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const BlockIQ4_XS*>(src);
    int8_t ls[8];
    for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
        const float d = fp16_to_fp32(blocks[ib].d);
        iq4_xs_scales(blocks[ib], ls);
        const uint8_t* qs = blocks[ib].qs;
        for (int j = 0; j < 8; ++j, dst += 32, qs += 16) {
            const float dl = d * (float)ls[j];
            for (int l = 0; l < 16; ++l) {
                dst[l] = dl * (float)kIq4nlValues[qs[l] & 0x0f];
                dst[l + 16] = dl * (float)kIq4nlValues[qs[l] >> 4];
            }
        }
    }
}

double dot_iq4_xs_q8_k(const void* w, const void* a, int64_t n) {
    const auto* wb = static_cast<const BlockIQ4_XS*>(w);
    const auto* ab = static_cast<const BlockQ8_K*>(a);
    int8_t ls[8];
    double sum = 0;
    for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
        iq4_xs_scales(wb[ib], ls);
        const uint8_t* qs = wb[ib].qs;
        const int8_t* qa = ab[ib].qs;
        int64_t isum = 0;
        for (int j = 0; j < 8; ++j, qs += 16, qa += 32) {
            int32_t s = 0;
            for (int l = 0; l < 16; ++l) s += kIq4nlValues[qs[l] & 0x0f] * qa[l] + kIq4nlValues[qs[l] >> 4] * qa[l + 16];
            isum += (int64_t)ls[j] * s;
        }
        sum += (double)ab[ib].d * (double)fp16_to_fp32(wb[ib].d) * (double)isum;
    }
    return sum;
}

}  // namespace tandem::ref::detail

namespace tandem::ref {

void random_blocks(DType type, uint64_t seed, void* dst, int64_t n) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> scale(0.0f, 0.01f);
    const size_t bytes = row_bytes(type, n), bb = traits(type).block_bytes;
    auto* p = static_cast<uint8_t*>(dst);
    for (size_t i = 0; i < bytes; ++i) p[i] = (uint8_t)rng();
    std::vector<size_t> halves;  // offsets of the block's f16 fields
    switch (type) {
        case DType::Q4_1: case DType::Q5_1: halves = {offsetof(BlockQ4_1, d), offsetof(BlockQ4_1, m)}; break;
        case DType::Q2_K: halves = {offsetof(BlockQ2_K, d), offsetof(BlockQ2_K, dmin)}; break;
        case DType::Q3_K: halves = {offsetof(BlockQ3_K, d)}; break;
        case DType::Q4_K: case DType::Q5_K: halves = {offsetof(BlockQ4_K, d), offsetof(BlockQ4_K, dmin)}; break;
        case DType::Q6_K: halves = {offsetof(BlockQ6_K, d)}; break;
        case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: case DType::IQ4_NL: case DType::IQ4_XS: halves = {0}; break;
        case DType::F16: case DType::BF16:  // every element is a half
            for (size_t i = 0; i < bytes; i += 2) {
                const uint16_t v = type == DType::F16 ? fp32_to_fp16(scale(rng)) : fp32_to_bf16(scale(rng));
                std::memcpy(p + i, &v, 2);
            }
            return;
        default:  // F32, Q8_K, integers: floats
            for (size_t i = 0; i + 4 <= bytes; i += 4) {
                const float v = scale(rng);
                std::memcpy(p + i, &v, 4);
            }
            return;
    }
    for (size_t off = 0; off < bytes; off += bb)
        for (size_t h : halves) {
            const uint16_t v = fp32_to_fp16(scale(rng));
            std::memcpy(p + off + h, &v, 2);
        }
}

}  // namespace tandem::ref
