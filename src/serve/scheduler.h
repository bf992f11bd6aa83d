// Continuous batching: which tokens of which sequences go into the next forward step.
//
// Each step carries the next token of every running sequence that is generating, then prefill
// chunks (at most chunk_size tokens each) of sequences still reading their prompt, up to a token
// budget per step. Waiting sequences are admitted in arrival order (first come, first served: a
// later request never overtakes the head of the queue, so waiting is bounded) while there is room
// in the batch and pages for them. When a generating sequence needs a page and none is left, the
// most recently admitted other sequence is preempted: its pages are released (full pages stay in
// the prefix cache) and it goes back to the head of the queue, to be recomputed when it returns.
// A waiting sequence whose prompt shares full pages with one that is still computing them waits
// for them instead of computing them a second time (n choices of one prompt, clients that send
// the same long system prompt at once): it then takes them from the prefix cache.
//
// Pure logic over token ids and page numbers (no model, no threads), so it is unit-tested alone.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "core/status.h"
#include "runtime/page_manager.h"

namespace tandem {

struct SchedulerConfig {
    int64_t max_batch_size = 4;  // sequences running at once
    int64_t step_tokens = 512;   // tokens per forward step (decode tokens + prefill chunks)
    int64_t chunk_size = 512;    // most prompt tokens of one sequence per step
    int64_t max_seq_len = 4096;  // positions per sequence (the model's context)
    int64_t max_queue = 64;      // waiting sequences before new ones are refused
};

struct Sequence {
    int64_t id = 0;
    std::vector<int32_t> tokens;  // prompt, then generated ids; the last one is not in the cache yet
    int64_t n_prompt = 0;
    int64_t max_len = 0;          // stop generating at this many tokens (prompt + generated)
    int64_t n_cached = 0;         // positions [0, n_cached) have keys/values in `pages`
    std::vector<int32_t> pages;   // block table
    std::vector<uint64_t> hashes; // chain hashes of pages[0..hashes.size()) (published or matched)
    int64_t n_prefix_hit = 0;     // prompt tokens taken from the prefix cache (first admission)
    int n_preempted = 0;
    bool running = false;
    bool match_prefix = true;     // false: every prompt position is computed (prompt logprobs need their logits)
    int64_t max_chunk = 0;        // > 0: at most this many tokens per step (bounds its logits rows)

    int64_t n_generated() const { return (int64_t)tokens.size() - n_prompt; }
    bool prefilling() const { return n_cached + 1 < (int64_t)tokens.size(); }
};

struct StepItem {
    Sequence* seq;
    int64_t n;  // tokens seq->tokens[seq->n_cached, n_cached + n) go into this step
    bool want_logits() const { return seq->n_cached + n == (int64_t)seq->tokens.size(); }
};

struct StepPlan {
    std::vector<StepItem> items;
    std::vector<Sequence*> preempted;  // went back to the queue in this step
    int64_t n_tokens() const {
        int64_t n = 0;
        for (const StepItem& it : items) n += it.n;
        return n;
    }
};

class Scheduler {
public:
    Scheduler(SchedulerConfig config, PageManager& pages);

    // Why a prompt of n_prompt tokens can never run (too long for the context or for the whole
    // pool), or ok; then the largest max_len it may have.
    Result<int64_t> max_len_for(int64_t n_prompt, int64_t max_new_tokens) const;
    // Queues a sequence (its tokens, n_prompt and max_len set). Error when the queue is full.
    Status add(Sequence* seq);
    // The next step; empty when there is nothing to do.
    StepPlan schedule();
    // After the step ran: advances n_cached and publishes the pages that became full.
    void complete(const StepPlan& plan);
    // Removes a sequence (finished or cancelled) wherever it is and releases its pages.
    void remove(Sequence* seq);

    int64_t n_running() const { return (int64_t)running_.size(); }
    int64_t n_waiting() const { return (int64_t)waiting_.size(); }
    const SchedulerConfig& config() const { return config_; }

private:
    bool grow_to(Sequence* seq, int64_t n_positions);  // enough pages for n_positions
    void release_pages(Sequence* seq);
    void preempt(Sequence* seq);
    bool admit(Sequence* seq);  // prefix lookup on first admission; false if no page for it
    bool prefix_in_progress(const Sequence* seq) const;
    int64_t chunk_of(const Sequence* s) const {
        return s->max_chunk > 0 ? std::min(s->max_chunk, config_.chunk_size) : config_.chunk_size;
    }  // a running one is computing pages seq could share

    SchedulerConfig config_;
    PageManager& pages_;
    std::vector<Sequence*> running_;  // in admission order
    std::deque<Sequence*> waiting_;   // in arrival order (preempted ones back at the front)
};

}  // namespace tandem
