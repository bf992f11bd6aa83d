// Row-interleaved ("packed") weight layouts for the CPU's hot path, made once at load time from
// the GGUF blocks: groups of kPackRows = 16 consecutive rows of one matrix, stored 256-column
// block by block so that one 64-byte vector holds the same 4 columns of all 16 rows (row r in
// 32-bit lane r). A kernel then multiplies 16 rows by one broadcast group of 4 activations per
// VPDPBUSD, with the scales of the 16 rows already spread out: no per-row unpacking in the loop.
// Packing is lossless: unpack_group(pack_group(rows)) gives back the same bytes.
//
// Q4_K x16, per 256-column block of the group (2368 bytes = 16 x 144 + 64):
//   uint16_t d[16], dmin[16]   f16 super-block scales, per row
//   uint8_t  sc[8][16]         6-bit sub-block scales, [sub-block][row]
//   uint8_t  m[4][16][2]       6-bit sub-block mins, [sub-block pair p][row][2p, 2p+1]
//   uint8_t  qs[32][64]        chunk c = 4j + i: byte 4r + b = q[r][32j + 4i + b] (low nibble)
//                              | q[r][32j + 16 + 4i + b] << 4: both nibbles in sub-block j, so
//                              one accumulator per token takes a whole sub-block
// Q5_K x16 (2880 bytes = 16 x 176 + 64): Q4_K x16's fields for the low 4 bits of q (0..31), then
//   uint8_t  qh[8][64]         sub-block j: byte 4r + b holds the fifth bits of the elements that
//                              qs chunk 4j + i holds at 4r + b: bit 2i (low nibble), 2i + 1 (high)
// Q6_K x16 (3360 bytes = 16 x 210):
//   uint16_t d[16]             f16
//   int8_t   sc[8][16][2]      sub-block scales (16 elements each), [pair j][row][2j, 2j+1]
//   16 units of 192 bytes, unit s = sub-block s = {qh chunk, ql chunk 0, ql chunk 1}, in the
//   order the kernels read them:
//     ql chunk i [64]          byte 4r + b = the low 4 bits of q[r][16s + 4i + b] | those of
//                              q[r][16s + 8 + 4i + b] << 4 (q in 0..63)
//     qh chunk [64]            byte 4r + b: the top 2 bits of the elements that ql chunk 0 (low,
//                              high nibble) and ql chunk 1 (low, high) hold at 4r + b, at bits
//                              0-1, 2-3, 4-5, 6-7
// Q3_K x16 (1824 bytes = 16 x 110 + 64):
//   uint16_t d[16]             f16
//   int8_t   sc[8][16][2]      sub-block scales - 32 (16 elements each), as Q6_K x16's
//   16 units of 96 bytes, unit s = sub-block s:
//     q2 chunk [64]            byte 4r + b, bits 2k: the low 2 bits of element 16s + 4k + b of row r
//     h masks [4] (uint64)     mask k, bit 4r + b: the high bit of that element (levels
//                              q2 + 4h - 4 in -4..3; the kernels take q2 + 4h and the 4 back
//                              through the Q8_K block sums)
// Q2_K x16 (1600 bytes = 16 x 84 + 256):
//   uint16_t d[16], dmin[16]   f16
//   uint8_t  sc[8][16][2]      4-bit sub-block scales, [pair j][row][2j, 2j + 1]
//   uint8_t  m[8][16][2]       4-bit sub-block mins, the same way
//   16 units of 64 bytes, unit s: the q2 chunk as Q3_K x16's (levels 0..3, x = d sc q - dmin m)
// IQ4_XS x16 (2336 bytes = 16 x 136 + 160):
//   uint16_t d[16]             f16
//   int8_t   sc[8][16]         sub-block scales - 32 (32 elements each), [sub-block][row]
//   int8_t   scp[4][16][2]     the same scales in pairs, [pair p][row][2p, 2p + 1] (the kernels
//                              take the levels + 128 as unsigned bytes and the 128 back through
//                              the Q8_K block sums, per scale)
//   uint8_t  qs[32][64]        Q4_K x16's chunks of 4-bit indices into the 16 IQ4 levels
// The 32-element block types (the *_0 / *_1 families and IQ4_NL), per 32-column block of the
// group, no bigger than the rows they come from:
//   uint16_t d[16]             f16, per row
//   uint16_t m[16]             f16 (Q4_1, Q5_1 only)
//   4-bit levels (Q4_0, IQ4_NL, Q4_1, Q5_0, Q5_1):
//   uint8_t  qs[4][64]         chunk i: byte 4r + b = the GGUF qs[4i + b] of row r (low nibble:
//                              element 4i + b, high: 16 + 4i + b), Q4_K x16's chunks of one sub-block
//   uint8_t  qh[64]            (Q5_0, Q5_1) byte 4r + b: bit 2i the fifth bit of the low element
//                              of qs chunk i's byte 4r + b, bit 2i + 1 the high one's
//   Q8_0: int8_t qs[8][64]     chunk i: byte 4r + b = q[r][4i + b]
//   Q4_0 288 bytes (16 x 18), IQ4_NL 288, Q4_1 320, Q5_0 352, Q5_1 384, Q8_0 544 (16 x 34).
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace tandem::ref {

constexpr int64_t kPackRows = 16;

constexpr size_t kPackedQ4KBlock = 2368;
constexpr size_t kPackedQ5KBlock = 2880;
constexpr size_t kPackedQ6KBlock = 3360;
constexpr size_t kPackedQ3KBlock = 1824;
constexpr size_t kPackedQ2KBlock = 1600;
constexpr size_t kPackedIQ4XSBlock = 2336;
namespace packed_q4_k {
constexpr size_t d = 0, dmin = 32, sc = 64, m = 192, qs = 320;
}
namespace packed_q5_k {  // Q4_K's offsets, then the fifth bits
constexpr size_t qh = 2368;
}
namespace packed_q6_k {
constexpr size_t d = 0, sc = 32, units = 288;
constexpr size_t qh(int s) { return units + 192 * (size_t)s; }
constexpr size_t ql(int s, int i) { return units + 192 * (size_t)s + 64 + 64 * (size_t)i; }
}

namespace packed_q3_k {  // scales as Q6_K x16's
constexpr size_t d = 0, sc = 32, units = 288;
constexpr size_t q2(int s) { return units + 96 * (size_t)s; }
constexpr size_t hmask(int s, int k) { return units + 96 * (size_t)s + 64 + 8 * (size_t)k; }
}
namespace packed_q2_k {
constexpr size_t d = 0, dmin = 32, sc = 64, m = 320, units = 576;
constexpr size_t q2(int s) { return units + 64 * (size_t)s; }
}

namespace packed_iq4_xs {
constexpr size_t d = 0, sc = 32, scp = 160, qs = 288;
}

// A 32-element block type's packed block: its bytes and where its fields start (m, qh: 0 when
// the type has none); bytes == 0 for the other types.
struct Q0Layout {
    size_t bytes, m, qs, qh;
    int chunks;  // 64-byte chunks of levels: 4 (4-bit) or 8 (Q8_0)
};
constexpr Q0Layout q0_layout(DType t) {
    switch (t) {
        case DType::Q4_0:
        case DType::IQ4_NL: return {288, 0, 32, 0, 4};
        case DType::Q4_1: return {320, 32, 64, 0, 4};
        case DType::Q5_0: return {352, 0, 32, 288, 4};
        case DType::Q5_1: return {384, 32, 64, 320, 4};
        case DType::Q8_0: return {544, 0, 32, 0, 8};
        default: return {0, 0, 0, 0, 0};
    }
}
// q0_layout's fields as constants of one type, for kernels templated on it
template <DType T>
struct Q0Const {
    static constexpr size_t kBytes = q0_layout(T).bytes, kM = q0_layout(T).m, kQs = q0_layout(T).qs,
                            kQh = q0_layout(T).qh;
};

// Whether `type` has a packed layout (Q4_K, Q5_K, Q6_K, Q3_K, Q2_K, IQ4_XS; Q4_0, Q4_1, Q5_0,
// Q5_1, Q8_0, IQ4_NL).
bool has_packed_layout(DType type);
// Bytes of one group of 16 rows of n columns (n a multiple of the type's block size).
size_t packed_group_bytes(DType type, int64_t n);

// Packs rows [0, 16) (row r at rows + r * row_stride) of n columns into one group.
void pack_group(DType type, const uint8_t* rows, size_t row_stride, int64_t n, uint8_t* out);
// The inverse: writes the 16 rows of a group back in the GGUF block layout.
void unpack_group(DType type, const uint8_t* group, int64_t n, uint8_t* rows, size_t row_stride);

// y[t * ldy + r] = dot(row r, acts[t]) for the 16 * n_groups rows of consecutive packed groups and
// n_tok activation rows in vec_dot_type(type): the scalar reference of every packed kernel
// (unpacks each group and uses vec_dot).
void packed_gemm(DType type, const uint8_t* w, int64_t n_groups, int64_t n, const void* const* acts, int64_t n_tok,
                 float* y, int64_t ldy);

}  // namespace tandem::ref
