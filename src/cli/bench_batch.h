// In-process batched decode for `tandem bench --batch N,...`: N sequences decoding together
// through Forward::eval_batch over a shared paged KV pool, as the server's engine does.
#pragma once

#include <cstdint>

#include "model/forward.h"

namespace tandem::cli {

struct BatchDecodeResult {
    double aggregate_tok_s = 0;   // n_seq * gen / decode time
    double step_ms = 0;           // mean time of one decode step
    StageTimes per_step;          // seconds per step, by stage
};

// Prefills n_seq random prompts of prompt_len tokens, then decodes gen steps of n_seq tokens.
Result<BatchDecodeResult> bench_batched_decode(Forward& fwd, const HParams& h, int n_seq, int prompt_len, int gen,
                                               uint64_t seed);

}  // namespace tandem::cli
