// The driver of the x86 float kernels (F16 / BF16 / F32 rows x a few tokens: avx2.cpp and
// avx512.cpp): blocks of 16 rows, each through every tile of up to kMax tokens while it sits in
// L1/L2. Scalar code only, internal linkage: each kernel file compiles its own copy with its flags.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace tandem::cpu {
namespace {

// rows [0, n_rows) of w x tokens a[0 .. T): ys[t][r_off + r]
template <typename A>
using FloatTileFn = void (*)(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const A* const* a,
                             float* const* ys, int64_t r_off);

// tiles[T - 1] takes T tokens
template <typename A, int kMax>
void run_float_tiles(const FloatTileFn<A> (&tiles)[kMax], const uint8_t* w, size_t row_stride, int64_t n_rows,
                     int64_t n, const A* const* a, int64_t n_tok, float* const* ys) {
    for (int64_t r0 = 0; r0 < n_rows; r0 += 16) {
        const int64_t nr = std::min<int64_t>(16, n_rows - r0);
        for (int64_t t0 = 0; t0 < n_tok; t0 += kMax) {
            const int T = (int)std::min<int64_t>(kMax, n_tok - t0);
            tiles[T - 1](w + (size_t)r0 * row_stride, row_stride, nr, n, a + t0, ys + t0, r0);
        }
    }
}

}  // namespace
}  // namespace tandem::cpu
