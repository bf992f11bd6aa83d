// Token sampling from logits: greedy, or temperature with top-k / top-p / min-p, seeded.
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

class Sampler {
public:
    explicit Sampler(const SamplerParams& p) : p_(p), rng_(p.seed) {}
    int32_t sample(const float* logits, int64_t n_vocab);

private:
    SamplerParams p_;
    Rng rng_;
    struct Cand {
        float x;     // logit / temperature: the order
        float e;     // exp(x - the best x)
        int32_t id;
    };
    std::vector<Cand> cand_;
};

int32_t argmax(const float* logits, int64_t n);

}  // namespace tandem
