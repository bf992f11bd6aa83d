// CPU kernels chosen at run time from the CPU's features: one table per ISA (generic = the
// scalar reference, avx2, avx512 = AVX-512 with VNNI, amx = avx512 plus AMX-INT8 tiles for
// multi-token GEMM, neon = ARMv8.2-A NEON with SDOT + FP16, neon_v8 = plain ARMv8.0-A NEON),
// filled once. Every entry of every table
// is tested against the reference (tests/unit/cpu_kernels_test.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "kernels/reference/attention.h"

namespace tandem::cpu {

// y[r] = dot(weight row r, act) for r in [0, n_rows): rows of n elements of the weight type,
// `row_stride` bytes apart; act is one activation row already converted to vec_dot_type(type).
using GemvFn = void (*)(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* act, float* y);
// Several activation rows at once (prefill): y[t][r] = dot(weight row r, acts[t]) for t < n_tok;
// acts[t] points to one converted activation row, ys[t] to n_rows outputs.
using GemmFn = void (*)(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* const* acts,
                        int64_t n_tok, float* const* ys);
// Converts one row of n floats to an activation (dot-product) type.
using ConvertFn = void (*)(const float* x, void* out, int64_t n);
// Attention over an f16 KV cache, one head: keys transposed (element i of key p at
// k[i * stride + p], positions contiguous), values as rows (element i of value p at
// v[p * stride + i]): scores[p] = q . k_p for n_pos keys; out += sum_p w[p] * v_p.
// W8A8: acc[r] = sum_k x_q[k] * w[r][k] (int32, exact) for int8 weight rows `row_stride` bytes
// apart and one int8 activation row (see kernels/reference/int8.h).
using GemvI8Fn = void (*)(const int8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const int8_t* x_q,
                          int32_t* acc);
// Packed weights (kernels/reference/packed.h): y[t * ldy + r] = dot(row r, acts[t]) for the
// 16 * n_groups rows of n_groups consecutive groups of 16 rows, t < n_tok (decode: n_tok = 1).
using PackedGemmFn = void (*)(const uint8_t* w, int64_t n_groups, int64_t n, const void* const* acts, int64_t n_tok,
                              float* y, int64_t ldy);
using AttnScoresFn = void (*)(const float* q, const uint16_t* k, int64_t stride, int64_t n_pos, int64_t hd,
                              float* scores);
using AttnValuesFn = void (*)(const float* w, const uint16_t* v, int64_t stride, int64_t n_pos, int64_t hd,
                              float* out);

// Row-wise ops of the forward (kernels/reference/ops.h): out = rms_norm(x) * w (w may be null),
// out = silu(gate) * up, y += a * x.
using RmsNormFn = void (*)(const float* x, const float* w, int64_t n, float eps, float* out);
using SwigluFn = void (*)(const float* gate, const float* up, float* out, int64_t n);
using AxpyFn = void (*)(float a, const float* x, float* y, int64_t n);
// Causal attention of one job (kernels/reference/attention.h).
using AttentionFn = void (*)(const ref::AttnJob& job);

// avx2_vnni: the AVX2 table with AVX-VNNI (VEX VPDPBUSD) packed kernels, for CPUs that have it
// but no AVX-512 (Intel cores since Alder Lake, the E-core Xeons)
enum class Isa { generic = 0, avx2 = 1, avx512 = 2, neon = 3, neon_v8 = 4, amx = 5, avx2_vnni = 6 };
constexpr int kNumIsa = 7;
constexpr Isa kAllIsas[kNumIsa] = {Isa::generic, Isa::avx2, Isa::avx512, Isa::neon, Isa::neon_v8, Isa::amx, Isa::avx2_vnni};
constexpr int kMaxTypeId = 32;

struct KernelTable {
    Isa isa = Isa::generic;
    bool vbmi = false;  // avx512/amx: the packed kernels' AVX512-VBMI build (avx512_vbmi_packed.cpp)
    GemvFn gemv[kMaxTypeId] = {};        // by weight type id
    ConvertFn convert[kMaxTypeId] = {};  // by activation type id
    GemmFn gemm[kMaxTypeId] = {};        // by weight type id
    bool fast[kMaxTypeId] = {};          // gemv has an ISA-specific kernel (not the reference)
    // by weight type id; null: no packed layout (generic: the scalar reference over the layout)
    PackedGemmFn packed_gemm[kMaxTypeId] = {};
    GemvI8Fn gemv_i8 = nullptr;
    AttnScoresFn attn_scores = nullptr;
    AttnValuesFn attn_values = nullptr;
    // null where there is no ISA-specific kernel: the forward then goes head by head over
    // attn_scores / attn_values (tests compare this with ref::attention)
    AttentionFn attention = nullptr;
    RmsNormFn rms_norm = nullptr;
    SwigluFn swiglu = nullptr;
    AxpyFn axpy = nullptr;
};

const char* isa_name(Isa isa);
bool isa_supported(Isa isa);  // this CPU (and this build) can run the ISA's kernels
// Table of one ISA (for tests and benchmarks); must be supported.
const KernelTable& kernels_for(Isa isa);
// The best supported table, or the one named by the environment variable TANDEM_ISA
// (generic|avx2|avx2_vnni|avx512|amx|neon|neon_v8) when it is supported.
const KernelTable& kernels();

// Which cache the x86 packed kernels' software prefetch of the weights fills: L2 on Intel (Xeon
// with AMX, one core streaming expert matrices: 10.7 -> 11.7 GiB/s, model decode +6-13%), L1 on
// the others (Zen 5: where the prefetch was tuned). TANDEM_PREFETCH=l1|l2 overrides. Read by the
// kernels at each call; set once at start-up.
extern bool g_prefetch_l2;
const char* prefetch_target_name();  // "l1" or "l2"

// Convenience wrappers over kernels().
inline void gemv(DType type, const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* act,
                 float* y) {
    kernels().gemv[(int)type](w, row_stride, n_rows, n, act, y);
}
inline void convert_activation(DType act_type, const float* x, void* out, int64_t n) {
    kernels().convert[(int)act_type](x, out, n);
}

// Per-ISA fillers (each compiled with its own target flags); they override generic entries.
void fill_avx2(KernelTable& t);
void fill_avx2_attention(KernelTable& t);  // avx2_attention.cpp
void fill_avx2_packed(KernelTable& t);     // packed-layout kernels (avx2_packed.cpp)
void fill_avx2_vnni_packed(KernelTable& t);  // the same with AVX-VNNI (avx2_vnni_packed.cpp)
void fill_avx512(KernelTable& t);
void fill_avx512_packed(KernelTable& t);       // packed-layout kernels (avx512_packed_kernels.h)
void fill_avx512_vbmi_packed(KernelTable& t);  // the same with AVX512-VBMI (avx512_vbmi_packed.cpp)
void fill_avx512_attention(KernelTable& t);  // avx512_attention.cpp
void fill_avx512_ops(KernelTable& t);        // avx512_ops.cpp
void fill_avx512_lowbit(KernelTable& t);     // Q2_K, Q3_K, IQ4_XS, IQ4_NL, Q4_1, Q5_1 (avx512_lowbit.cpp)
void fill_avx512_bf16(KernelTable& t);  // over a filled avx512 table: BF16 rows through VDPBF16PS (AVX512-BF16 CPUs)
void fill_amx(KernelTable& t);  // over a filled avx512 table: AMX GEMM for Q4_K/Q6_K (and BF16 with AMX-BF16)
void fill_neon(KernelTable& t);
void fill_neon_v8(KernelTable& t);

}  // namespace tandem::cpu
