// Helpers shared by the reference quantization files (quants.cpp: float and *_0 types,
// quants_k.cpp: K types). Not part of the kernel API; fast kernels include quants.h only.
#pragma once

#include <cstring>

#include <cmath>
#include <cstdint>

#include "kernels/reference/quants.h"

namespace tandem::ref::detail {

// Nearest integer, ties to even (what ggml's nearest_int does), clamped to [lo, hi]; NaN -> lo.
inline int round_clamp(float v, int lo, int hi) {
    if (!(v > (float)lo)) return lo;
    if (!(v < (float)hi)) return hi;
    // round to nearest even without a libm call: adding 1.5 * 2^23 leaves the rounded integer
    // in the low mantissa bits (valid for |v| < 2^22; here |v| <= 128)
    const float t = v + 12582912.0f;
    int32_t i;
    std::memcpy(&i, &t, 4);
    return i - 0x4B400000;
}

// Least-squares symmetric fit: finds s minimising sum_i (x_i - s*q_i)^2 with
// q_i = clamp(round(x_i / s), -nmax, nmax - 1). Writes q (n entries) and returns s, which may be
// negative (the extra level -nmax then lies on the side of the largest |x|). 0 for an all-zero x.
float fit_symmetric(const float* x, int n, int nmax, int8_t* q);

// K types (quants_k.cpp). n is a multiple of kQK_K; dot products accumulate in double.
void dequantize_q4_k(const void* src, float* dst, int64_t n);
void dequantize_q5_k(const void* src, float* dst, int64_t n);
void dequantize_q6_k(const void* src, float* dst, int64_t n);
void dequantize_q8_k(const void* src, float* dst, int64_t n);
void quantize_q4_k(const float* src, void* dst, int64_t n);
void quantize_q5_k(const float* src, void* dst, int64_t n);
void quantize_q6_k(const float* src, void* dst, int64_t n);
void quantize_q8_k(const float* src, void* dst, int64_t n);
double dot_q4_k_q8_k(const void* w, const void* a, int64_t n);
double dot_q5_k_q8_k(const void* w, const void* a, int64_t n);
double dot_q6_k_q8_k(const void* w, const void* a, int64_t n);
double dot_q8_k_q8_k(const void* w, const void* a, int64_t n);

// Read-only types (quants_lowbit.cpp): Q4_1, Q5_1, IQ4_NL (dot with Q8_0), Q2_K, Q3_K, IQ4_XS
// (dot with Q8_K).
void dequantize_q4_1(const void* src, float* dst, int64_t n);
void dequantize_q5_1(const void* src, float* dst, int64_t n);
void dequantize_iq4_nl(const void* src, float* dst, int64_t n);
void dequantize_q2_k(const void* src, float* dst, int64_t n);
void dequantize_q3_k(const void* src, float* dst, int64_t n);
void dequantize_iq4_xs(const void* src, float* dst, int64_t n);
double dot_q4_1_q8_0(const void* w, const void* a, int64_t n);
double dot_q5_1_q8_0(const void* w, const void* a, int64_t n);
double dot_iq4_nl_q8_0(const void* w, const void* a, int64_t n);
double dot_q2_k_q8_k(const void* w, const void* a, int64_t n);
double dot_q3_k_q8_k(const void* w, const void* a, int64_t n);
double dot_iq4_xs_q8_k(const void* w, const void* a, int64_t n);
// Integer levels of one block (shared with the fast kernels' tests and the CUDA decoders):
// Q2_K: q[256] in 0..3, sc/m[16] 4 bits. Q3_K: v[256] = q - 4 * !h in -4..3, sc[16] = 6-bit
// scale - 32 in -32..31. IQ4_XS: ls[8] = 6-bit scale - 32.
void q2_k_levels(const BlockQ2_K& b, uint8_t* q, uint8_t* sc, uint8_t* m);
void q3_k_levels(const BlockQ3_K& b, int8_t* v, int8_t* sc);
// and back (d / dmin untouched): the inverse of the above, bit for bit
void q2_k_from_levels(const uint8_t* q, const uint8_t* sc, const uint8_t* m, BlockQ2_K& b);
void q3_k_from_levels(const int8_t* v, const int8_t* sc, BlockQ3_K& b);
void iq4_xs_scales(const BlockIQ4_XS& b, int8_t* ls);
// IQ4_XS: q[256] = the 4-bit level indices in element order, ls[8] as above; and back
void iq4_xs_levels(const BlockIQ4_XS& b, uint8_t* q, int8_t* ls);
void iq4_xs_from_levels(const uint8_t* q, const int8_t* ls, BlockIQ4_XS& b);

// Levels of one block and back (bit-exact round trip; used by the packed layouts, packed.cpp).
// Q4_K: element e = d * sc[e/32] * q[e] - dmin * m[e/32], q in 0..15, sc/m 6 bits; d/dmin are the
// block's own fields (not touched here). Q6_K: element e = d * scales[e/16] * (q[e] - 32), q in 0..63.
void q4_k_scales(const uint8_t* scales, uint8_t* sc, uint8_t* m);  // the 12 packed bytes -> 8 + 8
void q4_k_levels(const BlockQ4_K& b, uint8_t* q, uint8_t* sc, uint8_t* m);
void q4_k_from_levels(const uint8_t* q, const uint8_t* sc, const uint8_t* m, BlockQ4_K& b);
// Q5_K: as Q4_K with q in 0..31.
void q5_k_levels(const BlockQ5_K& b, uint8_t* q, uint8_t* sc, uint8_t* m);
void q5_k_from_levels(const uint8_t* q, const uint8_t* sc, const uint8_t* m, BlockQ5_K& b);
void q6_k_levels(const BlockQ6_K& b, uint8_t* q);
void q6_k_from_levels(const uint8_t* q, BlockQ6_K& b);

}  // namespace tandem::ref::detail
