// W8A8 linears on the CPU: int8 activations (quantized per token, dynamically or with the
// layer's static scale and offset) times int8 weights, exact int32 sums from the kernel table's
// gemv_i8, then each row's dequantization (model.h, Int8Linear).
#include <algorithm>

#include "kernels/cpu/kernels.h"
#include "kernels/reference/int8.h"
#include "model/forward.h"

namespace tandem {

void Forward::quantize_i8(const Int8Linear& q, const float* x, int64_t n, int64_t in) {
    int8_t* xq = grow(i8_x_, (size_t)(n * in));
    float* xs = grow(i8_s_, (size_t)n);
    int32_t* xsum = grow(i8_sum_, (size_t)n);
    for_tokens(n, [&](int64_t t) {
        int8_t* row = xq + t * in;
        if (q.static_act) {
            ref::quantize_act_static(x + t * in, row, in, q.input_scale, q.input_offset);
            xs[t] = 1.0f;
        } else {
            xs[t] = ref::quantize_act_dynamic(x + t * in, row, in);
        }
        int32_t s = 0;
        if (!q.zero.empty())
            for (int64_t i = 0; i < in; ++i) s += row[i];
        xsum[t] = s;
    });
}

void Forward::rows_i8(const Tensor& w, int64_t row, int64_t nr, const int8_t* const* xq, const float* xs,
                      const int32_t* xsum, int64_t s0, int64_t s1, float* y, int64_t ldy) {
    const Int8Linear& q = *w.int8;
    const cpu::GemvI8Fn gemv = cpu::kernels().gemv_i8;
    constexpr int64_t kChunk = 64;  // rows per pass: their int8 weights stay in L1/L2 for every token
    int32_t acc[kChunk];
    for (int64_t c0 = 0; c0 < nr; c0 += kChunk) {
        const int64_t nc = std::min(kChunk, nr - c0);
        const auto* wr = reinterpret_cast<const int8_t*>(w.row(row + c0));
        for (int64_t s = s0; s < s1; ++s) {
            gemv(wr, w.row_bytes, nc, w.ne[0], xq[s], acc);
            float* ys = y + s * ldy + c0;
            for (int64_t r = 0; r < nc; ++r) {
                const size_t i = (size_t)(row + c0 + r);
                if (q.static_act) ys[r] = (float)((int64_t)acc[r] + q.bias[i]) * q.scale[i];
                else if (q.zero.empty()) ys[r] = (float)acc[r] * xs[s] * q.scale[i];
                else ys[r] = ((float)acc[r] - q.zero[i] * (float)xsum[s]) * xs[s] * q.scale[i];
            }
        }
    }
}

void Forward::linear_i8(const Tensor& w, int64_t row0, int64_t n_rows, const float* x, int64_t n, float* y) {
    const int64_t in = w.ne[0];
    quantize_i8(*w.int8, x, n, in);
    const int8_t** xq = grow(i8_ptrs_, (size_t)n);
    for (int64_t t = 0; t < n; ++t) xq[t] = i8_x_.data() + t * in;
    pool_.parallel_for(n_rows, 16, [&](int64_t r0, int64_t r1) {
        rows_i8(w, row0 + r0, r1 - r0, xq, i8_s_.data(), i8_sum_.data(), 0, n, y + r0, n_rows);
    });
}

}  // namespace tandem
