#include "kernels/reference/int8.h"

#include <algorithm>
#include <cmath>

namespace tandem::ref {
namespace {

int8_t round_clamp(float v, float lo, float hi) { return (int8_t)std::clamp(std::nearbyint(v), lo, hi); }

float absmax(const float* x, int64_t n) {
    float m = 0.0f;
    for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
    return m;
}

}  // namespace

float quantize_act_dynamic(const float* x, int8_t* x_q, int64_t n) {
    const float s = absmax(x, n) / 127.0f;
    for (int64_t i = 0; i < n; ++i) x_q[i] = s > 0.0f ? round_clamp(x[i] / s, -127.0f, 127.0f) : 0;
    return s;
}

void quantize_act_static(const float* x, int8_t* x_q, int64_t n, float input_scale, float input_offset) {
    for (int64_t i = 0; i < n; ++i) x_q[i] = round_clamp(x[i] / input_scale + input_offset, -128.0f, 127.0f);
}

void gemv_i8(const int8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const int8_t* x_q, int32_t* acc) {
    for (int64_t r = 0; r < n_rows; ++r) {
        const int8_t* row = w + (size_t)r * row_stride;
        int32_t s = 0;
        for (int64_t k = 0; k < n; ++k) s += (int32_t)x_q[k] * (int32_t)row[k];
        acc[r] = s;
    }
}

float quantize_weight_row_i8(const float* w, int8_t* q, int64_t n) { return quantize_act_dynamic(w, q, n); }

}  // namespace tandem::ref
