// What the CUDA kernel files share (included by each .cu; everything here is internal to the
// file that includes it): error strings, warp reductions, the launch dispatch over the weight types
// the decoders of decode.h know, and the paged KV pool's offsets.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "backend/cuda/decode.h"
#include "backend/cuda/kernels.h"

namespace tandem::cuda {
namespace {

constexpr int kWarp = 32;

std::string piece(const char* s) { return s; }
std::string piece(int64_t v) { return std::to_string(v); }
template <typename... A>
std::string err(const A&... a) {
    return (piece(a) + ...);
}

KernelStatus launched(const char* what) {
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return err("cuda ", what, ": ", cudaGetErrorString(e), " (", cudaGetErrorName(e), ")");
    return {};
}

cudaStream_t st(void* s) { return static_cast<cudaStream_t>(s); }

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = kWarp / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
// Element offset of (page, slot) of layer kv.il in the paged KV pool (all heads of a position together)
__device__ __forceinline__ size_t kv_offset(const KvLayer& kv, int32_t page, int64_t slot) {
    return ((size_t)((int64_t)page * kv.n_layer + kv.il) * kv.page_size + slot) * kv.n_kv;
}

// A W8A8 output from its exact int32 dot v (row r, token tk): static (bias) y = (v + bias) *
// scale; dynamic y = (v - zero * x_sum) * x_scale * scale (zero optional)
__device__ __forceinline__ float i8_dequant(int v, int64_t r, int64_t tk, const I8Rows& rows, const float* x_scale,
                                            const int32_t* x_sum) {
    if (rows.bias) return (float)((long long)v + rows.bias[r]) * rows.scale[r];
    if (rows.zero) return ((float)v - rows.zero[r] * (float)x_sum[tk]) * x_scale[tk] * rows.scale[r];
    return (float)v * x_scale[tk] * rows.scale[r];
}

// The GQA group (query heads per KV head) of an attention launch, or 0 with `why` set when the
// heads do not divide or the group exceeds max_group rows
inline int64_t gqa_group(const char* what, int64_t n_head, int64_t n_head_kv, int64_t max_group, KernelStatus& why) {
    if (n_head_kv <= 0 || n_head % n_head_kv != 0) {
        why = err("cuda ", what, ": ", n_head, " heads not a multiple of ", n_head_kv, " kv heads");
        return 0;
    }
    if (n_head / n_head_kv > max_group) {
        why = err("cuda ", what, ": ", n_head / n_head_kv, " query heads per KV head (at most ", max_group, ")");
        return 0;
    }
    return n_head / n_head_kv;
}

// f.template operator()<T>() for type t if the decoders know it (a launch), then the launch's error
template <typename F>
KernelStatus dispatch(DType t, const char* what, F&& f) {
    if (!with_weight_type(t, f)) return err("cuda ", what, ": weight type ", (int64_t)t, " not supported");
    return launched(what);
}

}  // namespace
}  // namespace tandem::cuda
