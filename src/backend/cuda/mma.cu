// Tensor-core kernels for prefill-sized batches (declared in kernels.h): matmul_mma,
// expert_matmul_mma and attention_mma.
//
// GEMM: a block of 4 warps computes 64 weight rows x 64 tokens. Per step of 64 inputs every
// thread decodes one 32-element chunk of one row (chunk32: the block header once) and rounds 32
// activations of one token to bf16 into shared memory; then each warp multiplies its 16 rows by
// the 64 tokens with WMMA 16x16x16 bf16 fragments into four f32 accumulators. The result goes out through shared
// memory, so any row count, token count and input width works (partial tiles are zero-padded).
#include <mma.h>

#include <cmath>

#include "backend/cuda/common.cuh"

namespace tandem::cuda {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kRowsPerBlock = 64;
constexpr int kToks = kMmaTileTokens;
constexpr int kStep = 64;           // inputs per step: a 32-element chunk per thread
constexpr int kLd = kStep + 8;      // shared row stride in bf16: 144 bytes keeps fragments 32-byte aligned
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
    // this thread fills row (and token) tid / 2, chunk tid % 2 (inputs 32 (tid % 2) .. + 32) of each step
    const int fr = tid / 2, fk = 32 * (tid % 2);
    const bool row_ok = r0 + fr < n_rows;
    const uint8_t* wrow = w + (size_t)(row_ok ? r0 + fr : 0) * row_bytes;
    const float* xrow = sh.x[fr];
    __nv_bfloat16* sa = sh.a + fr * kLd + fk;
    __nv_bfloat16* sb = sh.b + fr * kLd + fk;
    float wv[32];
    for (int64_t k0 = 0; k0 < in; k0 += kStep) {
        const int64_t c = (k0 + fk) / 32;
        if (!row_ok) {
            for (int l = 0; l < 32; ++l) wv[l] = 0.0f;
        } else if (32 * c + 32 <= in) {
            chunk32<T>(wrow, c, wv);
        } else {
            chunk32_tail<T>(wrow, c, in, wv);  // (zeros past the end)
        }
#pragma unroll
        for (int l = 0; l < 32; ++l) {
            const int64_t e = 32 * c + l;
            sa[l] = __float2bfloat16_rn(wv[l]);
            sb[l] = __float2bfloat16_rn(xrow && e < in ? xrow[e] : 0.0f);
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

// ---- Attention (prefill): one block per (tile of up to 64 rows = tokens x GQA heads, KV head), 4
// warps of 16 rows. Per block of 32 positions: K and V (f16, as cached) into shared memory; each
// warp's scores S = Q K^T by WMMA (Q pre-scaled, f16; f32 accumulation) into shared memory; an
// online softmax per row (lane = position) writes P (f16) and the row's rescale factor; the
// warp's output rows, kept in shared memory in f32, are rescaled and accumulate P V by WMMA.

constexpr int kAttRows = 64, kAttPos = 32, kAttWarps = 4, kAttWarpRows = kAttRows / kAttWarps;
static_assert(kAttPos == kWarp, "a lane per position in the softmax");
static_assert(kAttWarpRows == kFrag, "a warp per 16 rows");

template <int HD>
struct AttnLayout {  // strides (elements) and the shared-memory carve, all pieces 32-byte aligned
    static constexpr int ldq = HD + 8, ldk = HD + 8, ldv = HD + 8, lds = kAttPos + 8, ldp = kAttPos + 8, ldo = HD + 4;
    static constexpr size_t o = 0, s = o + sizeof(float) * kAttRows * ldo, q = s + sizeof(float) * kAttRows * lds,
                            k = q + 2 * kAttRows * ldq, v = k + 2 * kAttPos * ldk, p = v + 2 * kAttPos * ldv,
                            corr = p + 2 * kAttRows * ldp, bytes = corr + sizeof(float) * kAttRows;
    static_assert(s % 32 == 0 && q % 32 == 0 && k % 32 == 0 && v % 32 == 0 && p % 32 == 0 && corr % 32 == 0);
};

template <int HD>
__global__ void __launch_bounds__(kAttWarps * kWarp)
    k_attention_mma(KvLayer kv, const float* q, const int32_t* pos, const int32_t* tok_seq, const int32_t* tables,
                    int64_t max_pages, const int32_t* tiles, int64_t n_head, int64_t group, float scale, float* out) {
    using L = AttnLayout<HD>;
    extern __shared__ __align__(128) unsigned char smem[];
    float* s_o = reinterpret_cast<float*>(smem + L::o);    // [row][d] f32
    float* s_s = reinterpret_cast<float*>(smem + L::s);    // [row][position] scores
    __half* s_q = reinterpret_cast<__half*>(smem + L::q);  // [row][d], pre-scaled
    __half* s_k = reinterpret_cast<__half*>(smem + L::k);  // [position][d]
    __half* s_v = reinterpret_cast<__half*>(smem + L::v);  // [position][d]
    __half* s_p = reinterpret_cast<__half*>(smem + L::p);  // [row][position] probabilities
    float* s_corr = reinterpret_cast<float*>(smem + L::corr);
    const int64_t t0 = tiles[2 * blockIdx.x], nt = tiles[2 * blockIdx.x + 1], hk = blockIdx.y;
    const int64_t R = nt * group;  // row r: token t0 + r / group, head hk * group + r % group
    const int tid = (int)threadIdx.x, warp = tid / kWarp, lane = tid % kWarp, w0 = warp * kAttWarpRows;
    for (int i = tid; i < kAttRows * HD; i += blockDim.x) {
        const int r = i / HD, d = i % HD;
        const float v = r < R ? q[((t0 + r / group) * n_head + hk * group + r % group) * HD + d] * scale : 0.0f;
        s_q[r * L::ldq + d] = __float2half_rn(v);
        s_o[r * L::ldo + d] = 0.0f;
    }
    float m[kAttWarpRows], l[kAttWarpRows];
    int last[kAttWarpRows];  // the last position row w0 + j sees (-1: a padding row)
#pragma unroll
    for (int j = 0; j < kAttWarpRows; ++j) {
        const int64_t r = w0 + j;
        m[j] = -INFINITY, l[j] = 0.0f, last[j] = r < R ? pos[t0 + r / group] : -1;
    }
    const int32_t* table = tables + (int64_t)tok_seq[t0] * max_pages;
    const int64_t n_pos = (int64_t)pos[t0 + nt - 1] + 1;  // (positions increase along the tile)
    __syncthreads();
    for (int64_t p0 = 0; p0 < n_pos; p0 += kAttPos) {
        // K and V of 32 positions, 8 halves (16 bytes) a load; zeros past the end
        for (int i = tid; i < kAttPos * (HD / 8); i += blockDim.x) {
            const int pp = i / (HD / 8), c = (i % (HD / 8)) * 8;
            const int64_t p = p0 + pp;
            uint4 kb = make_uint4(0, 0, 0, 0), vb = kb;
            if (p < n_pos) {
                const size_t off = kv_offset(kv, table[p / kv.page_size], p % kv.page_size) + hk * HD + c;
                kb = *reinterpret_cast<const uint4*>(kv.k + off);
                vb = *reinterpret_cast<const uint4*>(kv.v + off);
            }
            *reinterpret_cast<uint4*>(s_k + pp * L::ldk + c) = kb;
            *reinterpret_cast<uint4*>(s_v + pp * L::ldv + c) = vb;
        }
        __syncthreads();
#pragma unroll
        for (int nb = 0; nb < kAttPos / kFrag; ++nb) {  // S (16 rows x 32 positions) = Q K^T
            wmma::fragment<wmma::accumulator, kFrag, kFrag, kFrag, float> sc;
            wmma::fill_fragment(sc, 0.0f);
#pragma unroll
            for (int kk = 0; kk < HD; kk += kFrag) {
                wmma::fragment<wmma::matrix_a, kFrag, kFrag, kFrag, __half, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, __half, wmma::col_major> b;  // (d, p) at k[p][d]
                wmma::load_matrix_sync(a, s_q + w0 * L::ldq + kk, L::ldq);
                wmma::load_matrix_sync(b, s_k + nb * kFrag * L::ldk + kk, L::ldk);
                wmma::mma_sync(sc, a, b, sc);
            }
            wmma::store_matrix_sync(s_s + w0 * L::lds + nb * kFrag, sc, L::lds, wmma::mem_row_major);
        }
        __syncwarp();
        const int64_t p = p0 + lane;
#pragma unroll
        for (int j = 0; j < kAttWarpRows; ++j) {  // online softmax; rows past their last position keep O
            const int r = w0 + j;
            float w = 0.0f, corr = 1.0f;
            if (p0 <= last[j]) {  // (the same for the whole warp; position p0 is visible, so m_new is finite)
                const float sc = p <= last[j] ? s_s[r * L::lds + lane] : -INFINITY;
                const float m_new = fmaxf(m[j], warp_max(sc));
                corr = expf(m[j] - m_new);
                w = expf(sc - m_new);
                l[j] = l[j] * corr + warp_sum(w);
                m[j] = m_new;
            }
            s_p[r * L::ldp + lane] = __float2half_rn(w);
            if (lane == 0) s_corr[r] = corr;
        }
        __syncwarp();
        for (int i = lane; i < kAttWarpRows * HD; i += kWarp) {
            const int r = w0 + i / HD;
            s_o[r * L::ldo + i % HD] *= s_corr[r];
        }
        __syncwarp();
#pragma unroll
        for (int nb = 0; nb < HD / kFrag; ++nb) {  // O (16 rows x HD) += P V
            wmma::fragment<wmma::accumulator, kFrag, kFrag, kFrag, float> o;
            wmma::load_matrix_sync(o, s_o + w0 * L::ldo + nb * kFrag, L::ldo, wmma::mem_row_major);
#pragma unroll
            for (int kk = 0; kk < kAttPos; kk += kFrag) {
                wmma::fragment<wmma::matrix_a, kFrag, kFrag, kFrag, __half, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, __half, wmma::row_major> b;  // (p, d) at v[p][d]
                wmma::load_matrix_sync(a, s_p + w0 * L::ldp + kk, L::ldp);
                wmma::load_matrix_sync(b, s_v + kk * L::ldv + nb * kFrag, L::ldv);
                wmma::mma_sync(o, a, b, o);
            }
            wmma::store_matrix_sync(s_o + w0 * L::ldo + nb * kFrag, o, L::ldo, wmma::mem_row_major);
        }
        __syncthreads();  // (before the next positions overwrite K and V)
    }
#pragma unroll
    for (int j = 0; j < kAttWarpRows; ++j) {
        const int64_t r = w0 + j;
        if (r >= R) continue;
        float* o = out + ((t0 + r / group) * n_head + hk * group + r % group) * HD;
        for (int d = lane; d < HD; d += kWarp) o[d] = s_o[r * L::ldo + d] / l[j];
    }
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

KernelStatus attention_mma(const KvLayer& kv, const float* q, const int32_t* pos, const int32_t* tok_seq,
                           const int32_t* tables, int64_t max_pages, const int32_t* tiles, int64_t n_tiles, int64_t n_head,
                           int64_t n_head_kv, int64_t head_dim, float* out, void* stream) {
    KernelStatus why;
    const int64_t group = gqa_group("attention_mma", n_head, n_head_kv, kAttRows, why);
    if (group == 0) return why;
    if (!attention_mma_fits(head_dim)) return err("cuda attention_mma: head_dim ", head_dim, " (64 or 128)");
    if (n_tiles == 0) return {};
    const dim3 grid((unsigned)n_tiles, (unsigned)n_head_kv);
    const float scale = 1.0f / std::sqrt((float)head_dim);
    auto launch = [&]<int HD>() -> KernelStatus {
        constexpr size_t smem = AttnLayout<HD>::bytes;  // above the 48 KB default: asked for
        const cudaError_t e =
            cudaFuncSetAttribute(k_attention_mma<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return err("cuda attention_mma: ", (int64_t)smem, " bytes of shared memory: ", cudaGetErrorString(e));
        k_attention_mma<HD><<<grid, kAttWarps * kWarp, smem, st(stream)>>>(kv, q, pos, tok_seq, tables, max_pages,
                                                                          tiles, n_head, group, scale, out);
        return launched("attention_mma");
    };
    return head_dim == 64 ? launch.template operator()<64>() : launch.template operator()<128>();
}

}  // namespace tandem::cuda
