// Tensor-core GEMM for prefill-sized batches (declared in kernels.h): matmul_mma and
// expert_matmul_mma. A block of 4 warps computes 64 weight rows x 64 tokens. Per step of 32
// inputs every thread decodes 16 weight elements of one row and rounds 16 activations of one
// token to bf16 into shared memory; then each warp multiplies its 16 rows by the 64 tokens with
// WMMA 16x16x16 bf16 fragments into four f32 accumulators. The result goes out through shared
// memory, so any row count, token count and input width works (partial tiles are zero-padded).
#include <mma.h>

#include "backend/cuda/common.cuh"

namespace tandem::cuda {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kRowsPerBlock = 64;
constexpr int kToks = kMmaTileTokens;
constexpr int kStep = 32;           // inputs per step
constexpr int kLd = kStep + 8;      // shared row stride in bf16: 80 bytes keeps fragments 32-byte aligned
constexpr int kThreads = 128;       // 4 warps of 16 rows each
constexpr int kFrag = 16;
static_assert(kRowsPerBlock == kToks && kThreads == 2 * kToks, "one row and one token per thread pair");
static_assert(kRowsPerBlock == (kThreads / kWarp) * kFrag, "a warp per 16 rows");

struct MmaShared {
    __nv_bfloat16 a[kRowsPerBlock * kLd];   // weights: row r at a[r * kLd]
    __nv_bfloat16 b[kToks * kLd];           // activations: token t at b[t * kLd]
    float c[kThreads / kWarp][kToks * kFrag];  // per warp: (row r, token t) at c[w][t * 16 + r]
    const float* x[kToks];                  // each token's input row (null: padding)
    float* y[kToks];                        // each token's output row (null: padding)
};

// Rows [r0, r0 + 64) of the matrix at w (rows row_bytes apart, `in` wide, of n_rows) times the
// tokens sh.x, into sh.y[t][r]. Called after sh.x / sh.y are set and the block synchronised.
template <DType T>
__device__ void mma_tile(MmaShared& sh, const uint8_t* w, size_t row_bytes, int64_t r0, int64_t n_rows, int64_t in) {
    const int tid = (int)threadIdx.x, warp = tid / kWarp, lane = tid % kWarp;
    wmma::fragment<wmma::accumulator, kFrag, kFrag, kFrag, float> acc[kToks / kFrag];
#pragma unroll
    for (int n = 0; n < kToks / kFrag; ++n) wmma::fill_fragment(acc[n], 0.0f);
    // this thread fills row (and token) tid / 2, inputs 16 (tid % 2) .. + 16 of each step
    const int fr = tid / 2, fk = kFrag * (tid % 2);
    const bool row_ok = r0 + fr < n_rows;
    const uint8_t* wrow = w + (size_t)(row_ok ? r0 + fr : 0) * row_bytes;
    const float* xrow = sh.x[fr];
    __nv_bfloat16* sa = sh.a + fr * kLd + fk;
    __nv_bfloat16* sb = sh.b + fr * kLd + fk;
    for (int64_t k0 = 0; k0 < in; k0 += kStep) {
#pragma unroll
        for (int j = 0; j < kFrag; ++j) {
            const int64_t e = k0 + fk + j;
            const bool in_ok = e < in;
            sa[j] = __float2bfloat16_rn(row_ok && in_ok ? elem<T>(wrow, e) : 0.0f);
            sb[j] = __float2bfloat16_rn(xrow && in_ok ? xrow[e] : 0.0f);
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kStep; kk += kFrag) {
            wmma::fragment<wmma::matrix_a, kFrag, kFrag, kFrag, __nv_bfloat16, wmma::row_major> fa;
            wmma::load_matrix_sync(fa, sh.a + warp * kFrag * kLd + kk, kLd);
#pragma unroll
            for (int n = 0; n < kToks / kFrag; ++n) {
                // (k, token) at b[token * kLd + k]: column-major K x N
                wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, __nv_bfloat16, wmma::col_major> fb;
                wmma::load_matrix_sync(fb, sh.b + n * kFrag * kLd + kk, kLd);
                wmma::mma_sync(acc[n], fa, fb, acc[n]);
            }
        }
        __syncthreads();
    }
    float* c = sh.c[warp];
#pragma unroll
    for (int n = 0; n < kToks / kFrag; ++n) wmma::store_matrix_sync(c + n * kFrag * kFrag, acc[n], kFrag, wmma::mem_col_major);
    __syncwarp();
    // 16 consecutive lanes write 16 consecutive rows of one token
    for (int i = lane; i < kToks * kFrag; i += kWarp) {
        const int t = i / kFrag, r = i % kFrag;
        const int64_t row = r0 + warp * kFrag + r;
        if (sh.y[t] && row < n_rows) sh.y[t][row] = c[i];
    }
}

template <DType T>
__global__ void __launch_bounds__(kThreads) k_matmul_mma(const uint8_t* w, size_t row_bytes, int64_t n_rows, int64_t in,
                                                         const float* x, int64_t n_tok, float* y) {
    __shared__ __align__(128) MmaShared sh;
    if (threadIdx.x < kToks) {
        const int64_t t = (int64_t)blockIdx.y * kToks + threadIdx.x;
        sh.x[threadIdx.x] = t < n_tok ? x + t * in : nullptr;
        sh.y[threadIdx.x] = t < n_tok ? y + t * n_rows : nullptr;
    }
    __syncthreads();
    mma_tile<T>(sh, w, row_bytes, (int64_t)blockIdx.x * kRowsPerBlock, n_rows, in);
}

// Tile blockIdx.y: pairs order[tiles[2i]] .. + tiles[2i + 1], all of one expert
template <DType T>
__global__ void __launch_bounds__(kThreads)
    k_expert_matmul_mma(const uint8_t* w, size_t expert_bytes, size_t row_bytes, int64_t n_rows, int64_t in,
                        const float* x, const int32_t* x_row, const int32_t* expert, const int32_t* order,
                        const int32_t* tiles, float* y) {
    __shared__ __align__(128) MmaShared sh;
    const int32_t* ord = order + tiles[2 * blockIdx.y];
    const int nt = tiles[2 * blockIdx.y + 1];
    if (threadIdx.x < kToks) {
        const int t = (int)threadIdx.x;
        sh.x[t] = t < nt ? x + (int64_t)x_row[ord[t]] * in : nullptr;
        sh.y[t] = t < nt ? y + (int64_t)ord[t] * n_rows : nullptr;
    }
    __syncthreads();
    mma_tile<T>(sh, w + (size_t)expert[ord[0]] * expert_bytes, row_bytes, (int64_t)blockIdx.x * kRowsPerBlock, n_rows,
                in);
}

unsigned row_blocks(int64_t n_rows) { return (unsigned)((n_rows + kRowsPerBlock - 1) / kRowsPerBlock); }

}  // namespace

KernelStatus matmul_mma(DType type, const void* w, size_t row_bytes, int64_t n_rows, int64_t in, const float* x,
                        int64_t n_tok, float* y, void* stream) {
    if (n_rows == 0 || n_tok == 0) return {};
    const int64_t tok_blocks = (n_tok + kToks - 1) / kToks;
    if (tok_blocks > 65535) return err("cuda matmul_mma: ", n_tok, " tokens in one call (at most ", 65535 * kToks, ")");
    const dim3 grid(row_blocks(n_rows), (unsigned)tok_blocks);
    return dispatch(type, "matmul_mma", [&]<DType T>() {
        k_matmul_mma<T><<<grid, kThreads, 0, st(stream)>>>((const uint8_t*)w, row_bytes, n_rows, in, x, n_tok, y);
    });
}

KernelStatus expert_matmul_mma(DType type, const void* w, size_t expert_bytes, size_t row_bytes, int64_t n_rows,
                               int64_t in, const float* x, const int32_t* x_row, const int32_t* expert,
                               const int32_t* order, const int32_t* tiles, int64_t n_tiles, float* y, void* stream) {
    if (n_rows == 0 || n_tiles == 0) return {};
    if (n_tiles > 65535) return err("cuda expert_matmul_mma: ", n_tiles, " tiles in one call (at most 65535)");
    const dim3 grid(row_blocks(n_rows), (unsigned)n_tiles);
    return dispatch(type, "expert_matmul_mma", [&]<DType T>() {
        k_expert_matmul_mma<T><<<grid, kThreads, 0, st(stream)>>>((const uint8_t*)w, expert_bytes, row_bytes, n_rows,
                                                                  in, x, x_row, expert, order, tiles, y);
    });
}

}  // namespace tandem::cuda
