#include "cli/bench_batch.h"

#include <chrono>

#include "core/rng.h"
#include "runtime/sampler.h"

namespace tandem::cli {

Result<BatchDecodeResult> bench_batched_decode(Forward& fwd, const HParams& h, int n_seq, int prompt_len, int gen,
                                               uint64_t seed) {
    constexpr int64_t kPage = 128;
    const int64_t pages_per_seq = (prompt_len + gen + kPage - 1) / kPage;
    KvPool pool = fwd.make_pool(kPage, pages_per_seq * n_seq);
    std::vector<std::vector<int32_t>> pages((size_t)n_seq), toks((size_t)n_seq);
    Rng rng(seed);
    std::vector<float> logits;
    for (int s = 0; s < n_seq; ++s) {
        for (int64_t p = 0; p < pages_per_seq; ++p) pages[(size_t)s].push_back((int32_t)(s * pages_per_seq + p));
        auto& t = toks[(size_t)s];
        for (int i = 0; i < prompt_len; ++i) t.push_back((int32_t)(rng.next() % (uint64_t)std::min<int64_t>(h.n_vocab, 150000)));
        SeqChunk c{t.data(), prompt_len, 0, pages[(size_t)s].data(), pages_per_seq, true};
        TANDEM_TRY(fwd.eval_batch(pool, {c}, logits));
        t.push_back(argmax(logits.data(), h.n_vocab));
    }
    fwd.stage_times() = {};
    std::vector<SeqChunk> chunks((size_t)n_seq);
    const auto t0 = std::chrono::steady_clock::now();
    for (int step = 0; step < gen; ++step) {
        for (int s = 0; s < n_seq; ++s) {
            auto& t = toks[(size_t)s];
            chunks[(size_t)s] = {t.data() + t.size() - 1, 1, (int64_t)t.size() - 1, pages[(size_t)s].data(),
                                 pages_per_seq, true};
        }
        TANDEM_TRY(fwd.eval_batch(pool, chunks, logits));
        for (int s = 0; s < n_seq; ++s) toks[(size_t)s].push_back(argmax(logits.data() + (size_t)s * h.n_vocab, h.n_vocab));
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    BatchDecodeResult r;
    r.aggregate_tok_s = (double)n_seq * gen / secs;
    r.step_ms = secs * 1e3 / gen;
    const StageTimes& st = fwd.stage_times();
    r.per_step = {st.attention / gen, st.router / gen, st.experts / gen, st.dense_ffn / gen, st.lm_head / gen, st.other / gen};
    return r;
}

}  // namespace tandem::cli
