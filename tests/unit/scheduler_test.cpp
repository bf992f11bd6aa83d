// PageManager (ref counts, prefix cache, LRU) and Scheduler (continuous batching, chunked
// prefill, FCFS, preemption) tested as pure logic, without a model.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>
#include <set>

#include "runtime/page_manager.h"
#include "serve/scheduler.h"

namespace tandem {
namespace {

std::vector<int32_t> iota_tokens(int64_t n, int32_t start = 0) {
    std::vector<int32_t> t((size_t)n);
    for (int64_t i = 0; i < n; ++i) t[(size_t)i] = start + (int32_t)i;
    return t;
}

TEST(PageManager, AllocatesEveryPageOnceAndReusesReleased) {
    PageManager pm(4, 16);
    std::set<int32_t> got;
    for (int i = 0; i < 4; ++i) got.insert(*pm.allocate());
    EXPECT_EQ(got.size(), 4u);
    EXPECT_FALSE(pm.allocate().has_value());
    EXPECT_EQ(pm.n_used(), 4);
    pm.release(2);
    EXPECT_EQ(pm.n_available(), 1);
    EXPECT_EQ(*pm.allocate(), 2);
    pm.retain(2);
    pm.release(2);
    EXPECT_EQ(pm.n_used(), 4);  // still one reference
}

TEST(PageManager, PublishedPagesAreMatchedByPrefixAndEvictedLeastRecentlyUsed) {
    const int64_t ps = 4;
    PageManager pm(3, ps);
    const auto toks = iota_tokens(12);
    std::vector<int32_t> pages;
    uint64_t h = PageManager::kRootHash;
    for (int i = 0; i < 3; ++i) {
        pages.push_back(*pm.allocate());
        h = PageManager::chain_hash(h, toks.data() + i * ps, ps);
        EXPECT_TRUE(pm.publish(pages.back(), h, toks.data() + i * ps));
    }
    for (int32_t p : pages) pm.release(p);
    EXPECT_EQ(pm.n_used(), 0);
    EXPECT_EQ(pm.n_cached(), 3);

    std::vector<uint64_t> hashes;
    auto m = pm.match_prefix(toks.data(), 11, 2, hashes);  // at most 2 pages asked
    ASSERT_EQ(m.size(), 2u);
    EXPECT_EQ(m[0], pages[0]);
    EXPECT_EQ(m[1], pages[1]);
    EXPECT_EQ(pm.ref_count(pages[0]), 1);
    EXPECT_EQ(pm.n_cached(), 1);

    // same page contents after a different first page: no match (the hash is chained)
    auto other = toks;
    other[0] = 999;
    EXPECT_TRUE(pm.match_prefix(other.data(), 12, 3, hashes).empty());

    // eviction takes the unreferenced cached page; the referenced ones survive
    auto p = pm.allocate();
    ASSERT_TRUE(p.has_value());
    EXPECT_EQ(*p, pages[2]);
    EXPECT_FALSE(pm.allocate().has_value());
    pm.release(*p);  // unpublished by the eviction: back to the free list
    EXPECT_EQ(pm.n_cached(), 0);
    EXPECT_EQ(pm.match_prefix(toks.data(), 12, 3, hashes).size(), 2u);  // first two still cached
}

TEST(PageManager, DisabledPrefixCacheNeverMatches) {
    PageManager pm(2, 4, /*prefix_cache=*/false);
    const auto toks = iota_tokens(8);
    int32_t p = *pm.allocate();
    EXPECT_FALSE(pm.publish(p, PageManager::chain_hash(PageManager::kRootHash, toks.data(), 4), toks.data()));
    pm.release(p);
    std::vector<uint64_t> hashes;
    EXPECT_TRUE(pm.match_prefix(toks.data(), 8, 2, hashes).empty());
    EXPECT_EQ(pm.n_available(), 2);
}

// Drives a scheduler like the engine does: each step's sequences that want logits get one new
// token (a deterministic function of their length); a sequence stops at max_len.
struct Sim {
    PageManager pm;
    Scheduler sched;
    std::vector<std::unique_ptr<Sequence>> seqs;
    std::vector<Sequence*> finished;
    int64_t next_id = 0;

    Sim(int64_t n_pages, int64_t ps, SchedulerConfig cfg) : pm(n_pages, ps), sched(cfg, pm) {}

    Sequence* add(std::vector<int32_t> prompt, int64_t max_new) {
        auto s = std::make_unique<Sequence>();
        s->id = next_id++;
        s->n_prompt = (int64_t)prompt.size();
        s->tokens = std::move(prompt);
        auto ml = sched.max_len_for(s->n_prompt, max_new);
        EXPECT_TRUE(ml.ok());
        s->max_len = *ml;
        EXPECT_TRUE(sched.add(s.get()).ok());
        seqs.push_back(std::move(s));
        return seqs.back().get();
    }

    StepPlan step() {
        StepPlan plan = sched.schedule();
        check_invariants(plan);
        std::vector<Sequence*> sample;
        for (const StepItem& it : plan.items)
            if (it.want_logits()) sample.push_back(it.seq);
        sched.complete(plan);
        for (Sequence* s : sample) {
            s->tokens.push_back((int32_t)(1000 + s->tokens.size()));
            if ((int64_t)s->tokens.size() >= s->max_len) {
                sched.remove(s);
                finished.push_back(s);
            }
        }
        return plan;
    }

    void check_invariants(const StepPlan& plan) {
        const auto& c = sched.config();
        EXPECT_LE(plan.n_tokens(), c.step_tokens);
        std::set<Sequence*> in_step;
        for (const StepItem& it : plan.items) {
            EXPECT_TRUE(in_step.insert(it.seq).second) << "a sequence twice in one step";
            EXPECT_GT(it.n, 0);
            EXPECT_LE(it.n, c.chunk_size);
            if (it.seq->max_chunk > 0) {
                EXPECT_LE(it.n, it.seq->max_chunk);
            }
            if (!it.seq->match_prefix) {
                EXPECT_EQ(it.seq->n_prefix_hit, 0);
            }
            EXPECT_LE(it.seq->n_cached + it.n, (int64_t)it.seq->pages.size() * pm.page_size());
            EXPECT_LE(it.seq->n_cached + it.n, (int64_t)it.seq->tokens.size());
        }
        // every page referenced by running sequences is counted once per reference
        std::map<int32_t, int> refs;
        int64_t running = 0;
        for (auto& s : seqs) {
            if (s->running) ++running;
            for (int32_t p : s->pages) ++refs[p];
        }
        EXPECT_EQ(running, sched.n_running());
        EXPECT_LE(running, c.max_batch_size);
        for (auto [p, n] : refs) EXPECT_EQ(pm.ref_count(p), n) << "page " << p;
        EXPECT_EQ((int64_t)refs.size(), pm.n_used());
    }
};

TEST(Scheduler, DecodeTokensAndPrefillChunksShareAStep) {
    SchedulerConfig cfg;
    cfg.max_batch_size = 4;
    cfg.step_tokens = 64;
    cfg.chunk_size = 32;
    Sim sim(64, 16, cfg);
    Sequence* a = sim.add(iota_tokens(5), 100);
    StepPlan p1 = sim.step();
    ASSERT_EQ(p1.items.size(), 1u);
    EXPECT_EQ(p1.items[0].n, 5);
    Sequence* b = sim.add(iota_tokens(100, 500), 10);
    StepPlan p2 = sim.step();
    ASSERT_EQ(p2.items.size(), 2u);
    EXPECT_EQ(p2.items[0].seq, a);  // decode first
    EXPECT_EQ(p2.items[0].n, 1);
    EXPECT_EQ(p2.items[1].seq, b);
    EXPECT_EQ(p2.items[1].n, 32);  // one chunk
    sim.step();
    sim.step();
    StepPlan p5 = sim.step();  // b's last 4 prompt tokens: its logits are wanted
    ASSERT_EQ(p5.items.size(), 2u);
    EXPECT_EQ(p5.items[1].n, 4);
    EXPECT_EQ(b->n_generated(), 1);
    EXPECT_FALSE(b->prefilling());
}

TEST(Scheduler, FirstComeFirstServedWithABoundedBatch) {
    SchedulerConfig cfg;
    cfg.max_batch_size = 1;
    Sim sim(64, 16, cfg);
    Sequence* a = sim.add(iota_tokens(8), 3);
    Sequence* b = sim.add(iota_tokens(8, 100), 3);
    while (sim.finished.empty()) {
        StepPlan p = sim.step();
        for (const StepItem& it : p.items) EXPECT_EQ(it.seq, a);
    }
    EXPECT_EQ(sim.finished[0], a);
    while (sim.finished.size() < 2) sim.step();
    EXPECT_EQ(sim.finished[1], b);
    EXPECT_EQ(sim.pm.n_used(), 0);
}

TEST(Scheduler, RefusesWhatCanNeverFitAndAFullQueue) {
    SchedulerConfig cfg;
    cfg.max_seq_len = 100;
    cfg.max_queue = 1;
    PageManager pm(4, 16);  // 64 positions
    Scheduler s(cfg, pm);
    EXPECT_FALSE(s.max_len_for(64, 10).ok());
    EXPECT_FALSE(s.max_len_for(0, 10).ok());
    EXPECT_EQ(*s.max_len_for(10, 1000), 64);  // clamped to the pool
    Sequence a, b;
    a.tokens = iota_tokens(4);
    b.tokens = iota_tokens(4);
    EXPECT_TRUE(s.add(&a).ok());
    EXPECT_FALSE(s.add(&b).ok());
}

TEST(Scheduler, PreemptsTheLatestWhenPagesRunOutAndResumesByRecompute) {
    SchedulerConfig cfg;
    cfg.max_batch_size = 4;
    const int64_t ps = 4;
    Sim sim(8, ps, cfg);  // 32 positions for everyone
    Sequence* a = sim.add(iota_tokens(6), 20);
    Sequence* b = sim.add(iota_tokens(6, 100), 20);
    bool preempted_b = false;
    for (int i = 0; i < 200 && sim.finished.size() < 2; ++i) {
        StepPlan p = sim.step();
        for (Sequence* s : p.preempted) {
            EXPECT_EQ(s, b);  // the later one gives way
            preempted_b = true;
        }
    }
    EXPECT_TRUE(preempted_b);
    ASSERT_EQ(sim.finished.size(), 2u);
    EXPECT_EQ(sim.finished[0], a);
    EXPECT_EQ(a->n_generated(), 20);
    EXPECT_EQ(b->n_generated(), 20);
    // the recomputed tokens are the same as if it had never been interrupted
    for (int64_t i = 0; i < b->n_generated(); ++i) EXPECT_EQ(b->tokens[(size_t)(6 + i)], 1000 + 6 + i);
    EXPECT_EQ(sim.pm.n_used(), 0);
}

TEST(Scheduler, RepeatedPrefixComesFromTheCache) {
    SchedulerConfig cfg;
    Sim sim(64, 16, cfg);
    auto prompt = iota_tokens(100);
    Sequence* a = sim.add(prompt, 2);
    while (sim.finished.empty()) sim.step();
    EXPECT_EQ(a->n_prefix_hit, 0);
    prompt.resize(90);
    prompt.push_back(7);  // differs after 90 tokens: 5 full pages (80 tokens) shared
    Sequence* b = sim.add(prompt, 2);
    StepPlan p = sim.step();
    EXPECT_EQ(b->n_prefix_hit, 80);
    ASSERT_EQ(p.items.size(), 1u);
    EXPECT_EQ(p.items[0].n, 11);
    auto same = iota_tokens(100);  // identical prompt: all but the last page's worth (96 = 6 pages)
    Sequence* c = sim.add(same, 2);
    while (sim.finished.size() < 3) sim.step();
    EXPECT_EQ(c->n_prefix_hit, 96);
    EXPECT_EQ(sim.pm.n_used(), 0);
    EXPECT_GT(sim.pm.n_cached(), 0);
}

TEST(Scheduler, SamePromptWaitsForTheSharedPagesInsteadOfComputingThemTwice) {
    SchedulerConfig cfg;
    cfg.chunk_size = 32;
    Sim sim(64, 16, cfg);
    const auto prompt = iota_tokens(100);
    Sequence* a = sim.add(prompt, 2);
    Sequence* b = sim.add(prompt, 2);  // n = 2 of one request: both arrive together
    int64_t b_computed = 0;
    for (int i = 0; i < 50 && sim.finished.size() < 2; ++i) {
        StepPlan p = sim.step();
        for (const StepItem& it : p.items)
            if (it.seq == b) b_computed += it.n;
    }
    ASSERT_EQ(sim.finished.size(), 2u);
    EXPECT_EQ(a->n_prefix_hit, 0);
    EXPECT_EQ(b->n_prefix_hit, 96);      // every full page but the one holding the last token
    // its prompt's last 4 tokens (whose step samples the first new token), then one decode token
    EXPECT_EQ(b_computed, (100 - 96) + (2 - 1));
    EXPECT_EQ(sim.pm.n_used(), 0);

    // sharing only a first page: the newcomer waits for that page, not for the whole prompt
    auto long_prompt = iota_tokens(200, 500);
    std::vector<int32_t> other(long_prompt.begin(), long_prompt.begin() + 20);
    for (int i = 0; i < 30; ++i) other.push_back(7 + i);
    Sequence* d = sim.add(long_prompt, 2);
    Sequence* c = sim.add(other, 2);
    StepPlan p1 = sim.step();
    ASSERT_EQ(p1.items.size(), 1u);
    EXPECT_EQ(p1.items[0].seq, d);
    StepPlan p2 = sim.step();
    ASSERT_EQ(p2.items.size(), 2u);
    EXPECT_EQ(p2.items[1].seq, c);
    EXPECT_EQ(c->n_prefix_hit, 16);
    EXPECT_TRUE(d->prefilling());

    // one that computes every prompt position (prompt logprobs) neither waits nor matches
    Sequence* e = sim.add(prompt, 2);
    Sequence* f = sim.add(prompt, 2);
    e->match_prefix = false;
    e->max_chunk = 8;
    f->match_prefix = false;
    StepPlan p3 = sim.step();
    bool saw_e = false, saw_f = false;
    for (const StepItem& it : p3.items) {
        if (it.seq == e) {
            saw_e = true;
            EXPECT_EQ(it.n, 8);
        }
        if (it.seq == f) {
            saw_f = true;
            EXPECT_EQ(it.n, 32);
        }
    }
    EXPECT_TRUE(saw_e && saw_f);
    while (sim.finished.size() < 6) sim.step();
    EXPECT_EQ(e->n_prefix_hit, 0);
    EXPECT_EQ(f->n_prefix_hit, 0);
    EXPECT_EQ(sim.pm.n_used(), 0);
}

TEST(Scheduler, RandomWorkloadKeepsInvariantsAndFinishesEverything) {
    std::mt19937 rng(7);
    for (int round = 0; round < 20; ++round) {
        SchedulerConfig cfg;
        cfg.max_batch_size = 1 + (int64_t)(rng() % 6);
        cfg.chunk_size = 1 + (int64_t)(rng() % 40);
        cfg.step_tokens = cfg.max_batch_size + (int64_t)(rng() % 64);
        cfg.max_seq_len = 200;
        cfg.max_queue = 1000;
        const int64_t ps = 1 + (int64_t)(rng() % 16);
        const int64_t n_pages = (cfg.max_seq_len + ps - 1) / ps + (int64_t)(rng() % 20);
        Sim sim(n_pages, ps, cfg);
        const int n_req = 30;
        std::vector<int32_t> shared = iota_tokens(60);
        int added = 0, cancelled = 0;
        for (int step = 0; step < 20000 && (int)sim.finished.size() + cancelled < n_req; ++step) {
            if (added < n_req && rng() % 3 == 0) {
                std::vector<int32_t> prompt(shared.begin(), shared.begin() + (long)(rng() % 60));
                for (int i = 0, extra = 1 + (int)(rng() % 80); i < extra; ++i) prompt.push_back((int32_t)(rng() % 50));
                Sequence* s = sim.add(prompt, 1 + (int64_t)(rng() % 60));
                if (rng() % 5 == 0) {  // as the engine makes one that wants its prompt's logprobs
                    s->match_prefix = false;
                    s->max_chunk = 1 + (int64_t)(rng() % 8);
                }
                ++added;
            }
            if (rng() % 50 == 0) {  // cancel a random unfinished sequence
                for (auto& s : sim.seqs)
                    if ((int64_t)s->tokens.size() < s->max_len && s->max_len > 0) {
                        sim.sched.remove(s.get());
                        s->max_len = -1;  // marks cancelled
                        ++cancelled;
                        break;
                    }
            }
            sim.step();
        }
        EXPECT_EQ((int)sim.finished.size() + cancelled, n_req) << "round " << round;
        EXPECT_EQ(sim.sched.n_running(), 0);
        EXPECT_EQ(sim.sched.n_waiting(), 0);
        EXPECT_EQ(sim.pm.n_used(), 0);
        for (Sequence* s : sim.finished)
            for (int64_t i = s->n_prompt; i < (int64_t)s->tokens.size(); ++i)
                EXPECT_EQ(s->tokens[(size_t)i], 1000 + i);
    }
}

}  // namespace
}  // namespace tandem
