// Split-K decode attention (flash-decoding; the plan and the merge formula: split_attention.h).
// One block per (token, KV head, part): the GQA group's query rows (pre-scaled, in shared
// memory) meet each key and value of the part's positions once. Its warps take the part's
// positions 32 at a time, a lane per position: the lane's key row (16-byte loads) against every
// query row gives the scores, an online softmax per row, then per position the value row
// (coalesced across lanes, each lane HD / 32 dimensions) weighted by the shuffled probabilities.
// The warps' results meet in shared memory (in warp order: deterministic); the block writes the
// output (one part) or its partial (o, m, l) for k_split_merge. fp32 arithmetic, f16 K/V.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cuda/common.cuh"
#include "backend/cuda/split_attention.h"

namespace tandem::cuda {
namespace {

constexpr int kSplitWarps = 4;

template <int NE, int RM>
__global__ void __launch_bounds__(kSplitWarps * kWarp)
    k_attention_split(KvLayer kv, const float* q, const int32_t* pos, const int32_t* tok_seq, const int32_t* tables,
                      int64_t max_pages, int64_t n_tok, int64_t n_head, int64_t group, float scale, float* part_o,
                      float* part_ml, float* out) {
    constexpr int HD = NE * kWarp;
    __shared__ __align__(16) float s_q[RM][HD];
    __shared__ float s_acc[RM][HD];
    __shared__ float s_m[kSplitWarps][RM], s_l[kSplitWarps][RM];
    const int64_t t = blockIdx.x, hk = blockIdx.y, z = blockIdx.z, n_parts = gridDim.z;
    const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    const int R = (int)group;
    for (int i = threadIdx.x; i < RM * HD; i += blockDim.x) {
        const int r = i / HD, d = i % HD;
        s_q[r][d] = r < R ? q[(t * n_head + hk * group + r) * HD + d] * scale : 0.0f;
        s_acc[r][d] = 0.0f;
    }
    __syncthreads();
    const PosRange range = split_range((int64_t)pos[t] + 1, n_parts, z);
    const int32_t* table = tables + (int64_t)tok_seq[t] * max_pages;
    float m[RM], l[RM], acc[RM][NE];
#pragma unroll
    for (int r = 0; r < RM; ++r) {
        m[r] = -INFINITY, l[r] = 0.0f;
#pragma unroll
        for (int e = 0; e < NE; ++e) acc[r][e] = 0.0f;
    }
    for (int64_t c = range.begin + warp * kWarp; c < range.end; c += kSplitWarps * kWarp) {
        const int64_t p = c + lane;
        const bool in = p < range.end;
        float s[RM];
#pragma unroll
        for (int r = 0; r < RM; ++r) s[r] = 0.0f;
        if (in) {
            const uint16_t* kr = kv.k + kv_offset(kv, table[p / kv.page_size], p % kv.page_size) + hk * HD;
            for (int d = 0; d < HD; d += 8) {
                const uint4 raw = *reinterpret_cast<const uint4*>(kr + d);
                const __half2* h2 = reinterpret_cast<const __half2*>(&raw);
                float kf[8];
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const float2 f = __half22float2(h2[i]);
                    kf[2 * i] = f.x, kf[2 * i + 1] = f.y;
                }
#pragma unroll
                for (int r = 0; r < RM; ++r) {
                    if (r >= R) break;
                    const float4 q0 = *reinterpret_cast<const float4*>(&s_q[r][d]);
                    const float4 q1 = *reinterpret_cast<const float4*>(&s_q[r][d + 4]);
                    float a = s[r];
                    a = fmaf(q0.x, kf[0], a), a = fmaf(q0.y, kf[1], a), a = fmaf(q0.z, kf[2], a), a = fmaf(q0.w, kf[3], a);
                    a = fmaf(q1.x, kf[4], a), a = fmaf(q1.y, kf[5], a), a = fmaf(q1.z, kf[6], a), a = fmaf(q1.w, kf[7], a);
                    s[r] = a;
                }
            }
        }
#pragma unroll
        for (int r = 0; r < RM; ++r) {
            if (r >= R) break;  // (R is the same for every lane: the shuffles below stay convergent)
            const float sc = in ? s[r] : -INFINITY;
            const float m_new = fmaxf(m[r], warp_max(sc));  // finite: lane 0's position is in the part
            const float corr = expf(m[r] - m_new);           // (exp(-inf) = 0 at the first chunk)
            const float w = in ? expf(sc - m_new) : 0.0f;
            l[r] = l[r] * corr + warp_sum(w);
#pragma unroll
            for (int e = 0; e < NE; ++e) acc[r][e] *= corr;
            s[r] = w, m[r] = m_new;
        }
        const int n_here = (int)min((int64_t)kWarp, range.end - c);
        for (int pp = 0; pp < n_here; ++pp) {
            const int64_t pv = c + pp;
            const uint16_t* vr = kv.v + kv_offset(kv, table[pv / kv.page_size], pv % kv.page_size) + hk * HD;
            float vv[NE];
#pragma unroll
            for (int e = 0; e < NE; ++e) vv[e] = half_bits(vr[lane + kWarp * e]);
#pragma unroll
            for (int r = 0; r < RM; ++r) {
                if (r >= R) break;
                const float wp = __shfl_sync(0xffffffffu, s[r], pp);
#pragma unroll
                for (int e = 0; e < NE; ++e) acc[r][e] = fmaf(wp, vv[e], acc[r][e]);
            }
        }
    }
    // the block's warps: each row's largest m, then the warps' sums rescaled to it, in warp order
    if (lane == 0)
#pragma unroll
        for (int r = 0; r < RM; ++r) s_m[warp][r] = m[r], s_l[warp][r] = l[r];
    __syncthreads();
    for (int w = 0; w < kSplitWarps; ++w) {
        if (warp == w)
#pragma unroll
            for (int r = 0; r < RM; ++r) {
                if (r >= R || !(l[r] > 0.0f)) continue;  // (a warp without positions has m = -inf)
                float M = -INFINITY;
                for (int u = 0; u < kSplitWarps; ++u) M = fmaxf(M, s_m[u][r]);
                const float f = expf(m[r] - M);
#pragma unroll
                for (int e = 0; e < NE; ++e) s_acc[r][lane + kWarp * e] += acc[r][e] * f;
            }
        __syncthreads();
    }
    const int64_t rows = n_tok * n_head;
    for (int i = threadIdx.x; i < R * HD; i += blockDim.x) {
        const int r = i / HD, d = i % HD;
        float M = -INFINITY, L = 0.0f;
        for (int u = 0; u < kSplitWarps; ++u) M = fmaxf(M, s_m[u][r]);
        for (int u = 0; u < kSplitWarps; ++u)
            if (s_l[u][r] > 0.0f) L += s_l[u][r] * expf(s_m[u][r] - M);
        const int64_t row = t * n_head + hk * group + r;
        if (n_parts == 1) {
            out[row * HD + d] = s_acc[r][d] / L;  // (L > 0: position 0 is in the only part)
        } else {
            part_o[(z * rows + row) * HD + d] = s_acc[r][d];
            if (d == 0) part_ml[2 * (z * rows + row)] = M, part_ml[2 * (z * rows + row) + 1] = L;
        }
    }
}

// One block per (token, head), a thread per output element: split_merge over the parts.
__global__ void k_split_merge(const float* part_o, const float* part_ml, int64_t rows, int64_t n_parts, int64_t hd,
                              float* out) {
    const int64_t row = blockIdx.x;
    for (int64_t d = threadIdx.x; d < hd; d += blockDim.x)
        out[row * hd + d] = split_merge(part_o + row * hd, part_ml + 2 * row, n_parts, rows * hd, 2 * rows, d);
}

}  // namespace

int64_t sm_count() {
    static const int64_t n = [] {
        int dev = 0, sms = 0;
        if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
            return (int64_t)1;
        return (int64_t)std::max(sms, 1);
    }();
    return n;
}

KernelStatus attention_split(const KvLayer& kv, const float* q, const int32_t* pos, const int32_t* tok_seq,
                             const int32_t* tables, int64_t max_pages, int64_t n_tok, int64_t n_head, int64_t n_head_kv,
                             int64_t head_dim, int64_t n_parts, float* part_o, float* part_ml, float* out, void* stream) {
    KernelStatus why;
    const int64_t group = gqa_group("attention_split", n_head, n_head_kv, kSplitMaxGroup, why);
    if (group == 0) return why;
    if (n_parts < 1 || n_parts > kSplitMaxParts || (n_parts > 1 && n_parts * n_tok > kSplitMaxRows))
        return err("cuda attention_split: ", n_parts, " parts of ", n_tok, " tokens (at most ", kSplitMaxParts,
                   " parts, ", kSplitMaxRows, " tokens x parts)");
    if (n_parts > 1 && (!part_o || !part_ml)) return err("cuda attention_split: ", n_parts, " parts and no scratch");
    if (n_tok == 0) return {};
    const dim3 grid((unsigned)n_tok, (unsigned)n_head_kv, (unsigned)n_parts);
    const float scale = 1.0f / std::sqrt((float)head_dim);
    auto launch = [&]<int NE>() {
        auto go = [&]<int RM>() {
            k_attention_split<NE, RM><<<grid, kSplitWarps * kWarp, 0, st(stream)>>>(
                kv, q, pos, tok_seq, tables, max_pages, n_tok, n_head, group, scale, part_o, part_ml, out);
        };
        if (group <= 4) go.template operator()<4>();
        else if (group <= 8) go.template operator()<8>();
        else go.template operator()<16>();
    };
    switch (head_dim) {
        case 32: launch.template operator()<1>(); break;
        case 64: launch.template operator()<2>(); break;
        case 128: launch.template operator()<4>(); break;
        case 256: launch.template operator()<8>(); break;
        default: return err("cuda attention_split: head_dim ", head_dim, " not supported (32, 64, 128, 256)");
    }
    KernelStatus s = launched("attention_split");
    if (!s.empty() || n_parts == 1) return s;
    k_split_merge<<<(unsigned)(n_tok * n_head), (unsigned)std::min<int64_t>(head_dim, 256), 0, st(stream)>>>(
        part_o, part_ml, n_tok * n_head, n_parts, head_dim, out);
    return launched("attention_split merge");
}

}  // namespace tandem::cuda
