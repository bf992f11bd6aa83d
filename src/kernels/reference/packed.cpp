#include "kernels/reference/packed.h"

#include <cstring>
#include <vector>

#include "kernels/reference/quants.h"
#include "kernels/reference/quants_internal.h"

namespace tandem::ref {
namespace {

constexpr int kR = (int)kPackRows;

// Element of row r held at byte 4r + b of Q6_K sub-block s's ql chunk i: the low nibble's and
// the high nibble's.
inline int q6_lo_elem(int s, int i, int b) { return 16 * s + 4 * i + b; }
inline int q6_hi_elem(int s, int i, int b) { return q6_lo_elem(s, i, b) + 8; }
// Element of row r held at byte 4r + b of Q4_K chunk c = 4j + i (both nibbles in sub-block j).
inline int q4_lo_elem(int c, int b) { return 32 * (c / 4) + 4 * (c % 4) + b; }
inline int q4_hi_elem(int c, int b) { return q4_lo_elem(c, b) + 16; }

// Q4_K / Q5_K: sub-block j's elements 32j + m, low 4 bits, are nibble j % 2 of the GGUF
// qs[32 (j / 2) + m]; Q5_K's fifth bit is bit j of qh[m].
template <typename Block, bool kQ5>
void pack_affine(const uint8_t* rows, size_t stride, int64_t nb, uint8_t* out, size_t block_bytes) {
    uint8_t sc[8], m[8];
    for (int64_t ib = 0; ib < nb; ++ib, out += block_bytes) {
        for (int r = 0; r < kR; ++r) {
            const auto& b = reinterpret_cast<const Block*>(rows + (size_t)r * stride)[ib];
            detail::q4_k_scales(b.scales, sc, m);
            std::memcpy(out + packed_q4_k::d + 2 * r, &b.d, 2);
            std::memcpy(out + packed_q4_k::dmin + 2 * r, &b.dmin, 2);
            for (int j = 0; j < 8; ++j) {
                out[packed_q4_k::sc + 16 * j + r] = sc[j];
                out[packed_q4_k::m + 32 * (j / 2) + 2 * r + j % 2] = m[j];
            }
            // qs[32p + x] holds element 32(2p) + x (low nibble) and 32(2p + 1) + x (high): sub-block
            // 2p's chunk i is (A & 15) | (B & 15) << 4 of A = qs[32p + 4i ..], B = qs[32p + 16 + 4i ..],
            // sub-block 2p + 1's (A >> 4) | (B & 0xf0); 4 bytes of a row per chunk, in word operations
            constexpr uint64_t kLo = 0x0f0f0f0f0f0f0f0full;
            for (int p = 0; p < 4; ++p)
                for (int half = 0; half < 2; ++half) {  // chunks i = 2 half, 2 half + 1
                    uint64_t a, bw;
                    std::memcpy(&a, b.qs + 32 * p + 8 * half, 8);
                    std::memcpy(&bw, b.qs + 32 * p + 16 + 8 * half, 8);
                    const uint64_t lo = (a & kLo) | (bw & kLo) << 4, hi = (a >> 4 & kLo) | (bw & ~kLo);
                    for (int k = 0; k < 2; ++k) {
                        const int i = 2 * half + k;
                        const uint32_t l = (uint32_t)(lo >> (32 * k)), h = (uint32_t)(hi >> (32 * k));
                        std::memcpy(out + packed_q4_k::qs + 64 * (4 * (2 * p) + i) + 4 * r, &l, 4);
                        std::memcpy(out + packed_q4_k::qs + 64 * (4 * (2 * p + 1) + i) + 4 * r, &h, 4);
                    }
                }
            if constexpr (kQ5) {
                // Q5_K's fifth bits: bit j of qh[x] belongs to element 32j + x; chunk i's byte b holds
                // elements 32j + 4i + b (bit 2i of the qh byte) and 32j + 16 + 4i + b (bit 2i + 1).
                // Each byte of (qh >> j) & 1 is 0 or 1, so shifting words keeps it inside its byte.
                constexpr uint64_t kBit = 0x0101010101010101ull;
                uint64_t x[2], y[2];
                std::memcpy(x, b.qh, 16);
                std::memcpy(y, b.qh + 16, 16);
                for (int j = 0; j < 8; ++j) {
                    uint32_t v = 0;
                    for (int i = 0; i < 4; ++i) {
                        const uint32_t lo5 = (uint32_t)((x[i / 2] >> j & kBit) >> (32 * (i % 2)));
                        const uint32_t hi5 = (uint32_t)((y[i / 2] >> j & kBit) >> (32 * (i % 2)));
                        v |= lo5 << (2 * i) | hi5 << (2 * i + 1);
                    }
                    std::memcpy(out + packed_q5_k::qh + 64 * j + 4 * r, &v, 4);
                }
            }
        }
    }
}

template <typename Block, bool kQ5>
void unpack_affine(const uint8_t* in, int64_t nb, uint8_t* rows, size_t stride, size_t block_bytes) {
    uint8_t q[kQK_K], sc[8], m[8];
    for (int64_t ib = 0; ib < nb; ++ib, in += block_bytes) {
        for (int r = 0; r < kR; ++r) {
            for (int j = 0; j < 8; ++j) sc[j] = in[packed_q4_k::sc + 16 * j + r];
            for (int j = 0; j < 8; ++j) m[j] = in[packed_q4_k::m + 32 * (j / 2) + 2 * r + j % 2];
            for (int c = 0; c < 32; ++c)
                for (int b = 0; b < 4; ++b) {
                    const uint8_t v = in[packed_q4_k::qs + 64 * c + 4 * r + b];
                    int lo = v & 15, hi = v >> 4;
                    if constexpr (kQ5) {
                        const uint8_t h = in[packed_q5_k::qh + 64 * (c / 4) + 4 * r + b];
                        lo |= ((h >> (2 * (c % 4))) & 1) << 4;
                        hi |= ((h >> (2 * (c % 4) + 1)) & 1) << 4;
                    }
                    q[q4_lo_elem(c, b)] = (uint8_t)lo;
                    q[q4_hi_elem(c, b)] = (uint8_t)hi;
                }
            auto& blk = reinterpret_cast<Block*>(rows + (size_t)r * stride)[ib];
            if constexpr (kQ5) detail::q5_k_from_levels(q, sc, m, blk);
            else detail::q4_k_from_levels(q, sc, m, blk);
            std::memcpy(&blk.d, in + packed_q4_k::d + 2 * r, 2);
            std::memcpy(&blk.dmin, in + packed_q4_k::dmin + 2 * r, 2);
        }
    }
}

// Unit s (elements 16s + y, y < 16) of a GGUF Q6_K block: their low 4 bits are nibble (s % 8) / 4 of
// ql[64 (s / 8) + 16 (s % 4) + y], their top 2 bits bits 2 ((s % 8) / 2) of qh[32 (s / 8) + 16 (s % 2)
// + y]; the packed chunks take bytes y, y + 8 (ql chunk 0), y + 4, y + 12 (chunk 1) of those 16 at
// byte 4r + y, y < 4. In word operations: every byte is at most 15 (or 3), so shifting a word
// moves each byte's bits within the byte.
void pack_q6_k(const uint8_t* rows, size_t stride, int64_t nb, uint8_t* out) {
    constexpr uint64_t kLo4 = 0x0f0f0f0f0f0f0f0full, kLo2 = 0x0303030303030303ull, kW = 0xffffffffull;
    for (int64_t ib = 0; ib < nb; ++ib, out += kPackedQ6KBlock) {
        for (int r = 0; r < kR; ++r) {
            const auto& b = reinterpret_cast<const BlockQ6_K*>(rows + (size_t)r * stride)[ib];
            std::memcpy(out + packed_q6_k::d + 2 * r, &b.d, 2);
            for (int j = 0; j < 16; ++j) out[packed_q6_k::sc + 32 * (j / 2) + 2 * r + j % 2] = (uint8_t)b.scales[j];
            for (int s = 0; s < 16; ++s) {
                uint64_t l[2], t[2];  // the unit's 16 low nibbles and top bits, bytes 0-7 and 8-15
                std::memcpy(l, b.ql + 64 * (s / 8) + 16 * (s % 4), 16);
                std::memcpy(t, b.qh + 32 * (s / 8) + 16 * (s % 2), 16);
                const int ls = 4 * ((s % 8) / 4), ts = 2 * ((s % 8) / 2);
                for (int k = 0; k < 2; ++k) {
                    l[k] = l[k] >> ls & kLo4;
                    t[k] = t[k] >> ts & kLo2;
                }
                const uint32_t c0 = (uint32_t)((l[0] & kW) | (l[1] & kW) << 4);      // y, y + 8
                const uint32_t c1 = (uint32_t)((l[0] >> 32) | (l[1] >> 32) << 4);    // y + 4, y + 12
                const uint32_t top = (uint32_t)((t[0] & kW) | (t[1] & kW) << 2 | (t[0] >> 32) << 4 | (t[1] >> 32) << 6);
                std::memcpy(out + packed_q6_k::ql(s, 0) + 4 * r, &c0, 4);
                std::memcpy(out + packed_q6_k::ql(s, 1) + 4 * r, &c1, 4);
                std::memcpy(out + packed_q6_k::qh(s) + 4 * r, &top, 4);
            }
        }
    }
}

void unpack_q6_k(const uint8_t* in, int64_t nb, uint8_t* rows, size_t stride) {
    uint8_t q[kQK_K];
    for (int64_t ib = 0; ib < nb; ++ib, in += kPackedQ6KBlock) {
        for (int r = 0; r < kR; ++r) {
            for (int s = 0; s < 16; ++s)
                for (int b = 0; b < 4; ++b) {
                    const uint8_t top = in[packed_q6_k::qh(s) + 4 * r + b];
                    for (int i = 0; i < 2; ++i) {
                        const uint8_t v = in[packed_q6_k::ql(s, i) + 4 * r + b], t = (uint8_t)(top >> (4 * i));
                        q[q6_lo_elem(s, i, b)] = (uint8_t)((v & 15) | (t & 3) << 4);
                        q[q6_hi_elem(s, i, b)] = (uint8_t)((v >> 4) | ((t >> 2) & 3) << 4);
                    }
                }
            auto& blk = reinterpret_cast<BlockQ6_K*>(rows + (size_t)r * stride)[ib];
            detail::q6_k_from_levels(q, blk);
            for (int j = 0; j < 16; ++j) blk.scales[j] = (int8_t)in[packed_q6_k::sc + 32 * (j / 2) + 2 * r + j % 2];
            std::memcpy(&blk.d, in + packed_q6_k::d + 2 * r, 2);
        }
    }
}

// Q3_K / Q2_K: unit s, byte 4r + b, bits 2k hold element 16s + 4k + b (Q3_K's high bit in mask k)
inline int k16_elem(int s, int k, int b) { return 16 * s + 4 * k + b; }

void pack_q3_k(const uint8_t* rows, size_t stride, int64_t nb, uint8_t* out) {
    int8_t v[kQK_K], sc[16];
    for (int64_t ib = 0; ib < nb; ++ib, out += kPackedQ3KBlock) {
        std::memset(out, 0, kPackedQ3KBlock);
        for (int r = 0; r < kR; ++r) {
            const auto& b = reinterpret_cast<const BlockQ3_K*>(rows + (size_t)r * stride)[ib];
            detail::q3_k_levels(b, v, sc);
            std::memcpy(out + packed_q3_k::d + 2 * r, &b.d, 2);
            for (int j = 0; j < 16; ++j) out[packed_q3_k::sc + 32 * (j / 2) + 2 * r + j % 2] = (uint8_t)sc[j];
            for (int s = 0; s < 16; ++s)
                for (int k = 0; k < 4; ++k)
                    for (int bb = 0; bb < 4; ++bb) {
                        const int u = v[k16_elem(s, k, bb)] + 4;
                        out[packed_q3_k::q2(s) + 4 * r + bb] |= (uint8_t)((u & 3) << (2 * k));
                        if (u >> 2) out[packed_q3_k::hmask(s, k) + (4 * r + bb) / 8] |= (uint8_t)(1u << ((4 * r + bb) % 8));
                    }
        }
    }
}

void unpack_q3_k(const uint8_t* in, int64_t nb, uint8_t* rows, size_t stride) {
    int8_t v[kQK_K], sc[16];
    for (int64_t ib = 0; ib < nb; ++ib, in += kPackedQ3KBlock) {
        for (int r = 0; r < kR; ++r) {
            for (int j = 0; j < 16; ++j) sc[j] = (int8_t)in[packed_q3_k::sc + 32 * (j / 2) + 2 * r + j % 2];
            for (int s = 0; s < 16; ++s)
                for (int k = 0; k < 4; ++k)
                    for (int bb = 0; bb < 4; ++bb) {
                        const int q2 = (in[packed_q3_k::q2(s) + 4 * r + bb] >> (2 * k)) & 3;
                        const int h = (in[packed_q3_k::hmask(s, k) + (4 * r + bb) / 8] >> ((4 * r + bb) % 8)) & 1;
                        v[k16_elem(s, k, bb)] = (int8_t)(q2 + 4 * h - 4);
                    }
            auto& blk = reinterpret_cast<BlockQ3_K*>(rows + (size_t)r * stride)[ib];
            detail::q3_k_from_levels(v, sc, blk);
            std::memcpy(&blk.d, in + packed_q3_k::d + 2 * r, 2);
        }
    }
}

void pack_q2_k(const uint8_t* rows, size_t stride, int64_t nb, uint8_t* out) {
    uint8_t q[kQK_K], sc[16], m[16];
    for (int64_t ib = 0; ib < nb; ++ib, out += kPackedQ2KBlock) {
        std::memset(out, 0, kPackedQ2KBlock);
        for (int r = 0; r < kR; ++r) {
            const auto& b = reinterpret_cast<const BlockQ2_K*>(rows + (size_t)r * stride)[ib];
            detail::q2_k_levels(b, q, sc, m);
            std::memcpy(out + packed_q2_k::d + 2 * r, &b.d, 2);
            std::memcpy(out + packed_q2_k::dmin + 2 * r, &b.dmin, 2);
            for (int j = 0; j < 16; ++j) {
                out[packed_q2_k::sc + 32 * (j / 2) + 2 * r + j % 2] = sc[j];
                out[packed_q2_k::m + 32 * (j / 2) + 2 * r + j % 2] = m[j];
            }
            for (int s = 0; s < 16; ++s)
                for (int k = 0; k < 4; ++k)
                    for (int bb = 0; bb < 4; ++bb)
                        out[packed_q2_k::q2(s) + 4 * r + bb] |= (uint8_t)(q[k16_elem(s, k, bb)] << (2 * k));
        }
    }
}

void unpack_q2_k(const uint8_t* in, int64_t nb, uint8_t* rows, size_t stride) {
    uint8_t q[kQK_K], sc[16], m[16];
    for (int64_t ib = 0; ib < nb; ++ib, in += kPackedQ2KBlock) {
        for (int r = 0; r < kR; ++r) {
            for (int j = 0; j < 16; ++j) {
                sc[j] = in[packed_q2_k::sc + 32 * (j / 2) + 2 * r + j % 2];
                m[j] = in[packed_q2_k::m + 32 * (j / 2) + 2 * r + j % 2];
            }
            for (int s = 0; s < 16; ++s)
                for (int k = 0; k < 4; ++k)
                    for (int bb = 0; bb < 4; ++bb)
                        q[k16_elem(s, k, bb)] = (uint8_t)((in[packed_q2_k::q2(s) + 4 * r + bb] >> (2 * k)) & 3);
            auto& blk = reinterpret_cast<BlockQ2_K*>(rows + (size_t)r * stride)[ib];
            detail::q2_k_from_levels(q, sc, m, blk);
            std::memcpy(&blk.d, in + packed_q2_k::d + 2 * r, 2);
            std::memcpy(&blk.dmin, in + packed_q2_k::dmin + 2 * r, 2);
        }
    }
}

void pack_iq4_xs(const uint8_t* rows, size_t stride, int64_t nb, uint8_t* out) {
    uint8_t q[kQK_K];
    int8_t ls[8];
    for (int64_t ib = 0; ib < nb; ++ib, out += kPackedIQ4XSBlock) {
        for (int r = 0; r < kR; ++r) {
            const auto& b = reinterpret_cast<const BlockIQ4_XS*>(rows + (size_t)r * stride)[ib];
            detail::iq4_xs_levels(b, q, ls);
            std::memcpy(out + packed_iq4_xs::d + 2 * r, &b.d, 2);
            for (int j = 0; j < 8; ++j) {
                out[packed_iq4_xs::sc + 16 * j + r] = (uint8_t)ls[j];
                out[packed_iq4_xs::scp + 32 * (j / 2) + 2 * r + j % 2] = (uint8_t)ls[j];
            }
            for (int c = 0; c < 32; ++c)
                for (int bb = 0; bb < 4; ++bb)
                    out[packed_iq4_xs::qs + 64 * c + 4 * r + bb] = (uint8_t)(q[q4_lo_elem(c, bb)] | q[q4_hi_elem(c, bb)] << 4);
        }
    }
}

void unpack_iq4_xs(const uint8_t* in, int64_t nb, uint8_t* rows, size_t stride) {
    uint8_t q[kQK_K];
    int8_t ls[8];
    for (int64_t ib = 0; ib < nb; ++ib, in += kPackedIQ4XSBlock) {
        for (int r = 0; r < kR; ++r) {
            for (int j = 0; j < 8; ++j) ls[j] = (int8_t)in[packed_iq4_xs::sc + 16 * j + r];
            for (int c = 0; c < 32; ++c)
                for (int b = 0; b < 4; ++b) {
                    const uint8_t v = in[packed_iq4_xs::qs + 64 * c + 4 * r + b];
                    q[q4_lo_elem(c, b)] = v & 15;
                    q[q4_hi_elem(c, b)] = v >> 4;
                }
            auto& blk = reinterpret_cast<BlockIQ4_XS*>(rows + (size_t)r * stride)[ib];
            detail::iq4_xs_from_levels(q, ls, blk);
            std::memcpy(&blk.d, in + packed_iq4_xs::d + 2 * r, 2);
        }
    }
}

// The 32-element block types: d (and m) per row; the level bytes interleaved 4 at a time (the
// nibble pairs of the 4-bit types as the GGUF holds them); Q5's fifth bits regrouped per byte.
// Block fields by offset: d at 0, then m (the *_1 types), qh, qs (see quants.h).
struct Q0Fields {
    size_t m, qh, qs;
};
constexpr Q0Fields q0_fields(DType t) {
    switch (t) {
        case DType::Q4_1: return {2, 0, 4};
        case DType::Q5_0: return {0, 2, 6};
        case DType::Q5_1: return {2, 4, 8};
        default: return {0, 0, 2};  // Q4_0, IQ4_NL, Q8_0
    }
}

void pack_q0(DType t, const uint8_t* rows, size_t stride, int64_t nb, uint8_t* out) {
    const Q0Layout L = q0_layout(t);
    const Q0Fields F = q0_fields(t);
    const size_t bb = row_bytes(t, kQK);
    for (int64_t ib = 0; ib < nb; ++ib, out += L.bytes) {
        for (int r = 0; r < kR; ++r) {
            const uint8_t* b = rows + (size_t)r * stride + (size_t)ib * bb;
            std::memcpy(out + 2 * r, b, 2);
            if (L.m) std::memcpy(out + L.m + 2 * r, b + F.m, 2);
            for (int i = 0; i < L.chunks; ++i) std::memcpy(out + L.qs + 64 * i + 4 * r, b + F.qs + 4 * i, 4);
            if (L.qh) {
                uint32_t qh;
                std::memcpy(&qh, b + F.qh, 4);
                for (int k = 0; k < 4; ++k) {
                    uint8_t v = 0;
                    for (int i = 0; i < 4; ++i)
                        v |= (uint8_t)((((qh >> (4 * i + k)) & 1) << (2 * i)) | (((qh >> (16 + 4 * i + k)) & 1) << (2 * i + 1)));
                    out[L.qh + 4 * r + k] = v;
                }
            }
        }
    }
}

void unpack_q0(DType t, const uint8_t* in, int64_t nb, uint8_t* rows, size_t stride) {
    const Q0Layout L = q0_layout(t);
    const Q0Fields F = q0_fields(t);
    const size_t bb = row_bytes(t, kQK);
    for (int64_t ib = 0; ib < nb; ++ib, in += L.bytes) {
        for (int r = 0; r < kR; ++r) {
            uint8_t* b = rows + (size_t)r * stride + (size_t)ib * bb;
            std::memcpy(b, in + 2 * r, 2);
            if (L.m) std::memcpy(b + F.m, in + L.m + 2 * r, 2);
            for (int i = 0; i < L.chunks; ++i) std::memcpy(b + F.qs + 4 * i, in + L.qs + 64 * i + 4 * r, 4);
            if (L.qh) {
                uint32_t qh = 0;
                for (int k = 0; k < 4; ++k) {
                    const uint8_t v = in[L.qh + 4 * r + k];
                    for (int i = 0; i < 4; ++i)
                        qh |= ((uint32_t)((v >> (2 * i)) & 1) << (4 * i + k)) | ((uint32_t)((v >> (2 * i + 1)) & 1) << (16 + 4 * i + k));
                }
                std::memcpy(b + F.qh, &qh, 4);
            }
        }
    }
}

}  // namespace

bool has_packed_layout(DType type) {
    return type == DType::Q4_K || type == DType::Q5_K || type == DType::Q6_K || type == DType::Q3_K ||
           type == DType::Q2_K || type == DType::IQ4_XS || q0_layout(type).bytes > 0;
}

size_t packed_group_bytes(DType type, int64_t n) {
    const size_t nb = (size_t)(n / kQK_K);
    switch (type) {
        case DType::Q4_K: return nb * kPackedQ4KBlock;
        case DType::Q5_K: return nb * kPackedQ5KBlock;
        case DType::Q6_K: return nb * kPackedQ6KBlock;
        case DType::Q3_K: return nb * kPackedQ3KBlock;
        case DType::Q2_K: return nb * kPackedQ2KBlock;
        case DType::IQ4_XS: return nb * kPackedIQ4XSBlock;
        default: return (size_t)(n / kQK) * q0_layout(type).bytes;
    }
}

void pack_group(DType type, const uint8_t* rows, size_t row_stride, int64_t n, uint8_t* out) {
    if (type == DType::Q4_K) pack_affine<BlockQ4_K, false>(rows, row_stride, n / kQK_K, out, kPackedQ4KBlock);
    else if (type == DType::Q5_K) pack_affine<BlockQ5_K, true>(rows, row_stride, n / kQK_K, out, kPackedQ5KBlock);
    else if (type == DType::Q6_K) pack_q6_k(rows, row_stride, n / kQK_K, out);
    else if (type == DType::Q3_K) pack_q3_k(rows, row_stride, n / kQK_K, out);
    else if (type == DType::Q2_K) pack_q2_k(rows, row_stride, n / kQK_K, out);
    else if (type == DType::IQ4_XS) pack_iq4_xs(rows, row_stride, n / kQK_K, out);
    else if (q0_layout(type).bytes) pack_q0(type, rows, row_stride, n / kQK, out);
}

void unpack_group(DType type, const uint8_t* group, int64_t n, uint8_t* rows, size_t row_stride) {
    if (type == DType::Q4_K) unpack_affine<BlockQ4_K, false>(group, n / kQK_K, rows, row_stride, kPackedQ4KBlock);
    else if (type == DType::Q5_K) unpack_affine<BlockQ5_K, true>(group, n / kQK_K, rows, row_stride, kPackedQ5KBlock);
    else if (type == DType::Q6_K) unpack_q6_k(group, n / kQK_K, rows, row_stride);
    else if (type == DType::Q3_K) unpack_q3_k(group, n / kQK_K, rows, row_stride);
    else if (type == DType::Q2_K) unpack_q2_k(group, n / kQK_K, rows, row_stride);
    else if (type == DType::IQ4_XS) unpack_iq4_xs(group, n / kQK_K, rows, row_stride);
    else if (q0_layout(type).bytes) unpack_q0(type, group, n / kQK, rows, row_stride);
}

void packed_gemm(DType type, const uint8_t* w, int64_t n_groups, int64_t n, const void* const* acts, int64_t n_tok,
                 float* y, int64_t ldy) {
    const size_t rb = row_bytes(type, n), gb = packed_group_bytes(type, n);
    std::vector<uint8_t> rows(rb * kPackRows);
    for (int64_t g = 0; g < n_groups; ++g) {
        unpack_group(type, w + (size_t)g * gb, n, rows.data(), rb);
        for (int64_t t = 0; t < n_tok; ++t)
            for (int64_t r = 0; r < kPackRows; ++r)
                y[t * ldy + g * kPackRows + r] = vec_dot(type, rows.data() + (size_t)r * rb, acts[t], n);
    }
}

}  // namespace tandem::ref
