#include "kernels/cpu/kernels.h"

#include <cstdlib>
#include <cstring>

#include "core/fp16.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/reference/int8.h"
#include "kernels/reference/ops.h"
#include "kernels/reference/packed.h"
#include "kernels/reference/quants.h"

namespace tandem::cpu {
namespace {

template <DType T>
void gemv_ref(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* act, float* y) {
    ref::gemv_rows(T, w, row_stride, n_rows, n, act, y);
}
// gemm through the table's gemv, token by token (for types without a multi-token kernel)
template <DType T, Isa I>
void gemm_by_gemv(const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* const* acts,
                  int64_t n_tok, float* const* ys) {
    const GemvFn gemv = kernels_for(I).gemv[(int)T];
    for (int64_t t = 0; t < n_tok; ++t) gemv(w, row_stride, n_rows, n, acts[t], ys[t]);
}

template <DType T>
void packed_gemm_ref(const uint8_t* w, int64_t n_groups, int64_t n, const void* const* acts, int64_t n_tok, float* y,
                     int64_t ldy) {
    ref::packed_gemm(T, w, n_groups, n, acts, n_tok, y, ldy);
}

template <DType T>
void convert_ref(const float* x, void* out, int64_t n) {
    ref::convert_activation(T, x, out, n);
}

void attn_scores_ref(const float* q, const uint16_t* k, int64_t stride, int64_t n_pos, int64_t hd, float* scores) {
    for (int64_t p = 0; p < n_pos; ++p) {
        float s = 0.0f;
        for (int64_t i = 0; i < hd; ++i) s += q[i] * fp16_to_fp32(k[i * stride + p]);
        scores[p] = s;
    }
}

void axpy_ref(float a, const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void attn_values_ref(const float* w, const uint16_t* v, int64_t stride, int64_t n_pos, int64_t hd, float* out) {
    for (int64_t p = 0; p < n_pos; ++p) {
        const uint16_t* vp = v + p * stride;
        for (int64_t i = 0; i < hd; ++i) out[i] += w[p] * fp16_to_fp32(vp[i]);
    }
}

KernelTable make_generic() {
    KernelTable t;
    t.isa = Isa::generic;
#define TANDEM_REF(T)                              \
    t.gemv[(int)DType::T] = gemv_ref<DType::T>;    \
    t.convert[(int)DType::T] = convert_ref<DType::T>;
    TANDEM_REF(F32)
    TANDEM_REF(F16)
    TANDEM_REF(BF16)
    TANDEM_REF(Q4_0)
    TANDEM_REF(Q5_0)
    TANDEM_REF(Q8_0)
    TANDEM_REF(Q4_K)
    TANDEM_REF(Q5_K)
    TANDEM_REF(Q6_K)
    TANDEM_REF(Q8_K)
#undef TANDEM_REF
    // read-only weight types (ref::can_quantize): never an activation type, no convert entry
    t.gemv[(int)DType::Q4_1] = gemv_ref<DType::Q4_1>;
    t.gemv[(int)DType::Q5_1] = gemv_ref<DType::Q5_1>;
    t.gemv[(int)DType::IQ4_NL] = gemv_ref<DType::IQ4_NL>;
    t.gemv[(int)DType::Q2_K] = gemv_ref<DType::Q2_K>;
    t.gemv[(int)DType::Q3_K] = gemv_ref<DType::Q3_K>;
    t.gemv[(int)DType::IQ4_XS] = gemv_ref<DType::IQ4_XS>;
    t.packed_gemm[(int)DType::Q4_K] = packed_gemm_ref<DType::Q4_K>;
    t.packed_gemm[(int)DType::Q5_K] = packed_gemm_ref<DType::Q5_K>;
    t.packed_gemm[(int)DType::Q6_K] = packed_gemm_ref<DType::Q6_K>;
    t.packed_gemm[(int)DType::Q3_K] = packed_gemm_ref<DType::Q3_K>;
    t.packed_gemm[(int)DType::Q2_K] = packed_gemm_ref<DType::Q2_K>;
    t.packed_gemm[(int)DType::IQ4_XS] = packed_gemm_ref<DType::IQ4_XS>;
    t.packed_gemm[(int)DType::Q4_0] = packed_gemm_ref<DType::Q4_0>;
    t.packed_gemm[(int)DType::Q4_1] = packed_gemm_ref<DType::Q4_1>;
    t.packed_gemm[(int)DType::Q5_0] = packed_gemm_ref<DType::Q5_0>;
    t.packed_gemm[(int)DType::Q5_1] = packed_gemm_ref<DType::Q5_1>;
    t.packed_gemm[(int)DType::Q8_0] = packed_gemm_ref<DType::Q8_0>;
    t.packed_gemm[(int)DType::IQ4_NL] = packed_gemm_ref<DType::IQ4_NL>;
    t.rms_norm = ref::rms_norm;
    t.swiglu = ref::swiglu;
    t.axpy = axpy_ref;
    t.attn_scores = attn_scores_ref;
    t.attn_values = attn_values_ref;
    t.gemv_i8 = ref::gemv_i8;
    return t;
}

template <Isa I>
void fill_gemm_by_gemv(KernelTable& t) {
#define TANDEM_GEMM(T) if (!t.gemm[(int)DType::T]) t.gemm[(int)DType::T] = gemm_by_gemv<DType::T, I>;
    TANDEM_GEMM(F32)
    TANDEM_GEMM(F16)
    TANDEM_GEMM(BF16)
    TANDEM_GEMM(Q4_0)
    TANDEM_GEMM(Q5_0)
    TANDEM_GEMM(Q8_0)
    TANDEM_GEMM(Q4_K)
    TANDEM_GEMM(Q5_K)
    TANDEM_GEMM(Q6_K)
    TANDEM_GEMM(Q4_1)
    TANDEM_GEMM(Q5_1)
    TANDEM_GEMM(IQ4_NL)
    TANDEM_GEMM(Q2_K)
    TANDEM_GEMM(Q3_K)
    TANDEM_GEMM(IQ4_XS)
#undef TANDEM_GEMM
}

#if defined(__x86_64__)
// The AVX-512 packed kernels with VBMI on Intel CPUs that have it (the same results bit for bit).
// Measured on a Xeon only, where VPDPBUSD and the shifts share port 0; AMD's Zen 4/5 lay out
// their pipes differently and keep the build without VBMI until it is measured there.
void fill_avx512_packed_for_cpu(KernelTable& t) {
    const CpuFeatures& f = cpu_features();
    t.vbmi = f.avx512vbmi && f.intel;
    if (t.vbmi) fill_avx512_vbmi_packed(t);
    else fill_avx512_packed(t);
}
#endif

// t[i] is the table of Isa i; unsupported ISAs keep copies of the generic table.
struct Tables {
    KernelTable t[kNumIsa];
    Tables() {
        t[0] = make_generic();
        for (int i = 1; i < kNumIsa; ++i) {
            t[i] = t[0];
            t[i].isa = (Isa)i;
        }
#if defined(__x86_64__)
        if (isa_supported(Isa::avx2)) {
            fill_avx2(t[(int)Isa::avx2]);
            fill_avx2_attention(t[(int)Isa::avx2]);
            fill_avx2_packed(t[(int)Isa::avx2]);
        }
        if (isa_supported(Isa::avx2_vnni)) {
            fill_avx2(t[(int)Isa::avx2_vnni]);
            fill_avx2_attention(t[(int)Isa::avx2_vnni]);
            fill_avx2_vnni_packed(t[(int)Isa::avx2_vnni]);
        }
        if (isa_supported(Isa::avx512)) {
            fill_avx2(t[(int)Isa::avx512]);
            fill_avx512(t[(int)Isa::avx512]);
            fill_avx512_packed_for_cpu(t[(int)Isa::avx512]);
            fill_avx512_attention(t[(int)Isa::avx512]);
            fill_avx512_ops(t[(int)Isa::avx512]);
            fill_avx512_lowbit(t[(int)Isa::avx512]);
            if (cpu_features().avx512bf16) fill_avx512_bf16(t[(int)Isa::avx512]);
        }
        if (isa_supported(Isa::amx)) {
            fill_avx2(t[(int)Isa::amx]);
            fill_avx512(t[(int)Isa::amx]);
            fill_avx512_packed_for_cpu(t[(int)Isa::amx]);
            fill_avx512_attention(t[(int)Isa::amx]);
            fill_avx512_ops(t[(int)Isa::amx]);
            fill_avx512_lowbit(t[(int)Isa::amx]);
            if (cpu_features().avx512bf16) fill_avx512_bf16(t[(int)Isa::amx]);
            fill_amx(t[(int)Isa::amx]);
        }
#elif defined(__aarch64__)
        if (isa_supported(Isa::neon)) fill_neon(t[(int)Isa::neon]);
        if (isa_supported(Isa::neon_v8)) fill_neon_v8(t[(int)Isa::neon_v8]);
#endif
        fill_gemm_by_gemv<Isa::generic>(t[0]);
        fill_gemm_by_gemv<Isa::avx2>(t[1]);
        fill_gemm_by_gemv<Isa::avx512>(t[2]);
        fill_gemm_by_gemv<Isa::neon>(t[3]);
        fill_gemm_by_gemv<Isa::neon_v8>(t[4]);
        fill_gemm_by_gemv<Isa::amx>(t[5]);
        fill_gemm_by_gemv<Isa::avx2_vnni>(t[6]);
    }
};

const Tables& tables() {
    static const Tables tb;
    return tb;
}

}  // namespace

const char* isa_name(Isa isa) {
    static constexpr const char* kNames[kNumIsa] = {"generic", "avx2", "avx512", "neon", "neon_v8", "amx", "avx2_vnni"};
    return kNames[(int)isa];
}

bool isa_supported(Isa isa) {
    const CpuFeatures& f = cpu_features();
    switch (isa) {
        case Isa::generic: return true;
#if defined(__x86_64__)
        case Isa::avx2: return f.has_avx2();
        case Isa::avx2_vnni: return f.has_avx2() && f.avxvnni;
        case Isa::avx512: return f.has_avx512();
        case Isa::amx: return f.has_avx512() && f.amx_int8;
#elif defined(__aarch64__)
        case Isa::neon: return f.has_neon_dotprod();
        case Isa::neon_v8: return f.neon;
#endif
        default: return false;
    }
}

bool g_prefetch_l2 = [] {
    if (const char* env = std::getenv("TANDEM_PREFETCH")) {
        if (std::strcmp(env, "l2") == 0) return true;
        if (std::strcmp(env, "l1") == 0) return false;
    }
    return cpu_features().intel;
}();

const char* prefetch_target_name() { return g_prefetch_l2 ? "l2" : "l1"; }

const KernelTable& kernels_for(Isa isa) { return tables().t[(int)isa]; }

const KernelTable& kernels() {
    static const KernelTable* best = [] {
        Isa pick = Isa::generic;
        for (Isa i : {Isa::avx2, Isa::avx2_vnni, Isa::avx512, Isa::amx, Isa::neon_v8, Isa::neon})  // worst to best
            if (isa_supported(i)) pick = i;
        if (const char* env = std::getenv("TANDEM_ISA")) {
            for (Isa i : kAllIsas)
                if (std::strcmp(env, isa_name(i)) == 0 && isa_supported(i)) pick = i;
        }
        return &kernels_for(pick);
    }();
    return *best;
}

}  // namespace tandem::cpu
