// A multi-turn conversation with one model: the messages, rendered through the model's chat
// template, and the KV cache that holds them. No terminal here (cmd_chat.cpp is the front end),
// so that it is testable with a tiny model.
//
// Each turn renders the whole conversation again and evaluates only what the cache does not
// already hold: the cache keeps the ids it evaluated (prompt + generated), the new prompt shares
// a prefix with them (in Qwen3's template up to the last answer, whose thinking part is dropped
// from history), and the cache is cut back to that common prefix (n_past) before the rest is
// evaluated. When the new prompt plus the answer budget would not fit in the context, the oldest
// turns after the system message are dropped and the prompt is evaluated again from the first
// position that differs.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "chat/value.h"
#include "core/status.h"
#include "model/forward.h"
#include "runtime/kv_cache.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace tandem {

class GgufFile;

struct ChatConfig {
    std::string chat_template;  // Jinja source (tokenizer.chat_template)
    std::string bos_token, eos_token;
    std::string system;         // empty: no system message
    bool think = true;          // enable_thinking of Qwen3's template
    int64_t n_ctx = 4096;
    int max_tokens = 512;       // per answer
    SamplerParams sampler;
    std::vector<int32_t> stop_ids;  // end of an answer (<|im_end|>, <|endoftext|>, eos)
};

// Fills chat_template, bos/eos tokens and stop ids from a model file and its tokenizer; error
// when the file has no chat template. `override_template` (--chat-template: a Jinja file, or the
// template itself when it contains "{%" or "{{") replaces the file's; it must parse.
Status chat_config_from_model(const GgufFile& file, const Tokenizer& tok, ChatConfig& config,
                              const std::string& override_template = {});

// The prompt ids of messages rendered by config's template with add_generation_prompt and
// enable_thinking = config.think (control tokens in the text are parsed).
Result<std::vector<int32_t>> render_chat_prompt(const ChatConfig& config, const Tokenizer& tok,
                                                const chat::Json& messages);

// One streamed piece of an answer: valid UTF-8, either thinking (between <think> and </think>)
// or answer text. The markers themselves are not pieces.
struct ChatPiece {
    std::string text;
    bool thinking = false;
};

struct TurnStats {
    int64_t n_prompt = 0;     // ids of the rendered prompt
    int64_t n_reused = 0;     // of them, already in the cache
    int64_t n_generated = 0;  // sampled ids, the stop id included
    int n_dropped = 0;        // messages dropped to fit the context
    double prefill_ms = 0, decode_ms = 0;
    std::string finish;       // "stop", "length" (max_tokens or context full), "interrupted"
    double decode_tok_s() const;
};

class ChatSession {
public:
    ChatSession(Forward& fwd, const Tokenizer& tok, ChatConfig config);

    // Adds the user message, answers it (streaming each piece to on_piece) and adds the answer
    // (the part generated before a stop or an interrupt) to the history. *interrupt set (by a
    // signal handler) stops generation after the current token.
    Result<TurnStats> send(const std::string& user, const std::function<void(const ChatPiece&)>& on_piece,
                           const std::atomic<bool>* interrupt = nullptr);

    // Evaluates prompt into the cache, reusing the longest common prefix with what it holds;
    // logits gets the last position's. Returns the number of reused positions.
    Result<int64_t> prefill(const std::vector<int32_t>& prompt, std::vector<float>& logits);

    void reset();                              // clears the history (keeps the system message)
    void set_system(const std::string& text);  // empty removes it
    void set_think(bool on) { config_.think = on; }
    bool think() const { return config_.think; }
    // The conversation as OpenAI-style messages, the system message first when there is one
    // (assistant thinking in reasoning_content).
    chat::Json messages() const;
    // Replaces the history after the system message (user/assistant messages).
    void set_history(chat::Json history) { history_ = std::move(history); }
    const ChatConfig& config() const { return config_; }
    const std::vector<int32_t>& cached_ids() const { return cached_; }

private:
    // Renders the conversation + user_msg, dropping the oldest turns of history_ until the
    // prompt plus the answer budget (max_tokens, at most half the context) fits.
    Result<std::vector<int32_t>> fit_prompt(const chat::Json& user_msg, int& n_dropped);

    Forward& fwd_;
    const Tokenizer& tok_;
    ChatConfig config_;
    KvCache kv_;
    Sampler sampler_;
    chat::Json history_ = chat::Json::array();  // the messages after the system message
    std::vector<int32_t> cached_;  // cached_[i] is the id whose keys/values are at position i; size == kv_.n_past
    int32_t think_open_ = -1, think_close_ = -1;  // ids of <think> and </think>, -1 if absent
};

}  // namespace tandem
