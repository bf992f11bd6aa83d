// Scalar helpers shared by the x86 K-quant kernels (no ISA-specific code).
#pragma once

#include <cstdint>
#include <cstring>

namespace tandem::cpu {

// 6-bit scales (low 32 bits: sub-blocks 0..3, high: 4..7) and mins of a Q4_K/Q5_K block, from
// the 12 packed bytes with word operations: bytes 0-3 hold sc[0..3] (+ top bits of sc[4..7]),
// 4-7 hold m[0..3] (+ top bits of m[4..7]), 8-11 the low nibbles of sc[4..7] / m[4..7].
inline void unpack_k_scales_words(const uint8_t* s, uint64_t& sc, uint64_t& mn) {
    uint32_t w[3];
    std::memcpy(w, s, 12);
    const uint32_t sc_lo = w[0] & 0x3f3f3f3fu, mn_lo = w[1] & 0x3f3f3f3fu;
    const uint32_t sc_hi = (w[2] & 0x0f0f0f0fu) | ((w[0] >> 2) & 0x30303030u);
    const uint32_t mn_hi = ((w[2] >> 4) & 0x0f0f0f0fu) | ((w[1] >> 2) & 0x30303030u);
    sc = sc_lo | (uint64_t)sc_hi << 32;
    mn = mn_lo | (uint64_t)mn_hi << 32;
}

}  // namespace tandem::cpu
