// The serving engine: one thread that runs continuous-batching steps over a shared paged KV
// cache, and thread-safe request handles through which HTTP handlers submit prompts, receive
// generated text as it comes, and cancel.
//
// Step: take new requests and cancellations -> Scheduler::schedule() -> one Forward::eval_batch
// over every sequence in the step (weights read once for all) -> sample each sequence that
// finished its prompt or is generating -> detokenize, match stop strings -> push events.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "model/forward.h"
#include "runtime/kv_cache.h"
#include "runtime/page_manager.h"
#include "runtime/sampler.h"
#include "serve/metrics.h"
#include "serve/scheduler.h"
#include "serve/token_constraint.h"
#include "tokenizer/tokenizer.h"

namespace tandem {

struct GenParams {
    SamplerParams sampler;
    int64_t max_new_tokens = 256;
    std::vector<std::string> stop;   // stop strings (not emitted)
    std::vector<int32_t> stop_ids;   // end-of-generation tokens (not emitted)
    float presence_penalty = 0.0f;
    float frequency_penalty = 0.0f;
    int top_logprobs = -1;           // -1: no logprobs; otherwise the alternatives per token (0..20)
    int prompt_logprobs = -1;        // -1: none; otherwise the alternatives per prompt position (0..20):
                                     // every prompt position is computed (no prefix cache), in chunks of
                                     // at most kPromptLogitsChunk tokens
    std::vector<std::pair<int32_t, float>> logit_bias;  // added to those tokens' logits before sampling
    float repetition_penalty = 1.0f;  // (vLLM, llama.cpp) tokens of the prompt or the output: logit / p if > 0, else * p
    int64_t min_tokens = 0;           // the stop ids are not sampled before this many tokens
    ConstraintSpec constraint;       // response_format: the JSON Schema the response follows
};

// A sequence's logits before its sampler: logit_bias, then presence / frequency penalties over
// the generated ids (`counts`), repetition_penalty over the distinct ids of the prompt and the
// output (`seen`), and the stop ids masked while fewer than min_tokens were generated.
void adjust_logits(float* row, const GenParams& p, const std::unordered_map<int32_t, int>& counts,
                   const std::vector<int32_t>& seen, int64_t n_generated);

enum class FinishReason { none, stop, length, cancelled, error };
const char* finish_reason_name(FinishReason r);

struct TokenLogprob {
    int32_t id = 0;
    float logprob = 0.0f;
    int32_t rank = 0;  // prompt logprobs: 1 + the tokens the model ranked above this one
    std::vector<std::pair<int32_t, float>> top;  // best alternatives, best first
};

struct RequestStats {
    int64_t n_prompt = 0, n_prefix_hit = 0, n_generated = 0;
    int n_preempted = 0;
    double queue_s = 0, ttft_s = 0, decode_s = 0;  // waiting; submit -> first token; first -> last token
};

// What a request sends back to its handler: new text, the tokens behind it, and at the end the
// finish reason and statistics.
struct StreamEvent {
    std::string text;
    std::vector<TokenLogprob> logprobs;  // when asked for
    std::vector<TokenLogprob> prompt_logprobs;  // prompt positions 1, 2, ... in order, as they are computed
    int64_t n_tokens = 0;                // tokens generated in this event
    FinishReason finish = FinishReason::none;
    std::string error;                   // finish == error
    std::string stop_string;             // finish == stop by one of the request's stop strings: that one
    RequestStats stats;                  // when finished
};

// Wakes the handler of one HTTP request, which waits on all of its engine requests at once (n
// choices, lists of prompts): every handle given it at submit bumps its count on each event.
class EventSignal {
public:
    uint64_t count();
    // Returns when count() differs from `seen`, or after `timeout`.
    void wait_past(uint64_t seen, std::chrono::milliseconds timeout);
    void notify();

private:
    std::mutex mu_;
    std::condition_variable cv_;
    uint64_t n_ = 0;
};

class RequestHandle {
public:
    // Waits up to `timeout` for events and moves them into out. False when none came.
    // Moves the pending events into out (it waits on its EventSignal, not here). False when none.
    bool take(std::vector<StreamEvent>& out);
    void cancel() { cancelled_.store(true); }
    bool cancelled() const { return cancelled_.load(); }
    int64_t id() const { return id_; }

private:
    friend class Engine;
    void push(StreamEvent ev);
    int64_t id_ = 0;
    std::mutex mu_;
    std::deque<StreamEvent> events_;
    std::atomic<bool> cancelled_{false};
    std::shared_ptr<EventSignal> signal_;
};

struct EngineConfig {
    SchedulerConfig sched;
    int64_t page_size = 128;
    int64_t cache_tokens = 16384;  // KV positions shared by all requests
    bool prefix_cache = true;
    bool log_requests = true;
    DeviceLayers* device = nullptr;  // the hybrid forward's device half (null: all on the CPU)
};

struct SubmitResult {
    std::shared_ptr<RequestHandle> handle;  // null on error
    int http_status = 0;                    // 400 (never fits), 429 (queue full), 503 (stopping)
    std::string error;
};

class Engine {
public:
    Engine(const Model& model, const Tokenizer& tok, ThreadPool& pool, EngineConfig config);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // Queues a request; its handle wakes `signal` on every event.
    SubmitResult submit(std::vector<int32_t> prompt, GenParams params, std::shared_ptr<EventSignal> signal);
    // Most prompt tokens per step of a request with prompt logprobs (each one's logits are kept).
    static constexpr int64_t kPromptLogitsChunk = 128;
    // Tokens of a prompt that can never run (context/pool), or the limit on prompt + generated.
    Result<int64_t> max_len_for(int64_t n_prompt, int64_t max_new) const { return sched_.max_len_for(n_prompt, max_new); }
    Metrics& metrics() { return metrics_; }
    const EngineConfig& config() const { return config_; }
    void stop();

private:
    struct Active;
    void loop();
    void take_new();
    void drop_cancelled();
    void run_step(StepPlan& plan);
    void on_token(Active& a, int32_t id, const float* logits);
    Active* owner(const Sequence* seq);
    bool wants_prompt_logits(const Active& a, const SeqChunk& c) const;
    void push_prompt_logprobs();
    void finish(Active& a, FinishReason reason, std::string error = {});
    void update_gauges();

    const Model& model_;
    const Tokenizer& tok_;
    ThreadPool& pool_;  // the forward's; between forwards it samples the step's sequences in parallel
    EngineConfig config_;
    Forward fwd_;
    KvPool kv_;
    PageManager pages_;
    Scheduler sched_;
    Metrics metrics_;

    std::mutex mu_;  // guards incoming_, stopping_
    std::condition_variable cv_;
    std::vector<std::unique_ptr<Active>> incoming_;
    bool stopping_ = false;
    std::atomic<int64_t> n_queued_{0};  // incoming + waiting, for the queue limit
    int64_t next_id_ = 1;

    std::vector<std::unique_ptr<Active>> active_;  // engine thread only
    std::vector<float> logits_;
    // run_step's per-sampled-row scratch, reused step to step
    std::vector<Active*> step_who_;
    std::vector<int32_t> step_ids_;
    std::vector<std::vector<float>> step_raws_;
    std::vector<int32_t> top_scratch_;  // top_logprobs ids
    struct PromptRows {                 // a chunk whose rows give prompt logprobs
        Active* a;
        int64_t pos0, n;                // row r predicts the token at pos0 + 1 + r
        size_t first_row;
        std::vector<TokenLogprob> out;  // (one per row; rank 0: not a prompt position)
    };
    std::vector<PromptRows> prompt_rows_;
    std::shared_ptr<const VocabIndex> vocab_;  // for response formats, made at the first one
    std::vector<SeqChunk> chunks_;
    std::thread thread_;
};

}  // namespace tandem
