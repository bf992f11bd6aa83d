// Scalar reference implementations of the element-wise and row-wise ops of a transformer
// forward. Fast variants (issue: CPU kernels) are tested against these.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace tandem::ref {

// out = x / sqrt(mean(x^2) + eps) * w   (w may be null: no scale). out may alias x.
void rms_norm(const float* x, const float* w, int64_t n, float eps, float* out);

// RoPE frequencies of a model: plain (theta_i = pos * base^(-2i/head_dim)), or extended to a
// longer context by linear interpolation (theta_i / factor) or by YaRN (arXiv 2309.00071: the
// dimensions that turn many times within the original context keep their frequency, those that
// turn less than once are interpolated, a linear ramp in between; cos and sin scaled by
// 1 + 0.1 ln(factor)), as Hugging Face's `rope_scaling` and llama.cpp's `rope.scaling.*` define them.
struct RopeFreqs {
    float base = 10000.0f;
    float freq_scale = 1.0f;  // 1 / factor (linear, yarn)
    float ext_factor = 0.0f;  // yarn: 1 (the ramp's weight)
    float corr_low = 0.0f;    // yarn: pair index where the ramp starts (below: original frequency)
    float corr_high = 0.0f;   // and where it ends (above: interpolated)
    float mscale = 1.0f;      // applied to cos and sin (yarn: 1 + 0.1 ln(factor))

    static RopeFreqs plain(float base);
    static RopeFreqs linear(float base, float factor);
    // original context orig_ctx; beta_fast / beta_slow: turns within it that bound the ramp
    static RopeFreqs yarn(int64_t head_dim, float base, float factor, int64_t orig_ctx, float beta_fast = 32.0f,
                          float beta_slow = 1.0f);
};

// Rotary embedding, NeoX layout (pairs are (i, i + head_dim/2)), applied in place to n_heads
// heads of head_dim values at position pos. theta_i = pos * base^(-2i/head_dim), computed by
// repeated multiplication in float as llama.cpp does (then scaled as RopeFreqs says).
void rope_neox(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, float base);
void rope_neox(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, const RopeFreqs& f);
// rope_neox in two steps, the angles of a position shared by every head and layer: cs[i] =
// cos(theta_i), cs[head_dim / 2 + i] = sin(theta_i) (times mscale); then the rotation of n_heads
// heads by them.
void rope_neox_table(int64_t head_dim, int64_t pos, const RopeFreqs& f, float* cs);
void rope_neox_apply(float* x, int64_t n_heads, int64_t head_dim, const float* cs);

// In-place softmax over n values.
void softmax(float* x, int64_t n);

// out[i] = silu(gate[i]) * up[i]
void swiglu(const float* gate, const float* up, float* out, int64_t n);

// Converts one activation row of n floats to `type` (the weight's vec_dot_type).
void convert_activation(DType type, const float* x, void* out, int64_t n);

// y[r] = dot(row r of w, x_conv) for r in [0, n_rows): w rows of `n` elements of `w_type`
// stored `row_stride` bytes apart; x_conv already converted to vec_dot_type(w_type).
void gemv_rows(DType w_type, const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* x_conv,
               float* y);

}  // namespace tandem::ref
