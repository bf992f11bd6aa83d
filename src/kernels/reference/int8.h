// W8A8 (int8 weights x int8 activations) reference: the activation quantizers and the int8 matrix
// product of msModelSlim / compressed-tensors checkpoints. Weights are int8 rows [out][in] with a
// float scale per output channel; activations are quantized per token, either
//  - dynamic (W8A8_DYNAMIC, compressed-tensors): s = max|x| / 127, x_q = round(x / s),
//    y[r] = acc[r] * s * weight_scale[r]; or
//  - static (msModelSlim W8A8): x_q = clamp(round(x / input_scale + input_offset), -128, 127),
//    y[r] = (acc[r] + quant_bias[r]) * deq_scale[r]  (deq_scale = input_scale * weight_scale; the
//    offset's contribution input_offset * sum_k W[r][k] is folded into quant_bias).
// acc[r] = sum_k x_q[k] * W[r][k] in int32. round() is round-half-to-even (torch.round).
#pragma once

#include <cstddef>
#include <cstdint>

namespace tandem::ref {

// Returns s (0 for an all-zero row, whose x_q are then 0).
float quantize_act_dynamic(const float* x, int8_t* x_q, int64_t n);
void quantize_act_static(const float* x, int8_t* x_q, int64_t n, float input_scale, float input_offset);

// acc[r] = sum_k x_q[k] * w[r * row_stride + k] for r < n_rows.
void gemv_i8(const int8_t* w, size_t row_stride, int64_t n_rows, int64_t n, const int8_t* x_q, int32_t* acc);

// Per-channel symmetric weight quantization (how the synthetic checkpoints are made):
// scale = max|w| / 127, q = round(w / scale). Returns the scale.
float quantize_weight_row_i8(const float* w, int8_t* q, int64_t n);

}  // namespace tandem::ref
