// CUDA kernels of the hybrid forward (declared in kernels.h). Written for clarity first: each
// matches its CPU reference op; the fast variants (split-K decode attention, the tensor-core
// GEMM of mma.cu, repacked quant layouts) replace them one by one, validated by the same tests.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend/cuda/common.cuh"

namespace tandem::cuda {
namespace {

// ---- Embedding rows

template <DType T>
__global__ void k_embed(const uint8_t* table, size_t row_bytes, const int32_t* tokens, int64_t dim, float* out) {
    const int64_t t = blockIdx.x;
    const uint8_t* row = table + (size_t)tokens[t] * row_bytes;
    for (int64_t e = threadIdx.x; e < dim; e += blockDim.x) out[t * dim + e] = elem<T>(row, e);
}

// ---- RMSNorm: one block per row; the sum of squares in double as the reference does.

__global__ void k_rms_norm(const float* x, const float* w, int64_t width, float eps, float* out) {
    __shared__ double part[32];
    const float* xr = x + blockIdx.x * width;
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < width; i += blockDim.x) s += (double)xr[i] * (double)xr[i];
    for (int o = kWarp / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (threadIdx.x % kWarp == 0) part[threadIdx.x / kWarp] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double tot = 0.0;
        for (int i = 0; i < (int)(blockDim.x / kWarp); ++i) tot += part[i];
        part[0] = tot;
    }
    __syncthreads();
    const float scale = 1.0f / sqrtf((float)(part[0] / (double)width) + eps);
    float* o = out + blockIdx.x * width;
    for (int64_t i = threadIdx.x; i < width; i += blockDim.x) o[i] = xr[i] * scale * (w ? w[i] : 1.0f);
}

// ---- NeoX RoPE: theta_i = pos * theta_scale^i by repeated multiplication in float, then the
// linear / YaRN scaling, like the reference (ref::rope_neox_table).

__global__ void k_rope(float* x, const int32_t* pos, int64_t n_heads, int64_t head_dim, float theta_scale,
                       ref::RopeFreqs f) {
    const int64_t t = blockIdx.x, half = head_dim / 2;
    for (int64_t j = threadIdx.x; j < n_heads * half; j += blockDim.x) {
        const int64_t h = j / half, i = j % half;
        float theta = (float)pos[t];
        for (int64_t k = 0; k < i; ++k) theta *= theta_scale;
        float a = f.freq_scale * theta;
        if (f.ext_factor != 0.0f) {
            const float y = ((float)i - f.corr_low) / fmaxf(0.001f, f.corr_high - f.corr_low);
            const float mix = (1.0f - fminf(1.0f, fmaxf(0.0f, y))) * f.ext_factor;
            a = __fadd_rn(__fmul_rn(a, 1.0f - mix), __fmul_rn(theta, mix));  // (no FMA: as the host computes it)
        }
        const float c = cosf(a) * f.mscale, s = sinf(a) * f.mscale;
        float* v = x + (t * n_heads + h) * head_dim;
        const float x0 = v[i], x1 = v[i + half];
        v[i] = x0 * c - x1 * s;
        v[i + half] = x0 * s + x1 * c;
    }
}

__global__ void k_add(float* x, const float* y, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += y[i];
}

__global__ void k_gather_rows(const float* src, const int32_t* rows, int64_t width, float* dst) {
    const float* s = src + (int64_t)rows[blockIdx.x] * width;
    for (int64_t e = threadIdx.x; e < width; e += blockDim.x) dst[(int64_t)blockIdx.x * width + e] = s[e];
}

__global__ void k_swiglu(const float* g, const float* u, float* out, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

// ---- Matmul: one warp per weight row, up to kTokTile tokens per block column. Each lane takes
// 32-element chunks of the row (lane, lane + 32, ...), decodes one with its block header once
// (chunk32) and dots it with every token of the tile; the lanes' sums meet in a warp reduction.
// f32 accumulation.

constexpr int kMatWarps = 4;
constexpr int kTokTile = 8;

// acc[t] += this lane's share of row . xs[t] (t < nt), over `in` elements
template <DType T, int NT>
__device__ __forceinline__ void row_dots(const uint8_t* row, int64_t in, const float* const* xs, int nt, float* acc) {
    const int lane = threadIdx.x % kWarp;
    const int64_t whole = in / 32, n_chunks = (in + 31) / 32;
    float w[32];
    for (int64_t c = lane; c < n_chunks; c += kWarp) {
        if (c < whole) chunk32<T>(row, c, w);
        else chunk32_tail<T>(row, c, in, w);  // (zeros past the end)
        const int n_el = c < whole ? 32 : (int)(in - 32 * c);
#pragma unroll
        for (int t = 0; t < NT; ++t) {
            if (t >= nt) break;
            const float* xc = xs[t] + 32 * c;
            float s = 0.0f;
            if (n_el == 32) {
#pragma unroll
                for (int l = 0; l < 32; ++l) s += w[l] * xc[l];
            } else {
#pragma unroll
                for (int l = 0; l < 32; ++l)
                    if (l < n_el) s += w[l] * xc[l];
            }
            acc[t] += s;
        }
    }
}

template <DType T>
__global__ void k_matmul(const uint8_t* w, size_t row_bytes, int64_t n_rows, int64_t in, const float* x,
                         int64_t n_tok, float* y) {
    const int64_t r = (int64_t)blockIdx.x * kMatWarps + threadIdx.x / kWarp;
    const int lane = threadIdx.x % kWarp;
    const int64_t t0 = (int64_t)blockIdx.y * kTokTile;
    if (r >= n_rows) return;
    const int nt = (int)min((int64_t)kTokTile, n_tok - t0);
    const float* xs[kTokTile];
#pragma unroll
    for (int t = 0; t < kTokTile; ++t) xs[t] = x + (t0 + (t < nt ? t : 0)) * in;
    float acc[kTokTile] = {};
    row_dots<T, kTokTile>(w + (size_t)r * row_bytes, in, xs, nt, acc);
#pragma unroll
    for (int t = 0; t < kTokTile; ++t) {
        const float s = warp_sum(acc[t]);
        if (lane == 0 && t < nt) y[(t0 + t) * n_rows + r] = s;
    }
}

// ---- Routed experts on the device: one warp per (weight row, tile of pairs); the tile's expert
// picks the matrix, each pair's x_row its input row. The sum over a token's pairs in pair order
// (deterministic).

template <DType T>
__global__ void k_expert_matmul(const uint8_t* w, size_t expert_bytes, size_t row_bytes, int64_t n_rows, int64_t in,
                                const float* x, const int32_t* x_row, const int32_t* expert, const int32_t* order,
                                const int32_t* tiles, float* y) {
    const int64_t r = (int64_t)blockIdx.x * kMatWarps + threadIdx.x / kWarp;
    const int lane = threadIdx.x % kWarp;
    if (r >= n_rows) return;
    const int32_t* ord = order + tiles[2 * blockIdx.y];
    const int nt = tiles[2 * blockIdx.y + 1];
    const uint8_t* row = w + (size_t)expert[ord[0]] * expert_bytes + (size_t)r * row_bytes;
    const float* xr[kExpertTileTokens];
#pragma unroll
    for (int t = 0; t < kExpertTileTokens; ++t) xr[t] = x + (int64_t)x_row[ord[t < nt ? t : 0]] * in;
    float acc[kExpertTileTokens] = {};
    row_dots<T, kExpertTileTokens>(row, in, xr, nt, acc);
#pragma unroll
    for (int t = 0; t < kExpertTileTokens; ++t) {
        const float v = warp_sum(acc[t]);
        if (lane == 0 && t < nt) y[(int64_t)ord[t] * n_rows + r] = v;
    }
}

// runs: (token, first pair, pairs) triples; grid (width blocks) x runs, flattened into x
__global__ void k_expert_sum(const float* y, const int32_t* runs, const float* weight, int64_t width, int64_t nbx,
                             float* out) {
    const int64_t u = blockIdx.x / nbx, i = (int64_t)(blockIdx.x % nbx) * blockDim.x + threadIdx.x;
    if (i >= width) return;
    const int64_t t = runs[3 * u], p0 = runs[3 * u + 1], np = runs[3 * u + 2];
    float s = 0.0f;
    for (int64_t p = p0; p < p0 + np; ++p) s += weight[p] * y[p * width + i];
    out[t * width + i] += s;
}

// ---- Router: one warp per token; probabilities in shared memory, k rounds of a warp argmax.

__global__ void k_router(const float* logits, int64_t n_expert, int64_t k, int32_t* ids, float* weights) {
    extern __shared__ float p[];
    const int64_t t = blockIdx.x;
    const int lane = threadIdx.x;
    const float* l = logits + t * n_expert;
    float mx = -INFINITY;
    for (int64_t e = lane; e < n_expert; e += kWarp) mx = fmaxf(mx, l[e]);
    mx = warp_max(mx);
    float s = 0.0f;
    for (int64_t e = lane; e < n_expert; e += kWarp) {
        p[e] = expf(l[e] - mx);
        s += p[e];
    }
    const float inv = 1.0f / warp_sum(s);
    for (int64_t e = lane; e < n_expert; e += kWarp) p[e] *= inv;
    __syncwarp();
    float sum_sel = 0.0f;
    for (int64_t j = 0; j < k; ++j) {
        float best = -1.0f;
        int64_t bi = n_expert;
        for (int64_t e = lane; e < n_expert; e += kWarp)
            if (p[e] > best) best = p[e], bi = e;  // lane-local: the lowest index among equals
        for (int o = kWarp / 2; o > 0; o >>= 1) {
            const float ob = __shfl_xor_sync(0xffffffffu, best, o);
            const int64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (ob > best || (ob == best && oi < bi)) best = ob, bi = oi;
        }
        if (lane == 0) {
            ids[t * k + j] = (int32_t)bi;
            weights[t * k + j] = best;
            if (bi < n_expert) p[bi] = -2.0f;  // taken (none when the logits were NaN: the host refuses the id)
        }
        sum_sel += best;
        __syncwarp();
    }
    for (int64_t j = lane; j < k; j += kWarp) weights[t * k + j] /= sum_sel;
}

// ---- Paged KV cache (kv_offset: common.cuh)

__global__ void k_kv_store(KvLayer kv, const float* k, const float* v, const int32_t* pos, const int32_t* tok_seq,
                           const int32_t* tables, int64_t max_pages) {
    const int64_t t = blockIdx.x, p = pos[t];
    const int32_t page = tables[tok_seq[t] * max_pages + p / kv.page_size];
    const size_t off = kv_offset(kv, page, p % kv.page_size);
    for (int64_t i = threadIdx.x; i < kv.n_kv; i += blockDim.x) {
        kv.k[off + i] = __half_as_ushort(__float2half_rn(k[t * kv.n_kv + i]));
        kv.v[off + i] = __half_as_ushort(__float2half_rn(v[t * kv.n_kv + i]));
    }
}

// Attention: one block per (token, head), kAttnWarps warps over strided positions, each with an
// online softmax (running max m, sum l, weighted values acc: NE = head_dim / 32 per lane); the
// warps' partial results are merged at the end.
constexpr int kAttnWarps = 4;

template <int NE>
__global__ void k_attention(KvLayer kv, const float* q, const int32_t* pos, const int32_t* tok_seq,
                            const int32_t* tables, int64_t max_pages, int64_t n_head, int64_t group, float scale,
                            float* out) {
    constexpr int HD = NE * kWarp;
    __shared__ float s_m[kAttnWarps], s_l[kAttnWarps], s_acc[kAttnWarps][HD];
    const int64_t t = blockIdx.x, h = blockIdx.y, hk = h / group;
    const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    const float* qh = q + (t * n_head + h) * HD;
    float qv[NE], acc[NE];
#pragma unroll
    for (int j = 0; j < NE; ++j) qv[j] = qh[lane + kWarp * j], acc[j] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    const int32_t* table = tables + tok_seq[t] * max_pages;
    const int64_t n_pos = (int64_t)pos[t] + 1;
    for (int64_t p = warp; p < n_pos; p += kAttnWarps) {
        const size_t off = kv_offset(kv, table[p / kv.page_size], p % kv.page_size) + hk * HD;
        float d = 0.0f;
#pragma unroll
        for (int j = 0; j < NE; ++j) d += qv[j] * half_bits(kv.k[off + lane + kWarp * j]);
        const float s = warp_sum(d) * scale;
        const float m_new = fmaxf(m, s);
        const float corr = expf(m - m_new), w = expf(s - m_new);
        l = l * corr + w;
#pragma unroll
        for (int j = 0; j < NE; ++j) acc[j] = acc[j] * corr + w * half_bits(kv.v[off + lane + kWarp * j]);
        m = m_new;
    }
    if (lane == 0) s_m[warp] = m, s_l[warp] = l;
#pragma unroll
    for (int j = 0; j < NE; ++j) s_acc[warp][lane + kWarp * j] = acc[j];
    __syncthreads();
    if (warp != 0) return;
    float mx = -INFINITY;
    for (int w = 0; w < kAttnWarps; ++w) mx = fmaxf(mx, s_m[w]);
    float lsum = 0.0f, f[kAttnWarps];
    for (int w = 0; w < kAttnWarps; ++w) {
        f[w] = s_l[w] > 0.0f ? expf(s_m[w] - mx) : 0.0f;  // a warp with no positions has m = -inf
        lsum += s_l[w] * f[w];
    }
    float* o = out + (t * n_head + h) * HD;
#pragma unroll
    for (int j = 0; j < NE; ++j) {
        float v = 0.0f;
        for (int w = 0; w < kAttnWarps; ++w) v += s_acc[w][lane + kWarp * j] * f[w];
        o[lane + kWarp * j] = v / lsum;
    }
}

// Tiled attention for prefill: one block per (tile of up to kTileRows / group consecutive tokens
// of one sequence, KV head), its rows = the tile's tokens x the GQA heads reading that KV head.
// Keys and values go through shared memory kTilePos positions at a time and serve every row;
// a warp takes kTileRows / kTileWarps rows, each lane one position for the scores and a slice of
// the head dimensions for the values, with an online softmax per row. fp32 arithmetic.
constexpr int kTileRows = 64;
constexpr int kTilePos = 32;
constexpr int kTileWarps = 8;

template <int NE>
size_t tiled_smem_bytes() {
    constexpr int HD = NE * kWarp;
    return (size_t)kTileRows * HD * sizeof(float) + 2 * (size_t)kTilePos * HD * sizeof(__half);
}

template <int NE>
__global__ void k_attention_tiled(KvLayer kv, const float* q, const int32_t* pos, const int32_t* tok_seq,
                                  const int32_t* tables, int64_t max_pages, const int32_t* tiles, int64_t n_head,
                                  int64_t group, float scale, float* out) {
    constexpr int HD = NE * kWarp, RW = kTileRows / kTileWarps;
    extern __shared__ float smem[];
    float* s_q = smem;                                        // [rows][HD], pre-scaled
    __half* s_k = reinterpret_cast<__half*>(s_q + kTileRows * HD);  // [HD][kTilePos] (transposed)
    __half* s_v = s_k + HD * kTilePos;                        // [kTilePos][HD]
    const int64_t t0 = tiles[2 * blockIdx.x], nt = tiles[2 * blockIdx.x + 1], hk = blockIdx.y;
    const int64_t R = nt * group;  // row r: token t0 + r / group, head hk * group + r % group
    const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    for (int64_t i = threadIdx.x; i < R * HD; i += blockDim.x) {
        const int64_t r = i / HD, d = i % HD;
        s_q[i] = q[((t0 + r / group) * n_head + hk * group + r % group) * HD + d] * scale;
    }
    float m[RW], l[RW], acc[RW][NE];
    int64_t last[RW];  // the last position row j sees (-1: no row)
#pragma unroll
    for (int j = 0; j < RW; ++j) {
        const int64_t r = warp * RW + j;
        m[j] = -INFINITY, l[j] = 0.0f, last[j] = r < R ? pos[t0 + r / group] : -1;
#pragma unroll
        for (int e = 0; e < NE; ++e) acc[j][e] = 0.0f;
    }
    const int32_t* table = tables + tok_seq[t0] * max_pages;
    const int64_t n_pos = (int64_t)pos[t0 + nt - 1] + 1;  // (positions increase along the tile)
    __syncthreads();
    for (int64_t p0 = 0; p0 < n_pos; p0 += kTilePos) {
        for (int64_t i = threadIdx.x; i < kTilePos * HD; i += blockDim.x) {
            const int64_t pp = i / HD, d = i % HD, p = p0 + pp;
            uint16_t kb = 0, vb = 0;
            if (p < n_pos) {
                const size_t off = kv_offset(kv, table[p / kv.page_size], p % kv.page_size) + hk * HD + d;
                kb = kv.k[off], vb = kv.v[off];
            }
            s_k[d * kTilePos + pp] = __ushort_as_half(kb);
            s_v[pp * HD + d] = __ushort_as_half(vb);
        }
        __syncthreads();
        const int64_t p = p0 + lane;
#pragma unroll
        for (int j = 0; j < RW; ++j) {
            if (p0 > last[j]) continue;  // (the same for the whole warp)
            const float* qr = s_q + (warp * RW + j) * HD;
            float sc = 0.0f;
            for (int d = 0; d < HD; ++d) sc += qr[d] * __half2float(s_k[d * kTilePos + lane]);
            if (p > last[j]) sc = -INFINITY;
            const float m_new = fmaxf(m[j], warp_max(sc));
            const float corr = expf(m[j] - m_new), w = expf(sc - m_new);
            l[j] = l[j] * corr + warp_sum(w);
#pragma unroll
            for (int e = 0; e < NE; ++e) acc[j][e] *= corr;
            for (int pp = 0; pp < kTilePos; ++pp) {
                const float wp = __shfl_sync(0xffffffffu, w, pp);
#pragma unroll
                for (int e = 0; e < NE; ++e) acc[j][e] += wp * __half2float(s_v[pp * HD + lane + kWarp * e]);
            }
            m[j] = m_new;
        }
        __syncthreads();
    }
#pragma unroll
    for (int j = 0; j < RW; ++j) {
        const int64_t r = warp * RW + j;
        if (r >= R) continue;
        float* o = out + ((t0 + r / group) * n_head + hk * group + r % group) * HD;
#pragma unroll
        for (int e = 0; e < NE; ++e) o[lane + kWarp * e] = acc[j][e] / l[j];
    }
}

// ---- Argmax: one block per row; ties go to the lower index.

__global__ void k_argmax(const float* logits, int64_t n_vocab, int32_t* ids) {
    __shared__ float s_v[32];
    __shared__ int64_t s_i[32];
    const float* row = logits + blockIdx.x * n_vocab;
    float best = -INFINITY;
    int64_t bi = n_vocab;
    for (int64_t i = threadIdx.x; i < n_vocab; i += blockDim.x)
        if (row[i] > best || bi == n_vocab) best = row[i], bi = i;
    for (int o = kWarp / 2; o > 0; o >>= 1) {
        const float ob = __shfl_xor_sync(0xffffffffu, best, o);
        const int64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ob > best || (ob == best && oi < bi)) best = ob, bi = oi;
    }
    if (threadIdx.x % kWarp == 0) s_v[threadIdx.x / kWarp] = best, s_i[threadIdx.x / kWarp] = bi;
    __syncthreads();
    if (threadIdx.x != 0) return;
    for (int w = 1; w < (int)(blockDim.x / kWarp); ++w)
        if (s_v[w] > best || (s_v[w] == best && s_i[w] < bi)) best = s_v[w], bi = s_i[w];
    ids[blockIdx.x] = (int32_t)bi;
}

// ---- W8A8 (kernels/reference/int8.h): int8 activations per token, int8 weight rows, exact
// int32 dot products (DP4A), each row's dequantization.

// One block per token: dynamic (s = max|x| / 127, x_q = rint(x / s)) or static
// (x_q = clamp(rint(x / input_scale + input_offset))); also sum(x_q) for zero-point weights.
__global__ void k_quantize_i8(const float* x, int64_t in, int dynamic, float input_scale, float input_offset,
                              int8_t* xq, float* x_scale, int32_t* x_sum) {
    __shared__ float s_m[32];
    __shared__ int s_s[32];
    const int64_t t = blockIdx.x;
    const float* row = x + t * in;
    float m = 0.0f;
    if (dynamic) {
        for (int64_t i = threadIdx.x; i < in; i += blockDim.x) m = fmaxf(m, fabsf(row[i]));
        m = warp_max(m);
        if (threadIdx.x % kWarp == 0) s_m[threadIdx.x / kWarp] = m;
        __syncthreads();
        m = 0.0f;
        for (int w = 0; w < (int)(blockDim.x / kWarp); ++w) m = fmaxf(m, s_m[w]);
    }
    const float s = dynamic ? m / 127.0f : 1.0f;
    int sum = 0;
    for (int64_t i = threadIdx.x; i < in; i += blockDim.x) {
        float v;
        if (dynamic) v = s > 0.0f ? fminf(fmaxf(rintf(row[i] / s), -127.0f), 127.0f) : 0.0f;
        else v = fminf(fmaxf(rintf(row[i] / input_scale + input_offset), -128.0f), 127.0f);
        xq[t * in + i] = (int8_t)v;
        sum += (int)v;
    }
    for (int o = kWarp / 2; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    __syncthreads();
    if (threadIdx.x % kWarp == 0) s_s[threadIdx.x / kWarp] = sum;
    __syncthreads();
    if (threadIdx.x != 0) return;
    int total = 0;
    for (int w = 0; w < (int)(blockDim.x / kWarp); ++w) total += s_s[w];
    x_scale[t] = s;
    x_sum[t] = total;
}

// One warp per weight row, kTokTile tokens per block column; 4 int8 products per DP4A.
__global__ void k_matmul_i8(const int8_t* w, size_t row_stride, int64_t n_rows, int64_t in, const int8_t* xq,
                            const float* x_scale, const int32_t* x_sum, int64_t n_tok, I8Rows rows, float* y) {
    const int64_t r = (int64_t)blockIdx.x * kMatWarps + threadIdx.x / kWarp;
    const int lane = threadIdx.x % kWarp;
    const int64_t t0 = (int64_t)blockIdx.y * kTokTile;
    if (r >= n_rows) return;
    const int nt = (int)min((int64_t)kTokTile, n_tok - t0);
    const int8_t* row = w + (size_t)r * row_stride;
    int acc[kTokTile] = {};
    const int64_t n4 = in / 4;
    for (int64_t q = lane; q < n4; q += kWarp) {
        int wv;
        memcpy(&wv, row + 4 * q, 4);
#pragma unroll
        for (int t = 0; t < kTokTile; ++t)
            if (t < nt) {
                int xv;
                memcpy(&xv, xq + (t0 + t) * in + 4 * q, 4);
                acc[t] = __dp4a(wv, xv, acc[t]);
            }
    }
    for (int64_t e = 4 * n4 + lane; e < in; e += kWarp)
#pragma unroll
        for (int t = 0; t < kTokTile; ++t)
            if (t < nt) acc[t] += (int)row[e] * (int)xq[(t0 + t) * in + e];
#pragma unroll
    for (int t = 0; t < kTokTile; ++t) {
        int v = acc[t];
        for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane != 0 || t >= nt) continue;
        const int64_t tk = t0 + t;
        y[tk * n_rows + r] = i8_dequant(v, r, tk, rows, x_scale, x_sum);
    }
}

}  // namespace

KernelStatus quantize_i8(const float* x, int64_t n_tok, int64_t in, bool dynamic, float input_scale, float input_offset,
                         int8_t* xq, float* x_scale, int32_t* x_sum, void* stream) {
    if (n_tok == 0) return {};
    k_quantize_i8<<<(unsigned)n_tok, 256, 0, st(stream)>>>(x, in, dynamic ? 1 : 0, input_scale, input_offset, xq, x_scale,
                                                            x_sum);
    return launched("quantize_i8");
}

KernelStatus matmul_i8(const int8_t* w, size_t row_stride, int64_t n_rows, int64_t in, const int8_t* xq,
                       const float* x_scale, const int32_t* x_sum, int64_t n_tok, const I8Rows& rows, float* y,
                       void* stream) {
    if (n_tok == 0 || n_rows == 0) return {};
    if (n_tok >= kMmaMinTokens) return matmul_i8_mma(w, row_stride, n_rows, in, xq, x_scale, x_sum, n_tok, rows, y, stream);
    const dim3 grid((unsigned)((n_rows + kMatWarps - 1) / kMatWarps), (unsigned)((n_tok + kTokTile - 1) / kTokTile));
    k_matmul_i8<<<grid, kMatWarps * kWarp, 0, st(stream)>>>(w, row_stride, n_rows, in, xq, x_scale, x_sum, n_tok, rows, y);
    return launched("matmul_i8");
}

KernelStatus embed_rows(DType type, const void* table, size_t row_bytes, const int32_t* tokens, int64_t n, int64_t dim,
                  float* out, void* stream) {
    if (n == 0) return {};
    return dispatch(type, "embed_rows", [&]<DType T>() {
        k_embed<T><<<(unsigned)n, 256, 0, st(stream)>>>((const uint8_t*)table, row_bytes, tokens, dim, out);
    });
}

KernelStatus rms_norm(const float* x, const float* w, int64_t n_rows, int64_t width, float eps, float* out, void* stream) {
    if (n_rows == 0) return {};
    const int threads = width >= 1024 ? 256 : (width >= 256 ? 128 : 32);
    k_rms_norm<<<(unsigned)n_rows, threads, 0, st(stream)>>>(x, w, width, eps, out);
    return launched("rms_norm");
}

KernelStatus rope_neox(float* x, const int32_t* pos, int64_t n_tok, int64_t n_heads, int64_t head_dim,
                       const ref::RopeFreqs& f, void* stream) {
    if (n_tok == 0) return {};
    const float theta_scale = std::pow(f.base, -2.0f / (float)head_dim);  // the reference's, on the host
    k_rope<<<(unsigned)n_tok, 256, 0, st(stream)>>>(x, pos, n_heads, head_dim, theta_scale, f);
    return launched("rope_neox");
}

KernelStatus add(float* x, const float* y, int64_t n, void* stream) {
    if (n == 0) return {};
    k_add<<<(unsigned)((n + 255) / 256), 256, 0, st(stream)>>>(x, y, n);
    return launched("add");
}

KernelStatus gather_rows(const float* src, const int32_t* rows, int64_t n, int64_t width, float* dst, void* stream) {
    if (n == 0) return {};
    k_gather_rows<<<(unsigned)n, 256, 0, st(stream)>>>(src, rows, width, dst);
    return launched("gather_rows");
}

KernelStatus swiglu(const float* gate, const float* up, float* out, int64_t n, void* stream) {
    if (n == 0) return {};
    k_swiglu<<<(unsigned)((n + 255) / 256), 256, 0, st(stream)>>>(gate, up, out, n);
    return launched("swiglu");
}

KernelStatus matmul(DType type, const void* w, size_t row_bytes, int64_t n_rows, int64_t in, const float* x, int64_t n_tok,
              float* y, void* stream) {
    if (n_rows == 0 || n_tok == 0) return {};
    if (n_tok >= kMmaMinTokens) return matmul_mma(type, w, row_bytes, n_rows, in, x, n_tok, y, stream);
    const dim3 grid((unsigned)((n_rows + kMatWarps - 1) / kMatWarps), (unsigned)((n_tok + kTokTile - 1) / kTokTile));
    return dispatch(type, "matmul", [&]<DType T>() {
        k_matmul<T><<<grid, kMatWarps * kWarp, 0, st(stream)>>>((const uint8_t*)w, row_bytes, n_rows, in, x, n_tok, y);
    });
}

KernelStatus expert_matmul(DType type, const void* w, size_t expert_bytes, size_t row_bytes, int64_t n_rows, int64_t in,
                           const float* x, const int32_t* x_row, const int32_t* expert, const int32_t* order,
                           const int32_t* tiles, int64_t n_tiles, float* y, void* stream) {
    if (n_rows == 0 || n_tiles == 0) return {};
    if (n_tiles > 65535) return err("cuda expert_matmul: ", n_tiles, " tiles in one call (at most 65535)");
    const dim3 grid((unsigned)((n_rows + kMatWarps - 1) / kMatWarps), (unsigned)n_tiles);
    return dispatch(type, "expert_matmul", [&]<DType T>() {
        k_expert_matmul<T><<<grid, kMatWarps * kWarp, 0, st(stream)>>>((const uint8_t*)w, expert_bytes, row_bytes,
                                                                        n_rows, in, x, x_row, expert, order, tiles, y);
    });
}

namespace {
// Cuts pairs already sorted by expert (order) into runs of one expert, at most max_tile each
int64_t cut_tiles(const int32_t* expert, const int32_t* order, int64_t n, int32_t* tiles, int max_tile) {
    int64_t n_tiles = 0;
    for (int64_t i = 0; i < n; ++i) {
        if (i == 0 || expert[order[i]] != expert[order[i - 1]] || tiles[2 * n_tiles - 1] == max_tile) {
            tiles[2 * n_tiles] = (int32_t)i;
            tiles[2 * n_tiles + 1] = 0;
            ++n_tiles;
        }
        ++tiles[2 * n_tiles - 1];
    }
    return n_tiles;
}
void sort_by_expert(const int32_t* expert, int64_t n, int32_t* order) {  // stable: pairs ascending per expert
    for (int64_t i = 0; i < n; ++i) order[i] = (int32_t)i;
    std::stable_sort(order, order + n, [&](int32_t a, int32_t b) { return expert[a] < expert[b]; });
}
}  // namespace

int64_t expert_tiles(const int32_t* expert, int64_t n, int32_t* order, int32_t* tiles, int max_tile) {
    sort_by_expert(expert, n, order);
    return cut_tiles(expert, order, n, tiles, max_tile);
}

int64_t expert_tiles_for(const int32_t* expert, int64_t n, int32_t* order, int32_t* tiles, bool& mma) {
    sort_by_expert(expert, n, order);
    const int64_t wide = cut_tiles(expert, order, n, tiles, kMmaTileTokens);
    mma = n >= kMmaMinTokens * wide;
    return mma ? wide : cut_tiles(expert, order, n, tiles, kExpertTileTokens);
}

KernelStatus expert_sum(const float* y, const int32_t* runs, int64_t n_runs, const float* weight, int64_t width,
                        float* out, void* stream) {
    if (n_runs == 0 || width == 0) return {};
    const int64_t nbx = (width + 255) / 256;
    k_expert_sum<<<(unsigned)(nbx * n_runs), 256, 0, st(stream)>>>(y, runs, weight, width, nbx, out);
    return launched("expert_sum");
}

KernelStatus router_topk(const float* logits, int64_t n_tok, int64_t n_expert, int64_t k, int32_t* ids, float* weights,
                   void* stream) {
    if (k < 1 || k > n_expert) return err("cuda router_topk: k = ", k, " with ", n_expert, " experts");
    if (n_tok == 0) return {};
    k_router<<<(unsigned)n_tok, kWarp, (size_t)n_expert * sizeof(float), st(stream)>>>(logits, n_expert, k, ids,
                                                                                        weights);
    return launched("router_topk");
}

KernelStatus kv_store(const KvLayer& kv, const float* k, const float* v, const int32_t* pos, const int32_t* tok_seq,
                const int32_t* tables, int64_t max_pages, int64_t n_tok, void* stream) {
    if (n_tok == 0) return {};
    k_kv_store<<<(unsigned)n_tok, 128, 0, st(stream)>>>(kv, k, v, pos, tok_seq, tables, max_pages);
    return launched("kv_store");
}

KernelStatus attention(const KvLayer& kv, const float* q, const int32_t* pos, const int32_t* tok_seq, const int32_t* tables,
                 int64_t max_pages, int64_t n_tok, int64_t n_head, int64_t n_head_kv, int64_t head_dim, float* out,
                 void* stream) {
    KernelStatus why;
    const int64_t group = gqa_group("attention", n_head, n_head_kv, n_head, why);
    if (group == 0) return why;
    if (n_tok == 0) return {};
    const dim3 grid((unsigned)n_tok, (unsigned)n_head);
    const float scale = 1.0f / std::sqrt((float)head_dim);
    switch (head_dim) {
        case 32: k_attention<1><<<grid, kAttnWarps * kWarp, 0, st(stream)>>>(kv, q, pos, tok_seq, tables, max_pages, n_head, group, scale, out); break;
        case 64: k_attention<2><<<grid, kAttnWarps * kWarp, 0, st(stream)>>>(kv, q, pos, tok_seq, tables, max_pages, n_head, group, scale, out); break;
        case 128: k_attention<4><<<grid, kAttnWarps * kWarp, 0, st(stream)>>>(kv, q, pos, tok_seq, tables, max_pages, n_head, group, scale, out); break;
        case 256: k_attention<8><<<grid, kAttnWarps * kWarp, 0, st(stream)>>>(kv, q, pos, tok_seq, tables, max_pages, n_head, group, scale, out); break;
        default: return err("cuda attention: head_dim ", head_dim, " not supported (32, 64, 128, 256)");
    }
    return launched("attention");
}

std::vector<int32_t> attention_tiles(const int32_t* pos, const int32_t* tok_seq, int64_t n_tok, int64_t group) {
    std::vector<int32_t> tiles;
    const int64_t per_tile = std::max<int64_t>(1, kTileRows / std::max<int64_t>(group, 1));
    for (int64_t t = 0; t < n_tok;) {
        int64_t e = t + 1;
        while (e < n_tok && e - t < per_tile && tok_seq[e] == tok_seq[t] && pos[e] == pos[e - 1] + 1) ++e;
        tiles.push_back((int32_t)t);
        tiles.push_back((int32_t)(e - t));
        t = e;
    }
    return tiles;
}

KernelStatus attention_tiled(const KvLayer& kv, const float* q, const int32_t* pos, const int32_t* tok_seq,
                             const int32_t* tables, int64_t max_pages, const int32_t* tiles, int64_t n_tiles, int64_t n_head,
                             int64_t n_head_kv, int64_t head_dim, float* out, void* stream) {
    KernelStatus why;
    const int64_t group = gqa_group("attention_tiled", n_head, n_head_kv, kTileRows, why);
    if (group == 0) return why;
    if (n_tiles == 0) return {};
    const dim3 grid((unsigned)n_tiles, (unsigned)n_head_kv);
    const float scale = 1.0f / std::sqrt((float)head_dim);
    auto launch = [&]<int NE>() {
        const size_t smem = tiled_smem_bytes<NE>();
        if (smem > 48 * 1024)  // (above the default: asked for once per kernel)
            cudaFuncSetAttribute(k_attention_tiled<NE>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        k_attention_tiled<NE><<<grid, kTileWarps * kWarp, smem, st(stream)>>>(kv, q, pos, tok_seq, tables, max_pages,
                                                                              tiles, n_head, group, scale, out);
    };
    switch (head_dim) {
        case 32: launch.template operator()<1>(); break;
        case 64: launch.template operator()<2>(); break;
        case 128: launch.template operator()<4>(); break;
        case 256: launch.template operator()<8>(); break;
        default: return err("cuda attention_tiled: head_dim ", head_dim, " not supported (32, 64, 128, 256)");
    }
    return launched("attention_tiled");
}

KernelStatus argmax(const float* logits, int64_t n_tok, int64_t n_vocab, int32_t* ids, void* stream) {
    if (n_tok == 0) return {};
    k_argmax<<<(unsigned)n_tok, 256, 0, st(stream)>>>(logits, n_vocab, ids);
    return launched("argmax");
}

KernelStatus sync(void* stream) {
    const cudaError_t e = cudaStreamSynchronize(st(stream));
    if (e != cudaSuccess) return err("cuda: ", cudaGetErrorString(e), " (", cudaGetErrorName(e), ")");
    return {};
}

}  // namespace tandem::cuda
