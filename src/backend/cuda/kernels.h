// CUDA kernels of the hybrid forward, as plain host functions (no CUDA types: `stream` is a
// cudaStream_t from backend::Stream::handle(), null for the default stream). All pointers are
// device pointers. Each kernel has a scalar CPU reference (kernels/reference) and a test
// against it (tests/cuda/cuda_kernels_test.cpp). Each returns an empty string, or one line
// naming the kernel and the CUDA error (not a Status: fmt does not get through nvcc, and this
// header is compiled by it).
//
// Layouts follow the CPU forward (model/builders.cpp): activations are row-major f32 with one
// row per token; weights are GGUF rows (`row_bytes` apart, quantized blocks as stored). The GPU's
// KV pool is (n_pages, n_layer, page_size, n_kv) f16 for K and for V, all heads of a position
// together (the CPU's KvPool has since moved to one head's positions together; the GPU keeps its
// own pages, nothing is copied between the two).
#pragma once

#include <cstdint>

#include <string>
#include <vector>

#include "core/dtype.h"
#include "kernels/reference/ops.h"  // ref::RopeFreqs (a plain struct)

namespace tandem::cuda {

using KernelStatus = std::string;  // empty: launched fine

// out[t] = row tokens[t] of `table` (type F32/F16/BF16/Q8_0/Q4_K/Q5_K/Q6_K, or the read-only
// Q4_1/Q5_1/IQ4_NL/IQ4_XS/Q2_K/Q3_K) dequantized to f32;
// out (n, dim)
KernelStatus embed_rows(DType type, const void* table, size_t row_bytes, const int32_t* tokens, int64_t n, int64_t dim,
                  float* out, void* stream);

// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w for n_rows rows of `width` (w may be null).
// Per-head q/k norm: n_rows = tokens * heads, width = head_dim. out may alias x.
KernelStatus rms_norm(const float* x, const float* w, int64_t n_rows, int64_t width, float eps, float* out, void* stream);

// NeoX RoPE in place on x (n_tok, n_heads * head_dim); token t is at position pos[t]; the
// frequencies (plain, linear or YaRN) as ref::rope_neox_table computes them.
KernelStatus rope_neox(float* x, const int32_t* pos, int64_t n_tok, int64_t n_heads, int64_t head_dim,
                       const ref::RopeFreqs& f, void* stream);

// Routed experts on the device: y[p] (n_rows values) = W_e . x[x_row[p]] for the pairs p of the
// tiles, where W_e, the matrix of expert e = expert[p], starts at w + e * expert_bytes (rows
// row_bytes apart, `in` wide, type as matmul's). y is (pairs, n_rows). Tile i is the pairs
// order[tiles[2i]] .. order[tiles[2i] + tiles[2i + 1] - 1]: at most kExpertTileTokens pairs of
// one expert, which share each weight read (pairs sorted by expert make the tiles).
constexpr int kExpertTileTokens = 8;
KernelStatus expert_matmul(DType type, const void* w, size_t expert_bytes, size_t row_bytes, int64_t n_rows, int64_t in,
                           const float* x, const int32_t* x_row, const int32_t* expert, const int32_t* order,
                           const int32_t* tiles, int64_t n_tiles, float* y, void* stream);  // n_tiles <= 65535
// The tiles of expert_matmul for n pairs whose experts are expert[0..n): order (n) and tiles (2 x
// the returned count, at most n) written by the host; at most max_tile pairs a tile.
int64_t expert_tiles(const int32_t* expert, int64_t n, int32_t* order, int32_t* tiles,
                     int max_tile = kExpertTileTokens);

// Tensor-core GEMM (mma.cu) for prefill-sized batches: the products of matmul / expert_matmul,
// 64 weight rows x 64 tokens per block; per step of 32 inputs the block decodes its weights and
// rounds them and the activations to bf16 in shared memory, then bf16 tensor cores multiply them
// (WMMA 16x16x16, f32 accumulation). Each weight element is decoded once per 64 tokens instead
// of once per 8, and the multiply-adds leave the CUDA cores. Products differ from matmul's by
// the bf16 rounding of both operands (relative 2^-9 per element). sm_80 or newer.
constexpr int kMmaTileTokens = 64;
constexpr int64_t kMmaMinTokens = 16;  // matmul takes matmul_mma from this many tokens on
KernelStatus matmul_mma(DType type, const void* w, size_t row_bytes, int64_t n_rows, int64_t in, const float* x,
                        int64_t n_tok, float* y, void* stream);
// expert_matmul over tiles of at most kMmaTileTokens pairs (expert_tiles_for says when)
KernelStatus expert_matmul_mma(DType type, const void* w, size_t expert_bytes, size_t row_bytes, int64_t n_rows,
                               int64_t in, const float* x, const int32_t* x_row, const int32_t* expert,
                               const int32_t* order, const int32_t* tiles, int64_t n_tiles, float* y, void* stream);
// The tiles for n pairs and the kernel they are for: when the pairs average at least
// kMmaMinTokens per expert (prefill), tiles of up to kMmaTileTokens for expert_matmul_mma (mma =
// true); otherwise tiles of up to kExpertTileTokens for expert_matmul.
int64_t expert_tiles_for(const int32_t* expert, int64_t n, int32_t* order, int32_t* tiles, bool& mma);
// For each run u of pairs (runs[3u] = token t, runs[3u + 1] = first pair, runs[3u + 2] = pairs):
// out[t] += sum over its pairs p, in order, of weight[p] * y[p] (rows of `width`). One run per
// token (the pairs of a token next to each other).
KernelStatus expert_sum(const float* y, const int32_t* runs, int64_t n_runs, const float* weight, int64_t width,
                        float* out, void* stream);

// x[i] += y[i], n values (the residual).
KernelStatus add(float* x, const float* y, int64_t n, void* stream);

// dst[i] = row rows[i] of src (rows of `width`), i < n (the rows whose logits are wanted).
KernelStatus gather_rows(const float* src, const int32_t* rows, int64_t n, int64_t width, float* dst, void* stream);

// out[i] = silu(gate[i]) * up[i], n values; out may alias gate.
KernelStatus swiglu(const float* gate, const float* up, float* out, int64_t n, void* stream);

// y (n_tok, n_rows) = x (n_tok, in) times the weight rows [0, n_rows) of `in` elements, type
// F32/F16/BF16/Q8_0/Q4_K/Q5_K/Q6_K/Q4_1/Q5_1/IQ4_NL/IQ4_XS/Q2_K/Q3_K dequantized on the fly
// (f32 accumulation): one warp per row below kMmaMinTokens tokens, matmul_mma from there on.
KernelStatus matmul(DType type, const void* w, size_t row_bytes, int64_t n_rows, int64_t in, const float* x, int64_t n_tok,
              float* y, void* stream);

// Router: per token, softmax over n_expert logits, the top k (ties to the lower index), their
// weights renormalised to sum 1. ids/weights (n_tok, k), best first.
KernelStatus router_topk(const float* logits, int64_t n_tok, int64_t n_expert, int64_t k, int32_t* ids, float* weights,
                   void* stream);

// The paged KV cache of one layer on the GPU.
struct KvLayer {
    uint16_t* k;      // pool base: (n_pages, n_layer, page_size, n_kv) f16
    uint16_t* v;
    int64_t n_layer, il, page_size, n_kv;
};

// Writes the keys/values of n_tok tokens (each (n_kv) f32) at their positions: token t goes to
// page tables[tok_seq[t] * max_pages + pos[t] / page_size], slot pos[t] % page_size.
KernelStatus kv_store(const KvLayer& kv, const float* k, const float* v, const int32_t* pos, const int32_t* tok_seq,
                const int32_t* tables, int64_t max_pages, int64_t n_tok, void* stream);

// Attention of n_tok query tokens (q (n_tok, n_head * head_dim), already normed and roped) over
// the paged cache: token t sees positions [0, pos[t]] of sequence tok_seq[t] (causal; decode is
// one token per sequence). GQA: head h reads kv head h / (n_head / n_head_kv). head_dim must be
// a multiple of 32, at most 256. out (n_tok, n_head * head_dim); scale 1/sqrt(head_dim).
KernelStatus attention(const KvLayer& kv, const float* q, const int32_t* pos, const int32_t* tok_seq,
                 const int32_t* tables, int64_t max_pages, int64_t n_tok, int64_t n_head, int64_t n_head_kv,
                 int64_t head_dim, float* out, void* stream);

// The same for prefill, tiled: tiles = (first token, count) pairs of runs of consecutive tokens
// of one sequence (attention_tiles makes them, at most 64 / (n_head / n_head_kv) tokens each);
// every tile's rows share each key/value block read. n_head / n_head_kv at most 64.
std::vector<int32_t> attention_tiles(const int32_t* pos, const int32_t* tok_seq, int64_t n_tok, int64_t group);
KernelStatus attention_tiled(const KvLayer& kv, const float* q, const int32_t* pos, const int32_t* tok_seq,
                             const int32_t* tables, int64_t max_pages, const int32_t* tiles, int64_t n_tiles, int64_t n_head,
                             int64_t n_head_kv, int64_t head_dim, float* out, void* stream);

// attention_tiled's work on tensor cores (mma.cu): per 32 positions S = Q K^T and O += P V by
// WMMA (Q and P rounded to f16, f32 accumulation; O rescaled in shared memory by the online
// softmax). head_dim 64 or 128 (attention_mma_fits), the same tiles.
constexpr bool attention_mma_fits(int64_t head_dim) { return head_dim == 64 || head_dim == 128; }
KernelStatus attention_mma(const KvLayer& kv, const float* q, const int32_t* pos, const int32_t* tok_seq,
                           const int32_t* tables, int64_t max_pages, const int32_t* tiles, int64_t n_tiles, int64_t n_head,
                           int64_t n_head_kv, int64_t head_dim, float* out, void* stream);

// Decode attention split over positions (flash-decoding, split_attention.cu; the plan and the
// merge: split_attention.h): one block per (token, KV head, part), the GQA group's query rows
// together, n_parts from split_parts(). The same queries and output as `attention`; n_head /
// n_head_kv at most kSplitMaxGroup. More than one part: the partial results go to part_o
// (n_parts * n_tok * n_head * head_dim floats) and part_ml (2 per row of it), then a merge pass.
KernelStatus attention_split(const KvLayer& kv, const float* q, const int32_t* pos, const int32_t* tok_seq,
                             const int32_t* tables, int64_t max_pages, int64_t n_tok, int64_t n_head, int64_t n_head_kv,
                             int64_t head_dim, int64_t n_parts, float* part_o, float* part_ml, float* out, void* stream);
// SMs of the current device (1 when it cannot be asked): what split_parts() fills.
int64_t sm_count();

// W8A8 (kernels/reference/int8.h, model.h Int8Linear). Activations of n_tok tokens (n_tok, in) to
// int8: dynamic (x_scale[t] = max|x| / 127) or static (input_scale, input_offset; x_scale = 1);
// x_sum[t] = sum of the token's x_q.
KernelStatus quantize_i8(const float* x, int64_t n_tok, int64_t in, bool dynamic, float input_scale, float input_offset,
                         int8_t* xq, float* x_scale, int32_t* x_sum, void* stream);
// Per output row: static (bias set): y = (acc + bias) * scale; dynamic: y = (acc - zero * x_sum)
// * x_scale * scale (zero may be null: symmetric weights).
struct I8Rows {
    const float* scale = nullptr;   // (n_rows) deq_scale or weight_scale
    const int32_t* bias = nullptr;  // (n_rows) quant_bias: static activations
    const float* zero = nullptr;    // (n_rows) weight zero points
};
// y (n_tok, n_rows) from int8 weight rows (`row_stride` bytes apart) and int8 activations (n_tok, in):
// one warp per row (DP4A) below kMmaMinTokens tokens, matmul_i8_mma from there on.
KernelStatus matmul_i8(const int8_t* w, size_t row_stride, int64_t n_rows, int64_t in, const int8_t* xq,
                       const float* x_scale, const int32_t* x_sum, int64_t n_tok, const I8Rows& rows, float* y,
                       void* stream);

// The same on int8 tensor cores (mma_i8.cu: WMMA 16x16x16 s8 -> s32, exact like DP4A), any token count.
KernelStatus matmul_i8_mma(const int8_t* w, size_t row_stride, int64_t n_rows, int64_t in, const int8_t* xq,
                           const float* x_scale, const int32_t* x_sum, int64_t n_tok, const I8Rows& rows, float* y,
                           void* stream);

// Greedy sampling: ids[t] = argmax of logits row t (ties to the lower index).
KernelStatus argmax(const float* logits, int64_t n_tok, int64_t n_vocab, int32_t* ids, void* stream);

// Waits for `stream` and reports an asynchronous kernel error.
KernelStatus sync(void* stream);

}  // namespace tandem::cuda
