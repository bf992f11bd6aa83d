// Scalar reference (de)quantization and dot products: dispatch, float types and the *_0 types.
// The K types live in quants_k.cpp.
//
// Dequantization reproduces ggml's arithmetic exactly (same float operations in the same order,
// built with -ffp-contract=off), so results are bit-identical to llama.cpp for the same bytes.
// Dot products are exact integer sums per block, scaled and accumulated in double, and rounded to
// float once at the end.
#include "kernels/reference/quants.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/fp16.h"
#include "kernels/reference/quants_internal.h"

namespace tandem::ref {
namespace detail {

float fit_symmetric(const float* x, int n, int nmax, int8_t* q) {
    assert(n <= kQK_K);
    float amax = 0;
    float xm = 0;  // the element of largest magnitude, with its sign
    for (int i = 0; i < n; ++i) {
        if (std::fabs(x[i]) > amax) {
            amax = std::fabs(x[i]);
            xm = x[i];
        }
    }
    if (amax == 0 || !std::isfinite(amax)) {
        std::memset(q, 0, (size_t)n);
        return 0;
    }
    double sxx = 0;
    for (int i = 0; i < n; ++i) sxx += (double)x[i] * x[i];

    // Error of the least-squares scale for a fixed q: sxx - sxq^2 / sqq.
    auto try_scale = [&](float s, int8_t* out, float* s_opt) {
        double sxq = 0, sqq = 0;
        const float inv = 1.0f / s;
        for (int i = 0; i < n; ++i) {
            out[i] = (int8_t)round_clamp(x[i] * inv, -nmax, nmax - 1);
            sxq += (double)x[i] * out[i];
            sqq += (double)out[i] * out[i];
        }
        if (sqq == 0) return std::numeric_limits<double>::infinity();
        *s_opt = (float)(sxq / sqq);
        return sxx - sxq * sxq / sqq;
    };

    // Grid: the largest element lands on level t, |t| from nmax-2 (coarse) to nmax+1 (clipping),
    // on the negative side (which has the extra level) or on the positive side.
    constexpr int n_grid = 8;  // steps of 0.1 level either way
    int8_t cand[kQK_K];
    double best_err = std::numeric_limits<double>::infinity();
    float best_s = 0;
    for (int side = 0; side < 2; ++side) {
        for (int k = -n_grid; k <= n_grid / 2; ++k) {
            const float level = (side == 0 ? (float)nmax : (float)(nmax - 1)) + 0.1f * (float)k;
            if (level < 0.5f) continue;
            float s_opt = 0;
            const double err = try_scale(xm / (side == 0 ? -level : level), cand, &s_opt);
            if (err < best_err) {
                best_err = err;
                best_s = s_opt;
                std::memcpy(q, cand, (size_t)n);
            }
        }
    }
    // Alternate re-rounding and re-fitting while the error drops.
    for (int it = 0; it < 8 && best_s != 0; ++it) {
        float s_opt = 0;
        const double err = try_scale(best_s, cand, &s_opt);
        if (!(err < best_err)) break;
        best_err = err;
        best_s = s_opt;
        std::memcpy(q, cand, (size_t)n);
    }
    return best_s;
}

}  // namespace detail

namespace {

using detail::round_clamp;

// ---- *_0 types: unpack one block to signed levels (q - offset), shared by dequant and dot.

void unpack(const BlockQ4_0& b, int8_t* v) {
    for (int j = 0; j < kQK / 2; ++j) {
        v[j] = (int8_t)((b.qs[j] & 0x0f) - 8);
        v[j + kQK / 2] = (int8_t)((b.qs[j] >> 4) - 8);
    }
}

void unpack(const BlockQ5_0& b, int8_t* v) {
    uint32_t qh;
    std::memcpy(&qh, b.qh, 4);
    for (int j = 0; j < kQK / 2; ++j) {
        const int h0 = (int)((qh >> j) & 1) << 4;
        const int h1 = (int)((qh >> (j + kQK / 2)) & 1) << 4;
        v[j] = (int8_t)(((b.qs[j] & 0x0f) | h0) - 16);
        v[j + kQK / 2] = (int8_t)(((b.qs[j] >> 4) | h1) - 16);
    }
}

void unpack(const BlockQ8_0& b, int8_t* v) {
    std::memcpy(v, b.qs, kQK);
}

template <typename Block>
void dequantize_blocks(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const Block*>(src);
    int8_t v[kQK];
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        const float d = fp16_to_fp32(blocks[ib].d);
        unpack(blocks[ib], v);
        for (int j = 0; j < kQK; ++j) dst[ib * kQK + j] = (float)v[j] * d;
    }
}

// Weight blocks of the Q8_0 family times Q8_0 activations: int sum per block * d_w * d_a.
template <typename Block>
double dot_blocks_q8_0(const void* w, const void* a, int64_t n) {
    const auto* wb = static_cast<const Block*>(w);
    const auto* ab = static_cast<const BlockQ8_0*>(a);
    int8_t v[kQK];
    double sum = 0;
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        unpack(wb[ib], v);
        int32_t isum = 0;
        for (int j = 0; j < kQK; ++j) isum += (int32_t)v[j] * ab[ib].qs[j];
        sum += (double)isum * fp16_to_fp32(wb[ib].d) * fp16_to_fp32(ab[ib].d);
    }
    return sum;
}

// Symmetric least-squares fit per block, then re-rounding against the stored f16 scale.
// Returns the f16 scale; v gets the levels in [-nmax, nmax-1].
uint16_t quantize_symmetric_block(const float* x, int nmax, int8_t* v) {
    const uint16_t d16 = fp32_to_fp16(detail::fit_symmetric(x, kQK, nmax, v));
    const float d = fp16_to_fp32(d16);
    if (d != 0 && std::isfinite(d)) {
        for (int j = 0; j < kQK; ++j) v[j] = (int8_t)round_clamp(x[j] / d, -nmax, nmax - 1);
    }
    return d16;
}

void quantize_q4_0(const float* src, void* dst, int64_t n) {
    auto* blocks = static_cast<BlockQ4_0*>(dst);
    int8_t v[kQK];
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        BlockQ4_0& b = blocks[ib];
        b.d = quantize_symmetric_block(src + ib * kQK, 8, v);
        for (int j = 0; j < kQK / 2; ++j) {
            b.qs[j] = (uint8_t)((v[j] + 8) | ((v[j + kQK / 2] + 8) << 4));
        }
    }
}

void quantize_q5_0(const float* src, void* dst, int64_t n) {
    auto* blocks = static_cast<BlockQ5_0*>(dst);
    int8_t v[kQK];
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        BlockQ5_0& b = blocks[ib];
        b.d = quantize_symmetric_block(src + ib * kQK, 16, v);
        uint32_t qh = 0;
        for (int j = 0; j < kQK; ++j) qh |= (uint32_t)(((v[j] + 16) >> 4) & 1) << j;
        std::memcpy(b.qh, &qh, 4);
        for (int j = 0; j < kQK / 2; ++j) {
            b.qs[j] = (uint8_t)(((v[j] + 16) & 0x0f) | (((v[j + kQK / 2] + 16) & 0x0f) << 4));
        }
    }
}

// Q8_0 is also the activation type of the *_0 weights, so it is quantized the way ggml does it
// (d = amax / 127, round half away from zero): activations are then byte-identical to llama.cpp's.
void quantize_q8_0(const float* src, void* dst, int64_t n) {
    auto* blocks = static_cast<BlockQ8_0*>(dst);
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        const float* x = src + ib * kQK;
        float amax = 0;
        for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        for (int j = 0; j < kQK; ++j) {
            const float v = x[j] * id;
            blocks[ib].qs[j] = (int8_t)(std::isnan(v) ? 0.0f : std::round(std::clamp(v, -127.0f, 127.0f)));
        }
        blocks[ib].d = fp32_to_fp16(d);
    }
}

void unsupported([[maybe_unused]] const char* what) {
    assert(!"quants: unsupported dtype" && what);
}

}  // namespace

void dequantize_row(DType type, const void* src, float* dst, int64_t n) {
    switch (type) {
        case DType::F32:
            std::memcpy(dst, src, (size_t)n * sizeof(float));
            return;
        case DType::F16: {
            const auto* h = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(h[i]);
            return;
        }
        case DType::BF16: {
            const auto* h = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(h[i]);
            return;
        }
        case DType::Q4_0:
            dequantize_blocks<BlockQ4_0>(src, dst, n);
            return;
        case DType::Q5_0:
            dequantize_blocks<BlockQ5_0>(src, dst, n);
            return;
        case DType::Q8_0:
            dequantize_blocks<BlockQ8_0>(src, dst, n);
            return;
        case DType::Q4_K:
            detail::dequantize_q4_k(src, dst, n);
            return;
        case DType::Q5_K:
            detail::dequantize_q5_k(src, dst, n);
            return;
        case DType::Q6_K:
            detail::dequantize_q6_k(src, dst, n);
            return;
        case DType::Q8_K:
            detail::dequantize_q8_k(src, dst, n);
            return;
        case DType::Q4_1:
            detail::dequantize_q4_1(src, dst, n);
            return;
        case DType::Q5_1:
            detail::dequantize_q5_1(src, dst, n);
            return;
        case DType::IQ4_NL:
            detail::dequantize_iq4_nl(src, dst, n);
            return;
        case DType::Q2_K:
            detail::dequantize_q2_k(src, dst, n);
            return;
        case DType::Q3_K:
            detail::dequantize_q3_k(src, dst, n);
            return;
        case DType::IQ4_XS:
            detail::dequantize_iq4_xs(src, dst, n);
            return;
        case DType::I8:  // the integers as they are (W8A8 weights: the scales are applied by the caller)
            for (int64_t i = 0; i < n; ++i) dst[i] = (float)static_cast<const int8_t*>(src)[i];
            return;
        case DType::I32:
            for (int64_t i = 0; i < n; ++i) dst[i] = (float)static_cast<const int32_t*>(src)[i];
            return;
        case DType::I64:
            for (int64_t i = 0; i < n; ++i) dst[i] = (float)static_cast<const int64_t*>(src)[i];
            return;
    }
    unsupported("dequantize_row");
}

void quantize_row(DType type, const float* src, void* dst, int64_t n) {
    switch (type) {
        case DType::F32:
            std::memcpy(dst, src, (size_t)n * sizeof(float));
            return;
        case DType::F16: {
            auto* h = static_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_fp16(src[i]);
            return;
        }
        case DType::BF16: {
            auto* h = static_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_bf16(src[i]);
            return;
        }
        case DType::Q4_0:
            quantize_q4_0(src, dst, n);
            return;
        case DType::Q5_0:
            quantize_q5_0(src, dst, n);
            return;
        case DType::Q8_0:
            quantize_q8_0(src, dst, n);
            return;
        case DType::Q4_K:
            detail::quantize_q4_k(src, dst, n);
            return;
        case DType::Q5_K:
            detail::quantize_q5_k(src, dst, n);
            return;
        case DType::Q6_K:
            detail::quantize_q6_k(src, dst, n);
            return;
        case DType::Q8_K:
            detail::quantize_q8_k(src, dst, n);
            return;
        case DType::Q4_1:
        case DType::Q5_1:
        case DType::IQ4_NL:
        case DType::Q2_K:
        case DType::Q3_K:
        case DType::IQ4_XS:
            break;  // read-only types (can_quantize)
        case DType::I8:  // plain integers (rounded, clamped); W8A8 weights are made with their scales elsewhere
            for (int64_t i = 0; i < n; ++i)
                static_cast<int8_t*>(dst)[i] = (int8_t)std::clamp(std::nearbyint(src[i]), -128.0f, 127.0f);
            return;
        case DType::I32:
            for (int64_t i = 0; i < n; ++i) static_cast<int32_t*>(dst)[i] = (int32_t)std::nearbyint(src[i]);
            return;
        case DType::I64:
            for (int64_t i = 0; i < n; ++i) static_cast<int64_t*>(dst)[i] = (int64_t)std::nearbyint(src[i]);
            return;
    }
    unsupported("quantize_row");
}

bool can_quantize(DType type) {
    switch (type) {
        case DType::Q4_1:
        case DType::Q5_1:
        case DType::IQ4_NL:
        case DType::Q2_K:
        case DType::Q3_K:
        case DType::IQ4_XS:
            return false;
        default:
            return true;
    }
}

DType vec_dot_type(DType type) {
    switch (type) {
        case DType::F32:
        case DType::F16:
        case DType::BF16:
            return type;
        case DType::Q4_0:
        case DType::Q5_0:
        case DType::Q8_0:
        case DType::Q4_1:
        case DType::Q5_1:
        case DType::IQ4_NL:
            return DType::Q8_0;
        case DType::Q2_K:
        case DType::Q3_K:
        case DType::IQ4_XS:
        case DType::Q4_K:
        case DType::Q5_K:
        case DType::Q6_K:
        case DType::Q8_K:
            return DType::Q8_K;
        case DType::I8:  // W8A8: int8 activations, quantized per token by the int8 path itself
        case DType::I32:
        case DType::I64:
            return type;
    }
    unsupported("vec_dot_type");
    return DType::F32;
}

namespace {

// 16-bit float -> float through a table of all 65536 values (exact: the table is filled with
// the scalar conversions).
const float* fp16_table() {
    static const std::vector<float> t = [] {
        std::vector<float> v(65536);
        for (uint32_t i = 0; i < 65536; ++i) v[i] = fp16_to_fp32((uint16_t)i);
        return v;
    }();
    return t.data();
}
const float* bf16_table() {
    static const std::vector<float> t = [] {
        std::vector<float> v(65536);
        for (uint32_t i = 0; i < 65536; ++i) v[i] = bf16_to_fp32((uint16_t)i);
        return v;
    }();
    return t.data();
}

// Products of the (exactly converted) half values, summed in 8 float lanes, then in double.
float dot_halves(const uint16_t* x, const uint16_t* y, int64_t n, const float* table) {
    float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; ++l) lane[l] += table[x[i + l]] * table[y[i + l]];
    double sum = 0;
    for (; i < n; ++i) sum += (double)table[x[i]] * table[y[i]];
    for (float v : lane) sum += v;
    return (float)sum;
}

}  // namespace

float vec_dot(DType type, const void* w, const void* a, int64_t n) {
    double sum = 0;  // every product below is exact in double; only the sum order rounds
    switch (type) {
        case DType::F32: {
            const auto* x = static_cast<const float*>(w);
            const auto* y = static_cast<const float*>(a);
            for (int64_t i = 0; i < n; ++i) sum += (double)x[i] * y[i];
            return (float)sum;
        }
        case DType::F16:
            return dot_halves(static_cast<const uint16_t*>(w), static_cast<const uint16_t*>(a), n, fp16_table());
        case DType::BF16:
            return dot_halves(static_cast<const uint16_t*>(w), static_cast<const uint16_t*>(a), n, bf16_table());
        case DType::Q4_0:
            return (float)dot_blocks_q8_0<BlockQ4_0>(w, a, n);
        case DType::Q5_0:
            return (float)dot_blocks_q8_0<BlockQ5_0>(w, a, n);
        case DType::Q8_0:
            return (float)dot_blocks_q8_0<BlockQ8_0>(w, a, n);
        case DType::Q4_K:
            return (float)detail::dot_q4_k_q8_k(w, a, n);
        case DType::Q5_K:
            return (float)detail::dot_q5_k_q8_k(w, a, n);
        case DType::Q6_K:
            return (float)detail::dot_q6_k_q8_k(w, a, n);
        case DType::Q8_K:
            return (float)detail::dot_q8_k_q8_k(w, a, n);
        case DType::Q4_1:
            return (float)detail::dot_q4_1_q8_0(w, a, n);
        case DType::Q5_1:
            return (float)detail::dot_q5_1_q8_0(w, a, n);
        case DType::IQ4_NL:
            return (float)detail::dot_iq4_nl_q8_0(w, a, n);
        case DType::Q2_K:
            return (float)detail::dot_q2_k_q8_k(w, a, n);
        case DType::Q3_K:
            return (float)detail::dot_q3_k_q8_k(w, a, n);
        case DType::IQ4_XS:
            return (float)detail::dot_iq4_xs_q8_k(w, a, n);
        case DType::I8:  // the int8 path (kernels/reference/int8.h) dots these, with their scales
        case DType::I32:
        case DType::I64:
            break;
    }
    unsupported("vec_dot");
    return 0;
}

}  // namespace tandem::ref
