// Causal attention over a paged f16 KV cache, as one job: the query rows of n_tok consecutive
// positions of one sequence and the n_head query heads that share one KV head (GQA), against
// that head's keys and values at positions [p_begin, p_end) (each row also stops at its own
// causal limit). Splitting the positions of a long context over several jobs and merging them
// with merge_attention is flash-decoding. The reference below is plain: scores, softmax, sum.
#pragma once

#include <cstdint>

namespace tandem::ref {

struct AttnJob {
    const float* q = nullptr;  // row (t, j): q + t * q_stride + j * hd, for t < n_tok, j < n_head
    int64_t q_stride = 0;
    float* o = nullptr;        // the rows' outputs, same layout with o_stride (normalised per job)
    int64_t o_stride = 0;
    float* lse = nullptr;      // optional, row t * n_head + j: log of the row's softmax denominator
                               // (max + log sum; -inf when the row sees no position in the range)
    int64_t n_tok = 0, n_head = 0, hd = 0;
    int64_t pos0 = 0;          // token t is at position pos0 + t and sees positions [0, pos0 + t]
    int64_t p_begin = 0, p_end = 0;
    // f16 keys/values of the KV head, in pages of page_size positions: keys transposed, element
    // i of position p at k + pages[p / page_size] * page_stride + i * page_size + p % page_size;
    // values as rows, element i at v + pages[p / page_size] * page_stride + (p % page_size) *
    // kv_stride + i (the KvPool layout)
    const uint16_t* k = nullptr;
    const uint16_t* v = nullptr;
    const int32_t* pages = nullptr;
    int64_t page_size = 0, page_stride = 0, kv_stride = 0;
    float scale = 1.0f;        // applied to q . k
};

void attention(const AttnJob& job);

// Combines n_parts results of the same rows over disjoint position ranges: o_parts[i] / lse_parts[i]
// (row r's output at o_parts[i] + r * hd) into out (row r at out + r * hd). n_rows rows of hd.
void merge_attention(const float* const* o_parts, const float* const* lse_parts, int n_parts, int64_t n_rows,
                     int64_t hd, float* out);

}  // namespace tandem::ref
