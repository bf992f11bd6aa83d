#include "serve/engine.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_map>

#include "core/log.h"
#include "serve/text_stream.h"

namespace tandem {

using Clock = std::chrono::steady_clock;

const char* finish_reason_name(FinishReason r) {
    switch (r) {
        case FinishReason::stop: return "stop";
        case FinishReason::length: return "length";
        case FinishReason::cancelled: return "cancelled";
        case FinishReason::error: return "error";
        case FinishReason::none: break;
    }
    return "none";
}

void adjust_logits(float* row, const GenParams& p, const std::unordered_map<int32_t, int>& counts,
                   const std::vector<int32_t>& seen, int64_t n_generated) {
    // the bias first, then the penalties (as vLLM and llama.cpp order them)
    for (auto [id, bias] : p.logit_bias) row[id] += bias;
    if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f)
        for (auto [id, n] : counts) row[id] -= p.presence_penalty + p.frequency_penalty * (float)n;
    if (const float r = p.repetition_penalty; r != 1.0f)
        for (int32_t id : seen) row[id] = row[id] > 0 ? row[id] / r : row[id] * r;
    if (n_generated < p.min_tokens)
        for (int32_t id : p.stop_ids) row[id] = -std::numeric_limits<float>::infinity();
}

bool RequestHandle::take(std::vector<StreamEvent>& out) {
    std::lock_guard<std::mutex> lock(mu_);
    if (events_.empty()) return false;
    while (!events_.empty()) {
        out.push_back(std::move(events_.front()));
        events_.pop_front();
    }
    return true;
}

void RequestHandle::push(StreamEvent ev) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        events_.push_back(std::move(ev));
    }
    signal_->notify();
}

uint64_t EventSignal::count() {
    std::lock_guard<std::mutex> lock(mu_);
    return n_;
}

void EventSignal::wait_past(uint64_t seen, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return n_ != seen; });
}

void EventSignal::notify() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        ++n_;
    }
    cv_.notify_all();
}

// One request in the engine: its sequence, sampler, text state and timings.
struct Engine::Active {
    Active(const Tokenizer& tok, GenParams p) : params(std::move(p)), sampler(params.sampler), decoder(tok), stop(params.stop) {}
    std::shared_ptr<RequestHandle> handle;
    Sequence seq;
    GenParams params;
    Sampler sampler;
    StreamingDecoder decoder;
    StopMatcher stop;
    std::unique_ptr<TokenConstraint> constraint;  // response_format
    std::unordered_map<int32_t, int> counts;  // generated ids, for the penalties
    std::vector<int32_t> seen;                // repetition_penalty: the distinct ids of the prompt and the output
    Clock::time_point t_submit, t_admit, t_first, t_last;
    int64_t prompt_lp_next = 1;  // prompt logprobs: the next prompt position to report
    bool admitted = false;
    bool done = false;
};

Engine::Engine(const Model& model, const Tokenizer& tok, ThreadPool& pool, EngineConfig config)
    : model_(model), tok_(tok), pool_(pool), config_(config), fwd_(model, pool, config.device),
      kv_(fwd_.make_pool(config.page_size, (config.cache_tokens + config.page_size - 1) / config.page_size)),
      pages_(kv_.n_pages(), config.page_size, config.prefix_cache), sched_(config.sched, pages_) {
    metrics_.update([&](MetricValues& v, Histogram&, Histogram&) {
        v.pages_total = kv_.n_pages();
        v.page_size = config_.page_size;
    });
    thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() { stop(); }

void Engine::stop() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_ && !thread_.joinable()) return;
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

SubmitResult Engine::submit(std::vector<int32_t> prompt, GenParams params, std::shared_ptr<EventSignal> signal) {
    SubmitResult r;
    auto reject = [&](int status, std::string msg) {
        metrics_.update([](MetricValues& v, Histogram&, Histogram&) { ++v.requests_rejected; });
        r.http_status = status;
        r.error = std::move(msg);
        return r;
    };
    for (int32_t id : prompt)
        if (!tok_.valid_id(id) || id >= model_.hparams().n_vocab)
            return reject(400, fmt::format("token id {} is out of the vocabulary", id));
    for (auto [id, bias] : params.logit_bias)
        if (!tok_.valid_id(id) || id >= model_.hparams().n_vocab)
            return reject(400, fmt::format("logit_bias: token id {} is out of the vocabulary", id));
    for (int32_t id : params.stop_ids)
        if (!tok_.valid_id(id) || id >= model_.hparams().n_vocab)
            return reject(400, fmt::format("stop_token_ids: token id {} is out of the vocabulary", id));
    auto max_len = sched_.max_len_for((int64_t)prompt.size(), params.max_new_tokens);
    if (!max_len) return reject(400, max_len.error().message);
    // a place in the queue, taken at once (handler threads submit concurrently)
    for (int64_t q = n_queued_.load();;) {
        if (q >= sched_.config().max_queue) return reject(429, fmt::format("the server is busy: {} requests are waiting", q));
        if (n_queued_.compare_exchange_weak(q, q + 1)) break;
    }

    auto a = std::make_unique<Active>(tok_, std::move(params));
    a->handle = std::make_shared<RequestHandle>();
    a->handle->signal_ = signal ? std::move(signal) : std::make_shared<EventSignal>();
    if (a->params.prompt_logprobs >= 0) {
        a->seq.match_prefix = false;
        a->seq.max_chunk = kPromptLogitsChunk;
    }
    a->seq.n_prompt = (int64_t)prompt.size();
    a->seq.tokens = std::move(prompt);
    a->seq.max_len = *max_len;
    a->t_submit = Clock::now();
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) {
            --n_queued_;
            return reject(503, "the server is shutting down");  // (no handle: nothing will answer it)
        }
        a->seq.id = next_id_++;
        a->handle->id_ = a->seq.id;
        r.handle = a->handle;
        incoming_.push_back(std::move(a));
    }
    cv_.notify_all();
    return r;
}

void Engine::take_new() {
    std::vector<std::unique_ptr<Active>> fresh;
    {
        std::lock_guard<std::mutex> lock(mu_);
        fresh.swap(incoming_);
    }
    for (auto& a : fresh) {
        if (Status st = sched_.add(&a->seq); !st) {  // cannot happen: the queue limit is checked at submit
            --n_queued_;
            StreamEvent ev;
            ev.finish = FinishReason::error;
            ev.error = st.error().message;
            a->handle->push(std::move(ev));
            continue;
        }
        if (a->params.repetition_penalty != 1.0f) {
            a->seen = a->seq.tokens;
            std::sort(a->seen.begin(), a->seen.end());
            a->seen.erase(std::unique(a->seen.begin(), a->seen.end()), a->seen.end());
        }
        if (a->params.constraint.active()) {
            if (!vocab_) vocab_ = std::make_shared<const VocabIndex>(tok_);
            a->constraint = std::make_unique<TokenConstraint>(vocab_, a->params.constraint, a->params.stop_ids);
        }
        active_.push_back(std::move(a));
    }
}

void Engine::drop_cancelled() {
    for (auto& a : active_)
        if (!a->done && a->handle->cancelled()) finish(*a, FinishReason::cancelled);
}

void Engine::finish(Active& a, FinishReason reason, std::string error) {
    if (a.done) return;
    a.done = true;
    if (!a.admitted) --n_queued_;
    sched_.remove(&a.seq);
    StreamEvent ev;
    if (reason == FinishReason::length || reason == FinishReason::cancelled) {
        ev.text = a.stop.push(a.decoder.flush());
        ev.text += a.stop.flush();
    }
    ev.finish = reason;
    ev.error = std::move(error);
    if (reason == FinishReason::stop && a.stop.stopped()) ev.stop_string = a.stop.matched();
    RequestStats& s = ev.stats;
    const auto now = Clock::now();
    s.n_prompt = a.seq.n_prompt;
    s.n_prefix_hit = a.seq.n_prefix_hit;
    s.n_generated = a.seq.n_generated();
    s.n_preempted = a.seq.n_preempted;
    s.queue_s = std::chrono::duration<double>((a.admitted ? a.t_admit : now) - a.t_submit).count();
    if (s.n_generated > 0) {
        s.ttft_s = std::chrono::duration<double>(a.t_first - a.t_submit).count();
        s.decode_s = std::chrono::duration<double>(a.t_last - a.t_first).count();
    }
    metrics_.update([&](MetricValues& v, Histogram&, Histogram&) {
        ++v.requests_finished;
        switch (reason) {
            case FinishReason::stop: ++v.requests_stop; break;
            case FinishReason::length: ++v.requests_length; break;
            case FinishReason::cancelled: ++v.requests_cancelled; break;
            default: ++v.requests_error; break;
        }
    });
    if (config_.log_requests) {
        const double dec_tps = s.n_generated > 1 && s.decode_s > 0 ? (double)(s.n_generated - 1) / s.decode_s : 0.0;
        log::info("request {}: prompt {} (cached {}), generated {}, ttft {:.3f} s, decode {:.1f} tok/s, "
                  "preempted {}, finish {}",
                  a.seq.id, s.n_prompt, s.n_prefix_hit, s.n_generated, s.ttft_s, dec_tps, s.n_preempted,
                  finish_reason_name(reason));
    }
    a.handle->push(std::move(ev));
}

void Engine::on_token(Active& a, int32_t id, const float* logits) {
    const auto now = Clock::now();
    const bool first = a.seq.n_generated() == 0;
    a.seq.tokens.push_back(id);
    if (++a.counts[id] == 1 && a.params.repetition_penalty != 1.0f &&
        std::find(a.seen.begin(), a.seen.end(), id) == a.seen.end())
        a.seen.push_back(id);
    if (first) {
        a.t_first = now;
        metrics_.update([&](MetricValues&, Histogram& ttft, Histogram&) {
            ttft.observe(std::chrono::duration<double>(now - a.t_submit).count());
        });
    } else {
        metrics_.update([&](MetricValues&, Histogram&, Histogram& itl) {
            itl.observe(std::chrono::duration<double>(now - a.t_last).count());
        });
    }
    a.t_last = now;

    StreamEvent ev;
    ev.n_tokens = 1;
    const bool is_stop_id = std::find(a.params.stop_ids.begin(), a.params.stop_ids.end(), id) != a.params.stop_ids.end();
    if (a.params.top_logprobs >= 0) {
        // log-softmax of the model's distribution (before penalties and temperature)
        const int64_t nv = model_.hparams().n_vocab;
        const float lse = log_sum_exp(logits, nv);
        TokenLogprob lp;
        lp.id = id;
        lp.logprob = logits[id] - lse;
        if (a.params.top_logprobs > 0) {
            top_ids(logits, nv, a.params.top_logprobs, top_scratch_);
            for (int32_t t : top_scratch_) lp.top.emplace_back(t, logits[t] - lse);
        }
        if (!is_stop_id) ev.logprobs.push_back(std::move(lp));
    }
    if (is_stop_id) {
        ev.text = a.stop.push(a.decoder.flush());
        ev.text += a.stop.flush();
        if (!ev.text.empty() || !ev.logprobs.empty()) a.handle->push(std::move(ev));
        finish(a, FinishReason::stop);
        return;
    }
    ev.text = a.stop.push(a.decoder.push(id));
    const bool stopped = a.stop.stopped();
    const bool at_limit = (int64_t)a.seq.tokens.size() >= a.seq.max_len;
    if (!ev.text.empty() || !ev.logprobs.empty() || !stopped) a.handle->push(std::move(ev));
    if (stopped) finish(a, FinishReason::stop);
    else if (at_limit) finish(a, FinishReason::length);
}

Engine::Active* Engine::owner(const Sequence* seq) {
    for (auto& x : active_)
        if (&x->seq == seq) return x.get();
    return nullptr;
}

bool Engine::wants_prompt_logits(const Active& a, const SeqChunk& c) const {
    return a.params.prompt_logprobs >= 0 && a.prompt_lp_next < a.seq.n_prompt && c.pos0 + c.n >= a.prompt_lp_next;
}

// The log-softmax of each prompt row at the token that follows it, its rank and the best
// alternatives (rows in parallel: each is a pass or two over the vocabulary), then one event per
// request with its new positions in order.
void Engine::push_prompt_logprobs() {
    if (prompt_rows_.empty()) return;
    const int64_t nv = model_.hparams().n_vocab;
    std::vector<std::pair<size_t, int64_t>> work;  // (prompt_rows_ index, row)
    for (size_t k = 0; k < prompt_rows_.size(); ++k) {
        PromptRows& pr = prompt_rows_[k];
        pr.out.assign((size_t)pr.n, TokenLogprob{});
        for (int64_t r = 0; r < pr.n; ++r) {
            const int64_t p = pr.pos0 + 1 + r;
            if (p >= pr.a->prompt_lp_next && p < pr.a->seq.n_prompt) work.emplace_back(k, r);
        }
    }
    pool_.parallel_for((int64_t)work.size(), 1, [&](int64_t b, int64_t e) {
        std::vector<int32_t> top;
        for (int64_t w = b; w < e; ++w) {
            auto [k, r] = work[(size_t)w];
            PromptRows& pr = prompt_rows_[k];
            const float* row = logits_.data() + (pr.first_row + (size_t)r) * (size_t)nv;
            const int32_t id = pr.a->seq.tokens[(size_t)(pr.pos0 + 1 + r)];
            const float lse = log_sum_exp(row, nv), x = row[id];
            TokenLogprob& lp = pr.out[(size_t)r];
            lp.id = id;
            lp.logprob = x - lse;
            lp.rank = 1 + (int32_t)std::count_if(row, row + nv, [x](float v) { return v > x; });
            if (const int k_top = pr.a->params.prompt_logprobs; k_top > 0) {
                top_ids(row, nv, k_top, top);
                for (int32_t t : top) lp.top.emplace_back(t, row[t] - lse);
            }
        }
    });
    for (PromptRows& pr : prompt_rows_) {
        StreamEvent ev;
        for (TokenLogprob& lp : pr.out)
            if (lp.rank > 0) ev.prompt_logprobs.push_back(std::move(lp));
        pr.a->prompt_lp_next += (int64_t)ev.prompt_logprobs.size();
        if (!ev.prompt_logprobs.empty()) pr.a->handle->push(std::move(ev));
    }
}

void Engine::run_step(StepPlan& plan) {
    chunks_.clear();
    prompt_rows_.clear();
    std::vector<Active*>& who = step_who_;  // each sampled sequence's request
    std::vector<size_t> sample_row;         // and its logits row
    who.clear();
    size_t n_rows = 0;
    for (const StepItem& it : plan.items) {
        Sequence* s = it.seq;
        SeqChunk c;
        c.tokens = s->tokens.data() + s->n_cached;
        c.n = it.n;
        c.pos0 = s->n_cached;
        c.pages = s->pages.data();
        c.n_pages = (int64_t)s->pages.size();
        c.want_logits = it.want_logits();
        Active* a = owner(s);
        if (a && wants_prompt_logits(*a, c)) {
            c.all_logits = true;
            prompt_rows_.push_back({a, c.pos0, c.n, n_rows, {}});
            n_rows += (size_t)c.n;
            if (c.want_logits) {
                who.push_back(a);
                sample_row.push_back(n_rows - 1);
            }
        } else if (c.want_logits) {
            who.push_back(a);
            sample_row.push_back(n_rows++);
        }
        chunks_.push_back(c);
    }
    for (auto& a : active_)
        if (!a->admitted && a->seq.running) {
            a->admitted = true;
            a->t_admit = Clock::now();
            --n_queued_;
            metrics_.update([&](MetricValues& v, Histogram&, Histogram&) {
                v.prompt_tokens += a->seq.n_prompt;
                v.prefix_hit_tokens += a->seq.n_prefix_hit;
            });
        }
    const auto t_step = Clock::now();
    if (Status st = fwd_.eval_batch(kv_, chunks_, logits_); !st) {
        log::warn("step failed: {}", st.error().message);
        for (const StepItem& it : plan.items)
            if (Active* a = owner(it.seq)) finish(*a, FinishReason::error, "internal error: " + st.error().message);
        return;
    }
    if (log::level() <= log::Level::debug) {
        const StageTimes& st = fwd_.stage_times();
        log::debug("step: {} sequences, {} tokens ({} sampled), {:.1f} ms; totals so far: attention {:.2f} s, "
                   "experts {:.2f} s, lm_head {:.2f} s",
                   plan.items.size(), plan.n_tokens(), who.size(),
                   std::chrono::duration<double, std::milli>(Clock::now() - t_step).count(), st.attention,
                   st.experts, st.lm_head);
    }
    sched_.complete(plan);
    push_prompt_logprobs();
    const int64_t nv = model_.hparams().n_vocab;
    // each sampled sequence's sampler (its own state and seed) on its own row, in parallel (a
    // temperature draw over 152K logits takes ~1 ms); then the tokens in order
    const size_t n_sample = who.size();
    std::vector<int32_t>& ids = step_ids_;
    std::vector<std::vector<float>>& raws = step_raws_;  // (raw logits for logprobs; buffers kept)
    ids.assign(n_sample, -1);
    if (raws.size() < n_sample) raws.resize(n_sample);
    for (size_t i = 0; i < n_sample; ++i) raws[i].clear();
    for (Active*& a : who) {
        if (!a || a->done) {
            a = nullptr;
        } else if (a->params.max_new_tokens == 0) {  // the prompt's logprobs were all it asked for
            finish(*a, FinishReason::length);
            a = nullptr;
        }
    }
    pool_.parallel_for((int64_t)n_sample, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
            Active* a = who[(size_t)i];
            if (!a) continue;
            float* row = logits_.data() + sample_row[(size_t)i] * (size_t)nv;
            if (a->params.top_logprobs >= 0) raws[(size_t)i].assign(row, row + nv);
            adjust_logits(row, a->params, a->counts, a->seen, a->seq.n_generated());
            ids[(size_t)i] = a->sampler.sample(row, nv);
            if (a->constraint) ids[(size_t)i] = a->constraint->choose(row, nv, ids[(size_t)i], a->sampler);
        }
    });
    int64_t n_sampled = 0;
    for (size_t i = 0; i < n_sample; ++i) {
        Active* a = who[i];
        if (!a || a->done) continue;
        if (ids[i] < 0) {
            // the document is whole but its end token is barred (ignore_eos, min_tokens): it is
            // the answer; otherwise a response format that no token can continue
            if (a->constraint->document_complete()) finish(*a, FinishReason::stop);
            else finish(*a, FinishReason::error, "no token of the vocabulary can continue the response format here");
            continue;
        }
        const float* row = logits_.data() + sample_row[i] * (size_t)nv;
        on_token(*a, ids[i], raws[i].empty() ? row : raws[i].data());
        ++n_sampled;
    }
    // a step of prompt logprobs may have grown the logits to hundreds of rows: give that back
    // once the steps need far fewer (decode steps need one row per sequence)
    if (logits_.capacity() >= (size_t)(kPromptLogitsChunk * nv) && logits_.capacity() > 8 * logits_.size())
        std::vector<float>().swap(logits_);
    metrics_.update([&](MetricValues& v, Histogram&, Histogram&) {
        ++v.steps;
        v.generated_tokens += n_sampled;
        v.preemptions += (int64_t)plan.preempted.size();
    });
}

void Engine::update_gauges() {
    metrics_.update([&](MetricValues& v, Histogram&, Histogram&) {
        v.running = sched_.n_running();
        v.waiting = n_queued_.load();
        v.pages_used = pages_.n_used();
        v.pages_cached = pages_.n_cached();
    });
}

void Engine::loop() {
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(mu_);
            if (stopping_) break;
        }
        take_new();
        drop_cancelled();
        std::erase_if(active_, [](const std::unique_ptr<Active>& a) { return a->done; });
        StepPlan plan = sched_.schedule();
        if (plan.items.empty()) {
            update_gauges();
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait_for(lock, std::chrono::milliseconds(50), [&] { return stopping_ || !incoming_.empty(); });
            continue;
        }
        run_step(plan);
        std::erase_if(active_, [](const std::unique_ptr<Active>& a) { return a->done; });
        update_gauges();
    }
    // shutting down: every request still known ends now
    take_new();
    for (auto& a : active_) finish(*a, FinishReason::cancelled, "the server is shutting down");
    active_.clear();
    update_gauges();
}

}  // namespace tandem
