#include "serve/scheduler.h"

#include <algorithm>

namespace tandem {

Scheduler::Scheduler(SchedulerConfig config, PageManager& pages) : config_(config), pages_(pages) {
    config_.max_batch_size = std::max<int64_t>(1, config_.max_batch_size);
    config_.chunk_size = std::max<int64_t>(1, config_.chunk_size);
    config_.step_tokens = std::max(config_.step_tokens, config_.max_batch_size);  // room for every decode token
}

Result<int64_t> Scheduler::max_len_for(int64_t n_prompt, int64_t max_new_tokens) const {
    const int64_t capacity = pages_.n_pages() * pages_.page_size();
    const int64_t limit = std::min(config_.max_seq_len, capacity);
    if (n_prompt <= 0) return make_error("the prompt is empty");
    if (n_prompt >= limit)
        return make_error("the prompt has {} tokens, more than this server can hold for one request ({} tokens: "
                          "context {}, KV cache {})",
                          n_prompt, limit - 1, config_.max_seq_len, capacity);
    return std::min(n_prompt + std::max<int64_t>(1, max_new_tokens), limit);
}

Status Scheduler::add(Sequence* seq) {
    // new sequences only: the preempted ones back in the queue were accepted already
    const int64_t fresh = std::count_if(waiting_.begin(), waiting_.end(), [](const Sequence* s) { return s->n_preempted == 0; });
    if (fresh >= config_.max_queue) return make_error("the queue is full ({} requests waiting)", fresh);
    seq->running = false;
    waiting_.push_back(seq);
    return {};
}

bool Scheduler::grow_to(Sequence* seq, int64_t n_positions) {
    const int64_t ps = pages_.page_size();
    while ((int64_t)seq->pages.size() * ps < n_positions) {
        auto p = pages_.allocate();
        if (!p) return false;
        seq->pages.push_back(*p);
    }
    return true;
}

void Scheduler::release_pages(Sequence* seq) {
    for (int32_t p : seq->pages) pages_.release(p);
    seq->pages.clear();
    seq->hashes.clear();
    seq->n_cached = 0;
}

void Scheduler::preempt(Sequence* seq) {
    release_pages(seq);
    seq->running = false;
    ++seq->n_preempted;
    running_.erase(std::find(running_.begin(), running_.end(), seq));
    // back into the queue in arrival order (ids grow with arrival), ahead of later arrivals
    auto pos = std::find_if(waiting_.begin(), waiting_.end(), [&](Sequence* w) { return w->id > seq->id; });
    waiting_.insert(pos, seq);
}

bool Scheduler::admit(Sequence* seq) {
    const int64_t ps = pages_.page_size(), n = (int64_t)seq->tokens.size();
    if (seq->pages.empty() && seq->match_prefix) {
        // at least the last token is evaluated, for its logits
        seq->pages = pages_.match_prefix(seq->tokens.data(), n, (n - 1) / ps, seq->hashes);
        seq->n_cached = (int64_t)seq->pages.size() * ps;
    }
    const int64_t first_chunk = std::min(n - seq->n_cached, chunk_of(seq));
    if (!grow_to(seq, seq->n_cached + first_chunk)) {
        release_pages(seq);
        return false;
    }
    if (seq->n_preempted == 0) seq->n_prefix_hit = seq->n_cached;
    return true;
}

bool Scheduler::prefix_in_progress(const Sequence* seq) const {
    const int64_t ps = pages_.page_size(), n = (int64_t)seq->tokens.size();
    if (!seq->pages.empty() || !seq->match_prefix || !pages_.prefix_cache() || (n - 1) / ps == 0) return false;
    const int64_t matchable = (n - 1) / ps * ps;  // the positions match_prefix could give it
    for (const Sequence* r : running_) {
        if (!r->prefilling() || r->n_cached >= matchable) continue;
        const int64_t m = std::min(matchable, (int64_t)r->tokens.size());
        const int64_t common = std::mismatch(seq->tokens.begin(), seq->tokens.begin() + m, r->tokens.begin()).first -
                               seq->tokens.begin();
        if (common / ps * ps > r->n_cached) return true;  // full shared pages r has not published yet
    }
    return false;
}

StepPlan Scheduler::schedule() {
    StepPlan plan;
    int64_t budget = config_.step_tokens;
    const int64_t ps = pages_.page_size();
    auto in_plan = [&](Sequence* s) {
        return std::find_if(plan.items.begin(), plan.items.end(), [&](const StepItem& it) { return it.seq == s; });
    };

    // 1. the next token of every generating sequence, preempting the latest admitted when out of pages
    for (size_t i = 0; i < running_.size(); ++i) {
        Sequence* s = running_[i];
        if (s->prefilling()) continue;
        bool ok = true;
        while (!grow_to(s, s->n_cached + 1)) {
            Sequence* victim = running_.back() != s ? running_.back() : (running_.size() > 1 ? running_[running_.size() - 2] : s);
            if (auto it = in_plan(victim); it != plan.items.end()) {
                budget += it->n;
                plan.items.erase(it);
            }
            const bool before = std::find(running_.begin(), running_.begin() + (std::ptrdiff_t)i, victim) !=
                                running_.begin() + (std::ptrdiff_t)i;
            preempt(victim);
            plan.preempted.push_back(victim);
            if (victim == s) {
                ok = false;
                --i;
                break;
            }
            if (before) --i;
        }
        if (!ok) continue;
        plan.items.push_back({s, 1});
        --budget;
    }

    // 2. prompt chunks of admitted sequences, then 3. new sequences from the head of the queue
    auto add_chunk = [&](Sequence* s) {
        int64_t n = std::min({(int64_t)s->tokens.size() - s->n_cached, chunk_of(s), budget});
        grow_to(s, s->n_cached + n);  // as many pages as there are
        n = std::min(n, (int64_t)s->pages.size() * ps - s->n_cached);
        if (n <= 0) return;
        plan.items.push_back({s, n});
        budget -= n;
    };
    for (Sequence* s : running_) {
        if (budget <= 0) break;
        if (s->prefilling() && in_plan(s) == plan.items.end()) add_chunk(s);
    }
    while (!waiting_.empty() && (int64_t)running_.size() < config_.max_batch_size && budget > 0) {
        Sequence* s = waiting_.front();
        if (prefix_in_progress(s) || !admit(s)) break;
        waiting_.pop_front();
        s->running = true;
        running_.push_back(s);
        add_chunk(s);
    }

    // Nothing can move: every running sequence waits for pages held by the others. Give the
    // pages of the latest admitted back and try again (it is recomputed later).
    if (plan.items.empty() && running_.size() > 1) {
        Sequence* victim = running_.back();
        preempt(victim);
        StepPlan again = schedule();
        again.preempted.insert(again.preempted.begin(), victim);
        return again;
    }
    return plan;
}

void Scheduler::complete(const StepPlan& plan) {
    const int64_t ps = pages_.page_size();
    for (const StepItem& it : plan.items) {
        Sequence* s = it.seq;
        s->n_cached += it.n;
        while ((int64_t)s->hashes.size() < s->n_cached / ps && s->hashes.size() < s->pages.size()) {
            const size_t i = s->hashes.size();
            const int32_t* toks = s->tokens.data() + i * (size_t)ps;
            const uint64_t h = PageManager::chain_hash(i == 0 ? PageManager::kRootHash : s->hashes.back(), toks, ps);
            pages_.publish(s->pages[i], h, toks);
            s->hashes.push_back(h);
        }
    }
}

void Scheduler::remove(Sequence* seq) {
    if (auto it = std::find(running_.begin(), running_.end(), seq); it != running_.end()) running_.erase(it);
    if (auto it = std::find(waiting_.begin(), waiting_.end(), seq); it != waiting_.end()) waiting_.erase(it);
    release_pages(seq);
    seq->running = false;
}

}  // namespace tandem
