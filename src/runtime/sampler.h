// Token sampling from logits: greedy, or temperature with top-k / top-p / min-p, seeded.
//
// The definition (tests/unit/sampler_test.cpp spells it out as a plain full sort):
//   x = logit / temperature; the candidates in order of x, best first, ties to the lower id;
//   top-k keeps the first k; with m the best x, each kept candidate weighs sampler_exp(x - m)
//   and S is their sum; min-p keeps those with x >= m + ln(min_p) (probability at least min_p
//   times the best's); top-p keeps the shortest prefix whose weights reach top_p * S (at least
//   one); the draw takes u in [0, 1) from the seeded generator and walks the kept prefix best
//   first, subtracting weights from u * (their sum) until it goes below zero.
#pragma once

#include <cstdint>
#include <vector>

#include "core/rng.h"

namespace tandem {

struct SamplerParams {
    float temperature = 0.0f;  // <= 0: greedy (argmax)
    int top_k = 0;             // 0: off
    float top_p = 1.0f;        // 1: off
    float min_p = 0.0f;        // 0: off
    uint64_t seed = 0;
};

// e^x for x <= 0 (the softmax weights), to a few ulp, 0 below -87; plain float arithmetic that
// compilers vectorize, the same on every machine with the same rounding of * and +.
float sampler_exp(float x);

class Sampler {
public:
    explicit Sampler(const SamplerParams& p) : p_(p), rng_(p.seed) {}
    int32_t sample(const float* logits, int64_t n_vocab);

private:
    // The walk past the head: `cum` comes in as the head's weight; returns the candidate of the
    // rest of the order (allowed ones: x at or above the min-p floor, not after lim_) at which
    // the running weight first exceeds `target` (inclusive: reaches it), and leaves the running
    // weight up to and including it in `cum`.
    int32_t walk_tail(double target, bool inclusive, double& cum);

    SamplerParams p_;
    Rng rng_;
    std::vector<float> x_;         // logit / temperature, by id
    std::vector<float> e_;         // weights by id (whole-vocabulary path)
    std::vector<int32_t> head_;    // the best candidates in order
    std::vector<int32_t> pick_;    // scratch
    std::vector<double> mass_;     // per bucket (tail walk)
    float x_floor_ = 0.0f;         // min-p's floor on x (-inf: off)
    float lim_x_ = 0.0f;           // top-p's last kept candidate (x, id) when past the head
    int32_t lim_id_ = -1;          // (-1: none)
    int64_t n_ = 0;
};

int32_t argmax(const float* logits, int64_t n);
// log(sum_i e^logits[i]) (the log-softmax's normaliser; -inf logits count 0), by the sampler's
// vector passes: ~0.1 ms over 152K where a scalar double exp took ~1.5 ms.
float log_sum_exp(const float* logits, int64_t n);
// The k best ids of logits[0, n) in order (larger first, ties to the lower id; NaN never).
void top_ids(const float* logits, int64_t n, int64_t k, std::vector<int32_t>& out);

}  // namespace tandem
