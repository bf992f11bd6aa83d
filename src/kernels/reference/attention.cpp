#include "kernels/reference/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/fp16.h"

namespace tandem::ref {

void attention(const AttnJob& jb) {
    std::vector<double> s;
    for (int64_t t = 0; t < jb.n_tok; ++t) {
        const int64_t end = std::min(jb.p_end, jb.pos0 + t + 1);
        for (int64_t j = 0; j < jb.n_head; ++j) {
            const float* q = jb.q + t * jb.q_stride + j * jb.hd;
            float* o = jb.o + t * jb.o_stride + j * jb.hd;
            float* lse = jb.lse ? jb.lse + t * jb.n_head + j : nullptr;
            std::fill(o, o + jb.hd, 0.0f);
            if (end <= jb.p_begin) {
                if (lse) *lse = -INFINITY;
                continue;
            }
            s.assign((size_t)(end - jb.p_begin), 0.0);
            double mx = -INFINITY;
            for (int64_t p = jb.p_begin; p < end; ++p) {
                const uint16_t* kp = jb.k + jb.pages[p / jb.page_size] * jb.page_stride + p % jb.page_size;
                double d = 0;
                for (int64_t i = 0; i < jb.hd; ++i) d += (double)q[i] * fp16_to_fp32(kp[i * jb.page_size]);
                s[(size_t)(p - jb.p_begin)] = d * jb.scale;
                mx = std::max(mx, d * jb.scale);
            }
            double sum = 0;
            for (double& x : s) sum += (x = std::exp(x - mx));
            for (int64_t p = jb.p_begin; p < end; ++p) {
                const uint16_t* vp = jb.v + jb.pages[p / jb.page_size] * jb.page_stride + (p % jb.page_size) * jb.kv_stride;
                const double w = s[(size_t)(p - jb.p_begin)] / sum;
                for (int64_t i = 0; i < jb.hd; ++i) o[i] += (float)(w * fp16_to_fp32(vp[i]));
            }
            if (lse) *lse = (float)(mx + std::log(sum));
        }
    }
}

void merge_attention(const float* const* o_parts, const float* const* lse_parts, int n_parts, int64_t n_rows,
                     int64_t hd, float* out) {
    for (int64_t r = 0; r < n_rows; ++r) {
        float mx = -INFINITY;
        for (int i = 0; i < n_parts; ++i) mx = std::max(mx, lse_parts[i][r]);
        float* o = out + r * hd;
        std::fill(o, o + hd, 0.0f);
        if (mx == -INFINITY) continue;
        double wsum = 0;
        for (int i = 0; i < n_parts; ++i) wsum += std::exp((double)lse_parts[i][r] - mx);
        for (int i = 0; i < n_parts; ++i) {
            const float w = (float)(std::exp((double)lse_parts[i][r] - mx) / wsum);
            if (w == 0.0f) continue;
            const float* src = o_parts[i] + r * hd;
            for (int64_t d = 0; d < hd; ++d) o[d] += w * src[d];
        }
    }
}

}  // namespace tandem::ref
