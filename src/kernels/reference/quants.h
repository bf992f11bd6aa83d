// Block layouts of the quantized types (GGUF / ggml compatible, little endian) and their
// scalar reference dequantization, quantization and dot products. Every fast kernel is tested
// against these.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace tandem::ref {

constexpr int kQK = 32;    // elements per block of the *_0 types
constexpr int kQK_K = 256; // elements per super-block of the K types
constexpr int kKScaleBytes = 12;

// x = (q - 8) * d, q in 0..15; qs[j] holds element j (low nibble) and j+16 (high nibble)
struct BlockQ4_0 {
    uint16_t d;  // f16
    uint8_t qs[kQK / 2];
};
// x = (q - 16) * d, q in 0..31; low 4 bits as Q4_0, bit 4 of element j is bit j of qh
struct BlockQ5_0 {
    uint16_t d;  // f16
    uint8_t qh[4];
    uint8_t qs[kQK / 2];
};
// x = q * d
struct BlockQ8_0 {
    uint16_t d;  // f16
    int8_t qs[kQK];
};
// 8 sub-blocks of 32: x = d * sc[j] * q - dmin * m[j], 6-bit sc/m packed in scales[12]
struct BlockQ4_K {
    uint16_t d;     // f16, super-block scale of the sub-block scales
    uint16_t dmin;  // f16, super-block scale of the sub-block mins
    uint8_t scales[kKScaleBytes];
    uint8_t qs[kQK_K / 2];
};
// as Q4_K with a fifth bit per element in qh
struct BlockQ5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[kKScaleBytes];
    uint8_t qh[kQK_K / 8];
    uint8_t qs[kQK_K / 2];
};
// 16 sub-blocks of 16: x = d * scales[j] * (q - 32), q 6 bits = 4 in ql + 2 in qh
struct BlockQ6_K {
    uint8_t ql[kQK_K / 2];
    uint8_t qh[kQK_K / 4];
    int8_t scales[kQK_K / 16];
    uint16_t d;  // f16
};
// activations for the K types: x = d * q; bsums[j] = sum of qs[16j .. 16j+15]
struct BlockQ8_K {
    float d;
    int8_t qs[kQK_K];
    int16_t bsums[kQK_K / 16];
};

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);

// n must be a multiple of the type's block size (callers check shapes when loading).
void dequantize_row(DType type, const void* src, float* dst, int64_t n);
void quantize_row(DType type, const float* src, void* dst, int64_t n);

// The type activations are converted to before a dot product with weights of `type`:
// F32->F32, F16->F16, BF16->BF16, Q4_0/Q5_0/Q8_0->Q8_0, Q4_K/Q5_K/Q6_K->Q8_K.
DType vec_dot_type(DType type);

// Dot product of one weight row `w` (type) with one activation row `a` already converted to
// vec_dot_type(type); n elements.
float vec_dot(DType type, const void* w, const void* a, int64_t n);

}  // namespace tandem::ref
