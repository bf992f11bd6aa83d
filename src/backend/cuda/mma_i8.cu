// W8A8 GEMM on int8 tensor cores (declared in kernels.h): matmul_i8_mma, what matmul_i8 runs for
// prefill-sized batches. A block of 4 warps computes 64 weight rows x 64 tokens; per step of 64
// inputs every thread copies 32 weight bytes of one row and 32 activation bytes of one token into
// shared memory, laid out per 16-input slice (each fragment a contiguous, 256-byte aligned
// 16 x 16 block, as WMMA's 8-bit loads want); each warp multiplies its 16 rows by the 64 tokens
// with WMMA 16x16x16 s8 fragments into four s32 accumulators. The sums are exact, as DP4A's are;
// each (row, token) is then dequantized as matmul_i8 does it (i8_dequant). Any shape: partial
// tiles and the inputs past `in` are zero.
#include <mma.h>

#include <cstring>

#include "backend/cuda/common.cuh"

namespace tandem::cuda {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kRows = 64, kToks = 64, kStep = 64, kFrag = 16, kThreads = 128;
constexpr int kSlices = kStep / kFrag;
static_assert(kRows == (kThreads / kWarp) * kFrag, "a warp per 16 rows");
static_assert(kThreads == 2 * kRows && kThreads == 2 * kToks, "one row and one token per thread pair");

struct I8Shared {
    int8_t a[kSlices][kRows][kFrag];  // weights: slice s (inputs 16s .. 16s + 15 of the step), row, input
    int8_t b[kSlices][kToks][kFrag];  // activations: slice, token, input
    int c[kThreads / kWarp][kToks * kFrag];  // per warp: (row r, token t) at c[w][t * 16 + r]
};

// 32 bytes of src from element e0 (zeros at and past `in`) into two 16-byte slices
__device__ __forceinline__ void copy32(const int8_t* src, int64_t e0, int64_t in, int8_t* s0, int8_t* s1) {
    if (e0 + 32 <= in && ((uintptr_t)(src + e0) & 15) == 0) {
        const int4* p = reinterpret_cast<const int4*>(src + e0);
        *reinterpret_cast<int4*>(s0) = p[0];
        *reinterpret_cast<int4*>(s1) = p[1];
        return;
    }
#pragma unroll
    for (int l = 0; l < 16; ++l) {
        s0[l] = e0 + l < in ? src[e0 + l] : 0;
        s1[l] = e0 + 16 + l < in ? src[e0 + 16 + l] : 0;
    }
}

__global__ void __launch_bounds__(kThreads)
    k_matmul_i8_mma(const int8_t* w, size_t row_stride, int64_t n_rows, int64_t in, const int8_t* xq,
                    const float* x_scale, const int32_t* x_sum, int64_t n_tok, I8Rows rows, float* y) {
    __shared__ __align__(256) I8Shared sh;
    const int tid = (int)threadIdx.x, warp = tid / kWarp, lane = tid % kWarp;
    const int64_t r0 = (int64_t)blockIdx.x * kRows, t0 = (int64_t)blockIdx.y * kToks;
    // this thread fills row (and token) tid / 2, slices 2 (tid % 2) and 2 (tid % 2) + 1 of each step
    const int f = tid / 2, fs = 2 * (tid % 2);
    const bool row_ok = r0 + f < n_rows, tok_ok = t0 + f < n_tok;
    const int8_t* wrow = w + (size_t)(row_ok ? r0 + f : 0) * row_stride;
    const int8_t* xrow = xq + (tok_ok ? t0 + f : 0) * in;
    wmma::fragment<wmma::accumulator, kFrag, kFrag, kFrag, int> acc[kToks / kFrag];
#pragma unroll
    for (int n = 0; n < kToks / kFrag; ++n) wmma::fill_fragment(acc[n], 0);
    for (int64_t k0 = 0; k0 < in; k0 += kStep) {
        const int64_t e0 = k0 + kFrag * fs;
        copy32(wrow, e0, row_ok ? in : 0, sh.a[fs][f], sh.a[fs + 1][f]);
        copy32(xrow, e0, tok_ok ? in : 0, sh.b[fs][f], sh.b[fs + 1][f]);
        __syncthreads();
#pragma unroll
        for (int s = 0; s < kSlices; ++s) {
            wmma::fragment<wmma::matrix_a, kFrag, kFrag, kFrag, signed char, wmma::row_major> fa;
            wmma::load_matrix_sync(fa, sh.a[s][warp * kFrag], kFrag);
#pragma unroll
            for (int n = 0; n < kToks / kFrag; ++n) {
                // (input k, token t) at b[s][t][k]: column-major K x N
                wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, signed char, wmma::col_major> fb;
                wmma::load_matrix_sync(fb, sh.b[s][n * kFrag], kFrag);
                wmma::mma_sync(acc[n], fa, fb, acc[n]);
            }
        }
        __syncthreads();
    }
    int* c = sh.c[warp];
#pragma unroll
    for (int n = 0; n < kToks / kFrag; ++n) wmma::store_matrix_sync(c + n * kFrag * kFrag, acc[n], kFrag, wmma::mem_col_major);
    __syncwarp();
    // 16 consecutive lanes write 16 consecutive rows of one token
    for (int i = lane; i < kToks * kFrag; i += kWarp) {
        const int64_t tk = t0 + i / kFrag, r = r0 + warp * kFrag + i % kFrag;
        if (tk < n_tok && r < n_rows) y[tk * n_rows + r] = i8_dequant(c[i], r, tk, rows, x_scale, x_sum);
    }
}

}  // namespace

KernelStatus matmul_i8_mma(const int8_t* w, size_t row_stride, int64_t n_rows, int64_t in, const int8_t* xq,
                           const float* x_scale, const int32_t* x_sum, int64_t n_tok, const I8Rows& rows, float* y,
                           void* stream) {
    if (n_tok == 0 || n_rows == 0) return {};
    const dim3 grid((unsigned)((n_rows + kRows - 1) / kRows), (unsigned)((n_tok + kToks - 1) / kToks));
    k_matmul_i8_mma<<<grid, kThreads, 0, st(stream)>>>(w, row_stride, n_rows, in, xq, x_scale, x_sum, n_tok, rows, y);
    return launched("matmul_i8_mma");
}

}  // namespace tandem::cuda
