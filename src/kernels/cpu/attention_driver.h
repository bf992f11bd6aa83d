// The ISA-independent half of the CPU flash-attention kernels (x86/avx512_attention.cpp,
// x86/avx2_attention.cpp, arm/neon_attention.h): one job (kernels/reference/attention.h) walked
// in blocks of up to kBk positions inside one page; per block the keys go into a float tile by the
// ISA's load_kt, the values are addressed per position, the block kAhead ahead is prefetched, and
// the job's query rows (tokens x GQA heads, pre-scaled) meet the tile kRows at a time through the
// ISA's rows kernels; finally each row is normalised (and its log-sum-exp written). Included by
// each ISA's file, so it is compiled with that file's flags; internal linkage (an anonymous
// namespace), so two files built for different ISAs (neon, neon_v8) never share one copy.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "kernels/reference/attention.h"

namespace tandem::cpu {
namespace {

// rows[R - 1](q, kt, vp, n, hd, lim, m, l, o): R query rows against one block (see the kernels)
using AttnRowsFn = void (*)(const float* const* q, const float* kt, const uint16_t* const* vp, int n, int64_t hd,
                            const int* lim, float* m, float* l, float* const* o);
// load_kt(k, stride, n, hd, kt): the block's n keys (dimension d at k + d * stride) as kt[d * kBk + p]
using AttnLoadKtFn = void (*)(const uint16_t* k, int64_t stride, int n, int64_t hd, float* kt);

// The job's rows written out: row r's unnormalised output os[r * hd ..] divided by its sum ls[r],
// and its log-sum-exp ms[r] + log ls[r] where asked (-inf for a row that saw no position)
inline void finish_rows(const ref::AttnJob& jb, const float* os, const float* ms, const float* ls) {
    const int64_t hd = jb.hd, n_rows = jb.n_tok * jb.n_head;
    for (int64_t r = 0; r < n_rows; ++r) {
        float* dst = jb.o + (r / jb.n_head) * jb.o_stride + (r % jb.n_head) * hd;
        const float inv = ls[r] > 0.0f ? 1.0f / ls[r] : 0.0f;
        for (int64_t d = 0; d < hd; ++d) dst[d] = os[r * hd + d] * inv;
        if (jb.lse) jb.lse[r] = ls[r] > 0.0f ? ms[r] + std::log(ls[r]) : -INFINITY;
    }
}

template <int kBk, int kRows, int kAhead>
inline void flash_attention(const ref::AttnJob& jb, AttnLoadKtFn load_kt, const AttnRowsFn* rows) {
    const int64_t hd = jb.hd, n_rows = jb.n_tok * jb.n_head;
    thread_local std::vector<float> qs, os, ms, ls, kt;
    qs.resize((size_t)(n_rows * hd));
    os.assign((size_t)(n_rows * hd), 0.0f);
    ms.assign((size_t)n_rows, -INFINITY);
    ls.assign((size_t)n_rows, 0.0f);
    kt.resize((size_t)(hd * kBk));
    for (int64_t r = 0; r < n_rows; ++r) {  // row r = (token r / n_head, head r % n_head), scaled
        const float* src = jb.q + (r / jb.n_head) * jb.q_stride + (r % jb.n_head) * hd;
        for (int64_t d = 0; d < hd; ++d) qs[(size_t)(r * hd + d)] = src[d] * jb.scale;
    }
    const int64_t p_last = std::min(jb.p_end, jb.pos0 + jb.n_tok);  // exclusive: the last token's limit + 1
    const int64_t ps = jb.page_size;
    // blocks of up to kBk positions inside one page
    auto block_len = [&](int64_t pb) { return (int)std::min<int64_t>({kBk, p_last - pb, ps - pb % ps}); };
    const uint16_t* vp[kBk];
    for (int64_t pb = jb.p_begin; pb < p_last;) {
        const int n = block_len(pb);
        const int64_t page = jb.pages[pb / ps] * jb.page_stride;
        // (a block lies inside one page: its slots are consecutive)
        const uint16_t* v0 = jb.v + page + (pb % ps) * jb.kv_stride;
        for (int i = 0; i < n; ++i) vp[i] = v0 + i * jb.kv_stride;
        // later blocks come from DRAM at long contexts: ask for the one kAhead ahead while this
        // one computes (the first kAhead - 1 blocks go unprefetched)
        int64_t nb = pb + n;
        for (int a = 1; a < kAhead && nb < p_last; ++a) nb += block_len(nb);
        if (nb < p_last) {
            const int nn = block_len(nb);
            const int64_t np = jb.pages[nb / ps] * jb.page_stride, slot = nb % ps;
            for (int64_t d = 0; d < hd; ++d) __builtin_prefetch(jb.k + np + d * ps + slot, 0, 3);
            const char* nv = (const char*)(jb.v + np + slot * jb.kv_stride);
            const int64_t v_bytes = (int64_t)nn * jb.kv_stride * 2;  // the block's values are contiguous
            for (int64_t b = 0; b < v_bytes; b += 64) __builtin_prefetch(nv + b, 0, 3);
        }
        load_kt(jb.k + page + pb % ps, ps, n, hd, kt.data());
        for (int64_t r0 = 0; r0 < n_rows; r0 += kRows) {
            const int R = (int)std::min<int64_t>(kRows, n_rows - r0);
            int lim[kRows];
            const float* q[kRows];
            float* o[kRows];
            int lim_max = -1;
            for (int r = 0; r < R; ++r) {
                lim[r] = (int)std::min<int64_t>(jb.pos0 + (r0 + r) / jb.n_head - pb, kBk);
                lim_max = std::max(lim_max, lim[r]);
                q[r] = qs.data() + (r0 + r) * hd;
                o[r] = os.data() + (r0 + r) * hd;
            }
            if (lim_max < 0) continue;  // none of these rows sees the block (later rows may)
            rows[R - 1](q, kt.data(), vp, n, hd, lim, ms.data() + r0, ls.data() + r0, o);
        }
        pb += n;
    }
    finish_rows(jb, os.data(), ms.data(), ls.data());
}

// ---- Few rows (a decode token's GQA group): no key tile ----------------------------------------
// With at most Isa::kMaxDirect rows a tile would be read once: the ISA's score loop converts the
// keys itself, and the positions go in chunks of up to kDirectChunk inside one page: the scores of
// every row for the whole chunk (Isa::scores, W = Isa::width<R>() positions a call), one softmax
// step per row (Isa::softmax: one max, one rescaling) and the values summed over the chunk with
// the rows' outputs in registers (Isa::values, one pass of some dimensions a call), so the
// outputs' loads, rescaling and stores happen once per chunk. At long contexts the keys and values
// come from DRAM: the first chunk's lines are asked for at once, every later chunk's during the
// chunk before it (a line per iteration of the ISA's loops: its keys by the score loops, one line
// of each key row per W positions, its values by the value loops).
constexpr int kDirectChunk = 128;

template <class Isa, int R>
void direct_attention(const ref::AttnJob& jb) {
    constexpr int W = Isa::template width<R>(), kq = Isa::kMaxDirect;
    const int64_t hd = jb.hd, ps = jb.page_size;
    thread_local std::vector<float> qt, os, sc;
    qt.resize((size_t)(hd * kq));  // qt[d * kq + r] = q_r[d], scaled
    os.assign((size_t)(R * hd), 0.0f);
    sc.resize((size_t)(kq * kDirectChunk));  // row r's scores, then weights, at sc + r * kDirectChunk
    float m[R], l[R];
    float* o[R];
    int64_t last[R];  // each row's last visible position
    for (int r = 0; r < R; ++r) {
        const float* src = jb.q + (r / jb.n_head) * jb.q_stride + (r % jb.n_head) * hd;
        for (int64_t d = 0; d < hd; ++d) qt[(size_t)(d * kq + r)] = src[d] * jb.scale;
        m[r] = -INFINITY;
        l[r] = 0.0f;
        o[r] = os.data() + r * hd;
        last[r] = jb.pos0 + r / jb.n_head;
    }
    const int64_t p_last = std::min(jb.p_end, jb.pos0 + jb.n_tok);
    auto chunk_len = [&](int64_t pb) { return (int)std::min<int64_t>({kDirectChunk, p_last - pb, ps - pb % ps}); };
    if (jb.p_begin < p_last) {  // the first chunk's lines asked for at once (their misses overlap)
        const int64_t pb = jb.p_begin, slot = pb % ps, page = jb.pages[pb / ps] * jb.page_stride;
        const int n = chunk_len(pb);
        for (int64_t d = 0; d < hd; ++d)
            for (int64_t b = 0; b < n * 2; b += 64) __builtin_prefetch((const char*)(jb.k + page + slot + d * ps) + b, 0, 3);
        const char* v0 = (const char*)(jb.v + page + slot * jb.kv_stride);
        for (int64_t b = 0; b < n * jb.kv_stride * 2; b += 64) __builtin_prefetch(v0 + b, 0, 2);
    }
    const uint16_t* vp[kDirectChunk];
    for (int64_t pb = jb.p_begin; pb < p_last;) {
        const int n = chunk_len(pb);
        const int64_t page = jb.pages[pb / ps] * jb.page_stride, slot = pb % ps;
        const uint16_t* k = jb.k + page + slot;
        const uint16_t *nk = nullptr, *nv = nullptr;  // the next chunk's keys and values, prefetched
        int64_t nv_lines = 0;
        if (const int64_t nb = pb + n; nb < p_last) {
            const int64_t npage = jb.pages[nb / ps] * jb.page_stride, nslot = nb % ps;
            nk = jb.k + npage + nslot;
            nv = jb.v + npage + nslot * jb.kv_stride;
            nv_lines = ((int64_t)chunk_len(nb) * jb.kv_stride * 2 + 63) / 64;
        }
        for (int s0 = 0; s0 < n; s0 += W) {
            const uint16_t* pk = nk ? nk + s0 : nullptr;
            if (n - s0 >= W) Isa::template scores<R, true>(qt.data(), k + s0, ps, W, hd, sc.data() + s0, pk);
            else Isa::template scores<R, false>(qt.data(), k + s0, ps, n - s0, hd, sc.data() + s0, pk);
        }
        float corr[R];
        for (int r = 0; r < R; ++r)
            corr[r] = Isa::softmax(sc.data() + r * kDirectChunk, n, (int)std::min<int64_t>(last[r] - pb + 1, n), m[r], l[r]);
        const uint16_t* v0 = jb.v + page + slot * jb.kv_stride;
        for (int i = 0; i < n; ++i) vp[i] = v0 + i * jb.kv_stride;
        for (int64_t d0 = 0, line = 0; d0 < hd; line += n) {  // the next chunk's value lines, n per pass
            const char* at = nv ? (const char*)nv + 64 * line : nullptr;
            d0 += Isa::template values<R>(sc.data(), vp, n, corr, o, d0, hd, at, nv ? nv_lines - line : 0);
        }
        pb += n;
    }
    finish_rows(jb, os.data(), m, l);
}

template <class Isa, int... R>
constexpr std::array<void (*)(const ref::AttnJob&), sizeof...(R)> direct_fns(std::integer_sequence<int, R...>) {
    return {direct_attention<Isa, R + 1>...};
}
// direct_attention<Isa, R> for R = 1 .. Isa::kMaxDirect, at index R - 1
template <class Isa>
constexpr auto kDirectFns = direct_fns<Isa>(std::make_integer_sequence<int, Isa::kMaxDirect>{});

}  // namespace
}  // namespace tandem::cpu
