// Split-K decode attention (flash-decoding), the parts the host and the device share: how many
// parts a decode batch's positions are cut into, which positions part z of a token takes, and how
// the parts' partial softmax results merge into the output. The kernel (split_attention.cu) runs
// one block per (token, KV head, part), all the GQA heads of that KV head together, so a lone
// sequence with a long context still has work for every SM; tests/unit/split_attention_test.cpp
// checks this file's logic on the CPU, tests/cuda the kernel on a GPU.
#pragma once
#include <cmath>
#include <cstdint>

#include "backend/cuda/host_device.h"

namespace tandem::cuda {

constexpr int64_t kSplitChunk = 32;      // positions a warp takes at a time: part boundaries are multiples
constexpr int64_t kSplitMinPart = 256;   // positions per part, at least (below, the merge costs more than it saves)
constexpr int64_t kSplitMaxParts = 64;
constexpr int64_t kSplitMaxRows = 256;   // tokens x parts of one launch: what the partial results' scratch holds
constexpr int64_t kSplitMaxGroup = 16;   // query heads per KV head the kernel takes

// Parts (a power of two) for n_tok decode tokens over n_head_kv KV heads whose longest context is
// max_n_pos positions, on a GPU of n_sm SMs: doubled while the blocks are fewer than two per SM,
// every part keeps kSplitMinPart positions of the longest context, and tokens x parts stays
// within kSplitMaxRows. A batch with blocks enough already gets 1 (no merge pass).
inline int64_t split_parts(int64_t n_tok, int64_t n_head_kv, int64_t max_n_pos, int64_t n_sm) {
    int64_t parts = 1;
    while (parts < kSplitMaxParts && 2 * parts * n_tok <= kSplitMaxRows && n_tok * n_head_kv * parts < 2 * n_sm &&
           max_n_pos >= 2 * parts * kSplitMinPart)
        parts *= 2;
    return parts;
}

// Positions [begin, end) of part z (of n_parts) of a token that sees n_pos positions: equal
// shares rounded up to kSplitChunk; trailing parts of a short context are empty (begin == end).
struct PosRange {
    int64_t begin, end;
};
TANDEM_HD PosRange split_range(int64_t n_pos, int64_t n_parts, int64_t z) {
    const int64_t share = (n_pos + n_parts - 1) / n_parts;
    const int64_t per = (share + kSplitChunk - 1) / kSplitChunk * kSplitChunk;
    const int64_t b = z * per < n_pos ? z * per : n_pos;
    return {b, b + per < n_pos ? b + per : n_pos};
}

// One part's partial result for one (token, head): o = sum over its positions p of
// exp(s_p - m) v_p (not normalised), m = its largest score, l = sum of exp(s_p - m). An empty part
// has m = -inf, l = 0 and o = 0. Output element d of the merged row: sum_z o_z[d] exp(m_z - M)
// / sum_z l_z exp(m_z - M), M = the largest m_z. Parts are o_stride / ml_stride floats apart.
TANDEM_HD float split_merge(const float* o, const float* ml, int64_t n_parts, int64_t o_stride, int64_t ml_stride,
                            int64_t d) {
    float M = -INFINITY;
    for (int64_t z = 0; z < n_parts; ++z)
        if (ml[z * ml_stride + 1] > 0.0f) M = fmaxf(M, ml[z * ml_stride]);
    float num = 0.0f, den = 0.0f;
    for (int64_t z = 0; z < n_parts; ++z) {
        const float l = ml[z * ml_stride + 1];
        if (!(l > 0.0f)) continue;  // empty part (its m is -inf)
        const float f = expf(ml[z * ml_stride] - M);
        num += o[z * o_stride + d] * f;
        den += l * f;
    }
    return num / den;
}

}  // namespace tandem::cuda
