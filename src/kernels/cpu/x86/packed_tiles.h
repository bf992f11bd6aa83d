// The tile driver of the x86 packed kernels (avx512_packed_kernels.h, avx2_packed_kernels.h): a kernel is a
// set of tiles, each multiplying G consecutive groups of 16 rows by T tokens; run_tiles cuts a
// call's groups and tokens into tiles and prefetches the next groups while a group's tiles run;
// and the layout traits of the 16-element sub-block types both ISAs' kernels read.
// Scalar code and SSE prefetches only; everything has internal linkage, so each kernel file
// compiles its own copy with its own target flags.
#pragma once

#include <xmmintrin.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "kernels/cpu/kernels.h"
#include "kernels/reference/packed.h"

namespace tandem::cpu {
namespace {

// The kernels' prefetch of the weights kPrefetchBytes ahead of those being read: into L2 or L1 as
// g_prefetch_l2 says (a predictable branch; the weights stream from DRAM at a few bytes per cycle)
inline void prefetch_weights(const void* p) {
    if (g_prefetch_l2) _mm_prefetch((const char*)p, _MM_HINT_T1);
    else _mm_prefetch((const char*)p, _MM_HINT_T0);
}

// L2 prefetch of the next groups: one line in this many bytes (see run_tiles)
constexpr size_t kSlicePrefetchStride = 256;

// Tiles: G groups x T tokens, one signature for every kernel. aux: what the kernel computed from
// each token's activations once per call (Q4_K's pair sums, the 32-element types' block sums and
// scales), its first token's; or null.
using TileFn = void (*)(const uint8_t* g, size_t gb, int64_t nb, const void* const* acts, const void* aux, float* y,
                        int64_t ldy);

// The tiles K<G, 1>::fn ... K<G, n>::fn of one kernel
template <template <int, int> class K, int G, int... I>
constexpr std::array<TileFn, sizeof...(I)> tiles(std::integer_sequence<int, I...>) {
    return {K<G, I + 1>::fn...};
}

// A kernel's tiles: one group x up to n1 tokens, two groups x up to n2 tokens (n2 = 0: none).
struct TileSet {
    const TileFn* one;
    int n1;
    const TileFn* two;
    int n2;
};

// The types with 16-element sub-blocks (Q6_K, Q3_K, Q2_K) as both ISAs' kernels see their packed
// blocks: where the fields are, whether the scales are signed, which activations (columns of the
// unit) each of a unit's four operand vectors meets, and how far the levels are offset.
enum class K16 { q6, q3, q2 };

template <K16 K>
struct K16Traits;
template <>
struct K16Traits<K16::q6> {
    static constexpr size_t kBlock = ref::kPackedQ6KBlock, kD = ref::packed_q6_k::d, kSc = ref::packed_q6_k::sc;
    static constexpr bool kSignedSc = true;
    static constexpr int kAct[4] = {0, 8, 4, 12};  // ql chunk 0 low/high nibbles, chunk 1 low/high
    static constexpr int kOffsetShift = 5;          // levels q in 0..63 stand for q - 32
    static constexpr size_t unit(int s) { return ref::packed_q6_k::qh(s); }
};
template <>
struct K16Traits<K16::q3> {
    static constexpr size_t kBlock = ref::kPackedQ3KBlock, kD = ref::packed_q3_k::d, kSc = ref::packed_q3_k::sc;
    static constexpr bool kSignedSc = true;
    static constexpr int kAct[4] = {0, 4, 8, 12};
    static constexpr int kOffsetShift = 2;  // q2 + 4h in 0..7 stand for q2 + 4h - 4
    static constexpr size_t unit(int s) { return ref::packed_q3_k::q2(s); }
};
template <>
struct K16Traits<K16::q2> {
    static constexpr size_t kBlock = ref::kPackedQ2KBlock, kD = ref::packed_q2_k::d, kSc = ref::packed_q2_k::sc;
    static constexpr bool kSignedSc = false;
    static constexpr int kAct[4] = {0, 4, 8, 12};
    static constexpr size_t unit(int s) { return ref::packed_q2_k::q2(s); }
};

// Pairs of groups share each broadcast activation (from 2 tokens on; decode takes groups one by
// one); the tokens go in tiles of n2 (pairs) or n1 (single groups), then one tile of the rest.
void run_tiles(const TileSet& ts, size_t gb, const uint8_t* w, int64_t n_groups, int64_t nb, const void* const* acts,
               int64_t n_tok, const void* aux, size_t aux_per_tok, float* y, int64_t ldy) {
    int64_t g = 0;
    auto pass = [&](const TileFn* fns, int tile, int64_t n_g) {
        // With several tiles per group (prefill), the weights of the next groups (the rest of
        // this call, or the rows the next call of this matrix takes: prefetching past the end
        // never faults) are fetched into L2 a slice per tile while these compute, so the first
        // tile of a group does not wait on DRAM (~18% of the expert GEMMs' time at 32 tokens).
        // One line in four is enough: the L2's own prefetcher fetches the lines between (one
        // prefetch per line stalled on the miss buffers: 6.8% of prefill's samples in this loop;
        // 256-1024 B strides gave 3% more prefill tok/s than 64 B on Zen 5, all alike).
        const int64_t n_tiles = (n_tok + tile - 1) / tile;
        const size_t next_bytes = (size_t)n_g * gb;
        const size_t slice = n_tiles > 1 ? ((next_bytes + (size_t)n_tiles - 1) / (size_t)n_tiles + 63) & ~(size_t)63 : 0;
        const uint8_t* next = w + (g + n_g) * gb;
        size_t ahead = 0;
        // tiles of equal size (32 tokens in tiles of 6: 6 6 5 5 5 5, not 6 6 6 6 6 2): a small
        // last tile unpacks every weight chunk for one or two tokens
        const int64_t base = n_tok / n_tiles, n_big = n_tok % n_tiles;
        for (int64_t i = 0, t0 = 0; i < n_tiles; ++i) {
            const int64_t nt = base + (i < n_big ? 1 : 0);
            for (size_t b = 0; b < slice && ahead < next_bytes; b += kSlicePrefetchStride, ahead += kSlicePrefetchStride)
                _mm_prefetch((const char*)next + ahead, _MM_HINT_T1);
            fns[nt - 1](w + g * gb, gb, nb, acts + t0, aux ? static_cast<const uint8_t*>(aux) + t0 * aux_per_tok : nullptr,
                        y + t0 * ldy + g * ref::kPackRows, ldy);
            t0 += nt;
        }
        g += n_g;
    };
    if (ts.n2 > 0 && n_tok >= 2)
        while (g + 2 <= n_groups) pass(ts.two, ts.n2, 2);
    while (g < n_groups) pass(ts.one, ts.n1, 1);
}

}  // namespace
}  // namespace tandem::cpu
