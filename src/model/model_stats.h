// Sizes of a model that benchmarks and `inspect` report.
#pragma once

#include "model/model.h"

namespace tandem {

struct ModelStats {
    double total_bytes = 0;
    double n_params = 0;
    // read per generated token: all weights except the embedding table (one row) and the
    // routed experts (top-k of n_expert)
    double active_bytes = 0;
    double active_params = 0;
    double active_expert_bytes = 0;  // the routed experts' part of active_bytes
};

ModelStats model_stats(const Model& m);

}  // namespace tandem
