// Weight decoders shared by the CUDA kernels and the host: element e of a GGUF row, and the 32
// elements of chunk c (elements 32c .. 32c + 31) at once, decoded from their blocks as
// kernels/reference/quants.h lays them out, with the reference's float operations in its order
// (so the results are the reference's bit for bit: tests/unit/cuda_decode_test.cpp checks them
// on the CPU, where no GPU is needed). Compiled by nvcc for the device (kernels.cu, mma.cu) and
// by the host compiler for that test; CUDA types appear only under __CUDA_ARCH__ / __CUDACC__.
#pragma once
#include <cstdint>

#include "backend/cuda/host_device.h"
#include "core/dtype.h"
#if defined(__CUDACC__)
#include <cuda_fp16.h>
#endif
#include "core/fp16.h"
#include "kernels/reference/quants.h"

namespace tandem::cuda {

TANDEM_HD float half_bits(uint16_t h) {
#if defined(__CUDA_ARCH__)
    return __half2float(__ushort_as_half(h));
#else
    return fp16_to_fp32(h);
#endif
}
TANDEM_HD float bf16_bits(uint16_t h) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float((uint32_t)h << 16);
#else
    return bf16_to_fp32(h);
#endif
}

// ---- Weights: element e of a row, decoded from its block (block layouts as kernels/reference/quants.h).

// Q8_0: 34-byte blocks of 32: f16 d, 32 x int8
TANDEM_HD float elem_q8_0(const uint8_t* row, int64_t e) {
    const uint8_t* b = row + (e / 32) * 34;
    const uint16_t d = (uint16_t)b[0] | ((uint16_t)b[1] << 8);
    return half_bits(d) * (float)(int8_t)b[2 + e % 32];
}

// Sub-block j of a Q4_K / Q5_K super-block b (f16 d, f16 dmin, then 12 bytes of 6-bit (scale,
// min) x 8): its step d sc_j and offset dmin m_j, so that x = step q - offset.
struct KSub {
    float step, offset;
};
TANDEM_HD KSub k_sub(const uint8_t* b, int j) {
    const float d = half_bits((uint16_t)b[0] | ((uint16_t)b[1] << 8));
    const float dmin = half_bits((uint16_t)b[2] | ((uint16_t)b[3] << 8));
    const uint8_t* s = b + 4;
    int sc, m;
    if (j < 4) {
        sc = s[j] & 63;
        m = s[j + 4] & 63;
    } else {
        sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
    return {d * (float)sc, dmin * (float)m};
}

// Q4_K: 144-byte super-blocks of 256: the header above, then 128 qs. Sub-block j (32 elements)
// is nibble j % 2 of qs[32 (j / 2) + l].
TANDEM_HD float elem_q4_k(const uint8_t* row, int64_t e) {
    const uint8_t* b = row + (e / 256) * 144;
    const int i = (int)(e % 256), j = i / 32, l = i % 32;
    const KSub k = k_sub(b, j);
    const int q = (b[16 + 32 * (j / 2) + l] >> (4 * (j % 2))) & 0x0f;
    return k.step * (float)q - k.offset;
}

// Q5_K: 176-byte super-blocks: the header, qh[32], qs[128]; the fifth bit of element 32 j + l is
// bit j of qh[l].
TANDEM_HD float elem_q5_k(const uint8_t* row, int64_t e) {
    const uint8_t* b = row + (e / 256) * 176;
    const int i = (int)(e % 256), j = i / 32, l = i % 32;
    const KSub k = k_sub(b, j);
    const int lo = (b[48 + 32 * (j / 2) + l] >> (4 * (j % 2))) & 0x0f;
    const int hi = (b[16 + l] >> j) & 1;
    return k.step * (float)(lo | (hi << 4)) - k.offset;
}

// Q6_K: 210-byte super-blocks: ql[128], qh[64], int8 scales[16], f16 d. With h = i / 128,
// g = (i % 128) / 32, l = i % 32: low nibble of ql[64h + 32(g & 1) + l] (high when g >= 2), two
// bits at 2g of qh[32h + l]; x = d scales[i / 16] (q - 32).
TANDEM_HD float elem_q6_k(const uint8_t* row, int64_t e) {
    const uint8_t* b = row + (e / 256) * 210;
    const int i = (int)(e % 256), h = i / 128, g = (i % 128) / 32, l = i % 32;
    const int lo = (b[64 * h + 32 * (g & 1) + l] >> (g >= 2 ? 4 : 0)) & 0x0f;
    const int hi = (b[128 + 32 * h + l] >> (2 * g)) & 3;
    const float d = half_bits((uint16_t)b[208] | ((uint16_t)b[209] << 8));
    return d * (float)(int8_t)b[192 + i / 16] * (float)((lo | (hi << 4)) - 32);
}

TANDEM_HD float half_at(const uint8_t* p) { return half_bits((uint16_t)p[0] | ((uint16_t)p[1] << 8)); }

// Q4_1 / Q5_1: blocks of 32 (f16 d, f16 m, [Q5_1: qh 4 bytes,] qs[16]); element l < 16 in the low
// nibble of qs[l], l + 16 in the high one; the fifth bit of element l is bit l of qh. x = d q + m.
template <bool Q5>
TANDEM_HD float elem_affine32(const uint8_t* row, int64_t e) {
    const uint8_t* b = row + (e / 32) * (Q5 ? 24 : 20);
    const int l = (int)(e % 32);
    const uint8_t* qs = b + (Q5 ? 8 : 4);
    int q = (qs[l % 16] >> (l < 16 ? 0 : 4)) & 0x0f;
    if constexpr (Q5) {
        const uint32_t qh = (uint32_t)b[4] | ((uint32_t)b[5] << 8) | ((uint32_t)b[6] << 16) | ((uint32_t)b[7] << 24);
        q |= (int)((qh >> l) & 1) << 4;
    }
    return (float)q * half_at(b) + half_at(b + 2);
}

#if defined(__CUDACC__)
namespace {  // (a copy per .cu file: no symbol shared between them)
__constant__ int8_t kIq4nlDevice[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
}  // namespace
#endif
TANDEM_HD int iq4_level(int q) {
#if defined(__CUDA_ARCH__)
    return kIq4nlDevice[q];
#else
    return ref::kIq4nlValues[q];
#endif
}

// IQ4_NL: blocks of 32 (f16 d, qs[16] as Q4_1's): x = d level[q]
TANDEM_HD float elem_iq4_nl(const uint8_t* row, int64_t e) {
    const uint8_t* b = row + (e / 32) * 18;
    const int l = (int)(e % 32);
    return half_at(b) * (float)iq4_level((b[2 + l % 16] >> (l < 16 ? 0 : 4)) & 0x0f);
}

// IQ4_XS: 136-byte blocks of 256 (f16 d, u16 scales_h, scales_l[4], qs[128]); sub-block j of 32
// has the 6-bit scale (nibble j % 2 of scales_l[j / 2]) | (bits 2j of scales_h) << 4, minus 32;
// its qs are 16 bytes at 16 j, laid out as IQ4_NL's.
TANDEM_HD float elem_iq4_xs(const uint8_t* row, int64_t e) {
    const uint8_t* b = row + (e / 256) * 136;
    const int i = (int)(e % 256), j = i / 32, l = i % 32;
    const int sh = (int)b[2] | ((int)b[3] << 8);
    const int ls = ((b[4 + j / 2] >> (4 * (j % 2))) & 0x0f) | (((sh >> (2 * j)) & 3) << 4);
    const int q = (b[8 + 16 * j + l % 16] >> (l < 16 ? 0 : 4)) & 0x0f;
    return half_at(b) * (float)(ls - 32) * (float)iq4_level(q);
}

// Q2_K: 84-byte blocks of 256 (scales[16], qs[64], f16 d, f16 dmin). Element i = 128 h + 32 g + l
// is at bits 2g of qs[32 h + l]; sub-block i / 16 has scale (low nibble) and min (high nibble).
TANDEM_HD float elem_q2_k(const uint8_t* row, int64_t e) {
    const uint8_t* b = row + (e / 256) * 84;
    const int i = (int)(e % 256), h = i / 128, g = (i % 128) / 32, l = i % 32;
    const int q = (b[16 + 32 * h + l] >> (2 * g)) & 3;
    const int sc = b[i / 16];
    return half_at(b + 80) * (float)(sc & 0x0f) * (float)q - half_at(b + 82) * (float)(sc >> 4);
}

// Q3_K: 110-byte blocks of 256 (hmask[32], qs[64] as Q2_K's, scales[12], f16 d). Element i has
// high bit i / 32 of hmask[i % 32] (clear: level - 4) and the 6-bit scale s of sub-block i / 16
// (low 4 bits: nibble s / 8 of byte s % 8; high 2: bits 2 (s / 4) of byte 8 + s % 4), minus 32.
TANDEM_HD float elem_q3_k(const uint8_t* row, int64_t e) {
    const uint8_t* b = row + (e / 256) * 110;
    const int i = (int)(e % 256), h = i / 128, g = (i % 128) / 32, l = i % 32, s = i / 16;
    const int q = ((b[32 + 32 * h + l] >> (2 * g)) & 3) - (((b[l] >> (i / 32)) & 1) ? 0 : 4);
    const uint8_t* sc = b + 96;
    const int lo = (sc[s % 8] >> (4 * (s / 8))) & 0x0f, hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
    return half_at(b + 108) * (float)((lo | (hi << 4)) - 32) * (float)q;
}

template <DType T>
TANDEM_HD float elem(const uint8_t* row, int64_t e) {
    if constexpr (T == DType::F32) return reinterpret_cast<const float*>(row)[e];
    else if constexpr (T == DType::F16) return half_bits(reinterpret_cast<const uint16_t*>(row)[e]);
    else if constexpr (T == DType::BF16) return bf16_bits(reinterpret_cast<const uint16_t*>(row)[e]);
    else if constexpr (T == DType::Q8_0) return elem_q8_0(row, e);
    else if constexpr (T == DType::Q4_K) return elem_q4_k(row, e);
    else if constexpr (T == DType::Q5_K) return elem_q5_k(row, e);
    else if constexpr (T == DType::Q4_1) return elem_affine32<false>(row, e);
    else if constexpr (T == DType::Q5_1) return elem_affine32<true>(row, e);
    else if constexpr (T == DType::IQ4_NL) return elem_iq4_nl(row, e);
    else if constexpr (T == DType::IQ4_XS) return elem_iq4_xs(row, e);
    else if constexpr (T == DType::Q2_K) return elem_q2_k(row, e);
    else if constexpr (T == DType::Q3_K) return elem_q3_k(row, e);
    else return elem_q6_k(row, e);
}

// Chunk c (elements 32c .. 32c + 31) of a row into w[0..32). The common block types decode their
// header once per chunk; the rest go element by element. Every chunk of a quantized row is whole
// (their blocks hold 32 or 256 elements); F32/F16/BF16 rows take chunk32_tail for a partial one.
template <DType T>
TANDEM_HD void chunk32(const uint8_t* row, int64_t c, float* w) {
    if constexpr (T == DType::Q8_0) {
        const uint8_t* b = row + c * 34;
        const float d = half_bits((uint16_t)b[0] | ((uint16_t)b[1] << 8));
        TANDEM_UNROLL
        for (int l = 0; l < 32; ++l) w[l] = d * (float)(int8_t)b[2 + l];
    } else if constexpr (T == DType::Q4_K || T == DType::Q5_K) {
        constexpr bool Q5 = T == DType::Q5_K;
        const uint8_t* b = row + (c / 8) * (Q5 ? 176 : 144);
        const int j = (int)(c % 8);
        const KSub k = k_sub(b, j);
        const uint8_t* qs = b + (Q5 ? 48 : 16) + 32 * (j / 2);
        TANDEM_UNROLL
        for (int l = 0; l < 32; ++l) {
            int q = (qs[l] >> (4 * (j % 2))) & 0x0f;
            if constexpr (Q5) q |= ((b[16 + l] >> j) & 1) << 4;
            w[l] = k.step * (float)q - k.offset;
        }
    } else if constexpr (T == DType::Q6_K) {
        const uint8_t* b = row + (c / 8) * 210;
        const int i0 = (int)(c % 8) * 32, h = i0 / 128, g = (i0 % 128) / 32;
        const float d = half_bits((uint16_t)b[208] | ((uint16_t)b[209] << 8));
        const float dsc[2] = {d * (float)(int8_t)b[192 + i0 / 16], d * (float)(int8_t)b[192 + i0 / 16 + 1]};
        const uint8_t* ql = b + 64 * h + 32 * (g & 1);
        const uint8_t* qh = b + 128 + 32 * h;
        TANDEM_UNROLL
        for (int l = 0; l < 32; ++l) {
            const int lo = (ql[l] >> (g >= 2 ? 4 : 0)) & 0x0f, hi = (qh[l] >> (2 * g)) & 3;
            w[l] = dsc[l / 16] * (float)((lo | (hi << 4)) - 32);
        }
    } else {
        TANDEM_UNROLL
        for (int l = 0; l < 32; ++l) w[l] = elem<T>(row, 32 * c + l);
    }
}

// The same with elements from `in` on read as zeros (a partial or absent last chunk)
template <DType T>
TANDEM_HD void chunk32_tail(const uint8_t* row, int64_t c, int64_t in, float* w) {
    TANDEM_UNROLL
    for (int l = 0; l < 32; ++l) w[l] = 32 * c + l < in ? elem<T>(row, 32 * c + l) : 0.0f;
}

// Calls f.template operator()<T>() for the weight types these decoders know (host side: kernel
// launches, tests); false for any other type.
template <typename F>
bool with_weight_type(DType t, F&& f) {
    switch (t) {
        case DType::F32: f.template operator()<DType::F32>(); return true;
        case DType::F16: f.template operator()<DType::F16>(); return true;
        case DType::BF16: f.template operator()<DType::BF16>(); return true;
        case DType::Q8_0: f.template operator()<DType::Q8_0>(); return true;
        case DType::Q4_K: f.template operator()<DType::Q4_K>(); return true;
        case DType::Q5_K: f.template operator()<DType::Q5_K>(); return true;
        case DType::Q6_K: f.template operator()<DType::Q6_K>(); return true;
        case DType::Q4_1: f.template operator()<DType::Q4_1>(); return true;
        case DType::Q5_1: f.template operator()<DType::Q5_1>(); return true;
        case DType::IQ4_NL: f.template operator()<DType::IQ4_NL>(); return true;
        case DType::IQ4_XS: f.template operator()<DType::IQ4_XS>(); return true;
        case DType::Q2_K: f.template operator()<DType::Q2_K>(); return true;
        case DType::Q3_K: f.template operator()<DType::Q3_K>(); return true;
        default: return false;
    }
}

}  // namespace tandem::cuda
