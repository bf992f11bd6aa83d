// In-process batched decode for `tandem bench --batch N,...`: N sequences decoding together
// through Forward::eval_batch over a shared paged KV pool, as the server's engine does.
#pragma once

#include <cstdint>
#include <vector>

#include "model/forward.h"

namespace tandem::cli {

struct BatchDecodeResult {
    int n_seq = 0;
    double aggregate_tok_s = 0;   // n_seq * gen / decode time
    double step_ms = 0;           // mean time of one decode step
    StageTimes per_step;          // seconds per step, by stage
};

// For each count N in n_seqs: prefills N random prompts of prompt_len tokens; then gen rounds in
// each of which every count decodes one step of its N tokens. The counts take turns step by step,
// so that a drift of the machine's speed (a VM's memory bandwidth moves by tens of percent over
// seconds) weighs on all of them alike and their ratios stay meaningful.
Result<std::vector<BatchDecodeResult>> bench_batched_decode(Forward& fwd, const HParams& h, const std::vector<int32_t>& n_seqs,
                                                            int prompt_len, int gen, uint64_t seed);

}  // namespace tandem::cli
