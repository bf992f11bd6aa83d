#include "cli/bench_batch.h"

#include <chrono>
#include <utility>

#include "core/rng.h"
#include "runtime/sampler.h"

namespace tandem::cli {

namespace {

// One batch size's sequences: their pages in a pool of their own and their tokens so far
struct Group {
    Group(int n, KvPool p) : n_seq(n), pool(std::move(p)) {}
    int n_seq;
    KvPool pool;
    std::vector<std::vector<int32_t>> pages, toks;
    std::vector<SeqChunk> chunks;
    double secs = 0;
    StageTimes stages;
};

StageTimes& operator+=(StageTimes& a, const StageTimes& b) {
    a.attention += b.attention;
    a.router += b.router;
    a.experts += b.experts;
    a.dense_ffn += b.dense_ffn;
    a.lm_head += b.lm_head;
    a.other += b.other;
    return a;
}

}  // namespace

Result<std::vector<BatchDecodeResult>> bench_batched_decode(Forward& fwd, const HParams& h, const std::vector<int32_t>& n_seqs,
                                                            int prompt_len, int gen, uint64_t seed) {
    constexpr int64_t kPage = 128;
    const int64_t pages_per_seq = (prompt_len + gen + kPage - 1) / kPage;
    Rng rng(seed);
    std::vector<float> logits;
    std::vector<Group> groups;
    groups.reserve(n_seqs.size());
    for (int32_t n_seq : n_seqs) {
        Group& g = groups.emplace_back(n_seq, fwd.make_pool(kPage, pages_per_seq * n_seq));
        g.pages.resize((size_t)n_seq);
        g.toks.resize((size_t)n_seq);
        g.chunks.resize((size_t)n_seq);
        for (int s = 0; s < n_seq; ++s) {
            for (int64_t p = 0; p < pages_per_seq; ++p) g.pages[(size_t)s].push_back((int32_t)(s * pages_per_seq + p));
            auto& t = g.toks[(size_t)s];
            for (int i = 0; i < prompt_len; ++i)
                t.push_back((int32_t)(rng.next() % (uint64_t)std::min<int64_t>(h.n_vocab, 150000)));
            SeqChunk c{t.data(), prompt_len, 0, g.pages[(size_t)s].data(), pages_per_seq, true};
            TANDEM_TRY(fwd.eval_batch(g.pool, {c}, logits));
            t.push_back(argmax(logits.data(), h.n_vocab));
        }
    }
    for (int step = 0; step < gen; ++step)
        for (Group& g : groups) {
            for (int s = 0; s < g.n_seq; ++s) {
                auto& t = g.toks[(size_t)s];
                g.chunks[(size_t)s] = {t.data() + t.size() - 1, 1, (int64_t)t.size() - 1, g.pages[(size_t)s].data(),
                                       pages_per_seq, true};
            }
            fwd.stage_times() = {};
            const auto t0 = std::chrono::steady_clock::now();
            TANDEM_TRY(fwd.eval_batch(g.pool, g.chunks, logits));
            g.secs += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            g.stages += fwd.stage_times();
            for (int s = 0; s < g.n_seq; ++s)
                g.toks[(size_t)s].push_back(argmax(logits.data() + (size_t)s * h.n_vocab, h.n_vocab));
        }
    std::vector<BatchDecodeResult> out;
    for (const Group& g : groups) {
        BatchDecodeResult r;
        r.n_seq = g.n_seq;
        r.aggregate_tok_s = (double)g.n_seq * gen / g.secs;
        r.step_ms = g.secs * 1e3 / gen;
        const StageTimes& st = g.stages;
        r.per_step = {st.attention / gen, st.router / gen, st.experts / gen, st.dense_ffn / gen, st.lm_head / gen, st.other / gen};
        out.push_back(r);
    }
    return out;
}

}  // namespace tandem::cli
