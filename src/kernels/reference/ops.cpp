#include "kernels/reference/ops.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>
#include <cstring>

#include "kernels/reference/quants.h"

namespace tandem::ref {

void rms_norm(const float* x, const float* w, int64_t n, float eps, float* out) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += (double)x[i] * (double)x[i];
    const float scale = 1.0f / std::sqrt((float)(sum / (double)n) + eps);
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * (w ? w[i] : 1.0f);
}

RopeFreqs RopeFreqs::plain(float base) {
    RopeFreqs f;
    f.base = base;
    return f;
}

RopeFreqs RopeFreqs::linear(float base, float factor) {
    RopeFreqs f = plain(base);
    f.freq_scale = 1.0f / factor;
    return f;
}

namespace {
// The pair index i at which a dimension turns `turns` times over n_ctx positions:
// n_ctx * base^(-2i/d) = 2 pi turns, i.e. i = d ln(n_ctx / (2 pi turns)) / (2 ln base).
float yarn_pair_for_turns(int64_t head_dim, int64_t n_ctx, float turns, float base) {
    return (float)head_dim * std::log((float)n_ctx / (turns * 2.0f * std::numbers::pi_v<float>)) / (2.0f * std::log(base));
}
}  // namespace

RopeFreqs RopeFreqs::yarn(int64_t head_dim, float base, float factor, int64_t orig_ctx, float beta_fast,
                          float beta_slow) {
    RopeFreqs f = linear(base, factor);
    f.ext_factor = 1.0f;
    f.corr_low = std::max(0.0f, std::floor(yarn_pair_for_turns(head_dim, orig_ctx, beta_fast, base)));
    f.corr_high = std::min((float)(head_dim - 1), std::ceil(yarn_pair_for_turns(head_dim, orig_ctx, beta_slow, base)));
    f.mscale = 1.0f + 0.1f * std::log(1.0f / f.freq_scale);
    return f;
}

void rope_neox_table(int64_t head_dim, int64_t pos, const RopeFreqs& f, float* cs) {
    const int64_t half = head_dim / 2;
    const float theta_scale = std::pow(f.base, -2.0f / (float)head_dim);
    float theta = (float)pos;  // the original frequency's angle (extrapolated)
    for (int64_t i = 0; i < half; ++i) {
        float t = f.freq_scale * theta;  // interpolated
        if (f.ext_factor != 0.0f) {
            // 1 below the ramp (original frequency), 0 above it (interpolated)
            const float y = ((float)i - f.corr_low) / std::max(0.001f, f.corr_high - f.corr_low);
            const float mix = (1.0f - std::min(1.0f, std::max(0.0f, y))) * f.ext_factor;
            t = t * (1.0f - mix) + theta * mix;
        }
        cs[i] = std::cos(t) * f.mscale;
        cs[half + i] = std::sin(t) * f.mscale;
        theta *= theta_scale;
    }
}

void rope_neox_apply(float* x, int64_t n_heads, int64_t head_dim, const float* cs) {
    const int64_t half = head_dim / 2;
    for (int64_t h = 0; h < n_heads; ++h) {
        float* v = x + h * head_dim;
        for (int64_t i = 0; i < half; ++i) {
            const float c = cs[i], s = cs[half + i];
            const float x0 = v[i], x1 = v[i + half];
            v[i] = x0 * c - x1 * s;
            v[i + half] = x0 * s + x1 * c;
        }
    }
}

void rope_neox(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, const RopeFreqs& f) {
    std::vector<float> cs((size_t)head_dim);
    rope_neox_table(head_dim, pos, f, cs.data());
    rope_neox_apply(x, n_heads, head_dim, cs.data());
}

void rope_neox(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, float base) {
    rope_neox(x, n_heads, head_dim, pos, RopeFreqs::plain(base));
}

void softmax(float* x, int64_t n) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        x[i] = std::exp(x[i] - mx);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

void convert_activation(DType type, const float* x, void* out, int64_t n) {
    if (type == DType::F32) {
        std::memcpy(out, x, (size_t)n * sizeof(float));
        return;
    }
    quantize_row(type, x, out, n);
}

void gemv_rows(DType w_type, const uint8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const void* x_conv,
               float* y) {
    for (int64_t r = 0; r < n_rows; ++r) y[r] = vec_dot(w_type, w + (size_t)r * row_stride, x_conv, n);
}

}  // namespace tandem::ref
