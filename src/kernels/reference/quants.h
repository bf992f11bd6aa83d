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
// x = d * q + m, q in 0..15 (nibbles as Q4_0)
struct BlockQ4_1 {
    uint16_t d;  // f16
    uint16_t m;  // f16
    uint8_t qs[kQK / 2];
};
// x = d * q + m, q in 0..31 (bits as Q5_0)
struct BlockQ5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[kQK / 2];
};
// 16 sub-blocks of 16: x = d * (sc & 15) * q - dmin * (sc >> 4), q 2 bits. In each half of 128,
// byte l of the half's 32 holds elements 32j + l (l < 16: sub-block 2j, else 2j + 1) at bits 2j.
struct BlockQ2_K {
    uint8_t scales[kQK_K / 16];
    uint8_t qs[kQK_K / 4];
    uint16_t d;
    uint16_t dmin;
};
// 16 sub-blocks of 16: x = d * (sc - 32) * (q - 4 * !h), q 2 bits laid out as Q2_K's, h bit j of
// hmask[l] for element 32j + l (j < 8 over the block), sc 6 bits packed in scales[12]
struct BlockQ3_K {
    uint8_t hmask[kQK_K / 8];
    uint8_t qs[kQK_K / 4];
    uint8_t scales[kKScaleBytes];
    uint16_t d;
};
// x = d * kIq4nlValues[q], q in 0..15 (nibbles as Q4_0)
struct BlockIQ4_NL {
    uint16_t d;
    uint8_t qs[kQK / 2];
};
// 8 sub-blocks of 32: x = d * (ls - 32) * kIq4nlValues[q], ls 6 bits (4 in scales_l, 2 in scales_h)
struct BlockIQ4_XS {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[kQK_K / 64];
    uint8_t qs[kQK_K / 2];
};
// the non-linear levels of IQ4_NL / IQ4_XS
inline constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
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
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockIQ4_NL) == 18);
static_assert(sizeof(BlockIQ4_XS) == 136);

// Types Tandem reads and computes with but does not write (no quantizer: llama.cpp's
// llama-quantize makes them): Q4_1, Q5_1, Q2_K, Q3_K, IQ4_NL, IQ4_XS.
bool can_quantize(DType type);
// n elements of `type` as random blocks: every level and scale bit pattern, each f16 scale field
// set to a normal(0, 0.01) value (finite, weights of a sane size): weights of the types that have
// no quantizer, for kernel tests and benchmarks. Deterministic for a seed.
void random_blocks(DType type, uint64_t seed, void* dst, int64_t n);

// n must be a multiple of the type's block size (callers check shapes when loading).
void dequantize_row(DType type, const void* src, float* dst, int64_t n);
void quantize_row(DType type, const float* src, void* dst, int64_t n);

// The type activations are converted to before a dot product with weights of `type`:
// F32->F32, F16->F16, BF16->BF16, Q4_0/Q5_0/Q8_0/Q4_1/Q5_1/IQ4_NL->Q8_0,
// Q2_K/Q3_K/Q4_K/Q5_K/Q6_K/IQ4_XS->Q8_K.
DType vec_dot_type(DType type);

// Dot product of one weight row `w` (type) with one activation row `a` already converted to
// vec_dot_type(type); n elements.
float vec_dot(DType type, const void* w, const void* a, int64_t n);

}  // namespace tandem::ref
