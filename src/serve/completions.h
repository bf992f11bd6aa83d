// POST /v1/chat/completions and /v1/completions. A request becomes one engine request per choice
// (`n` for each prompt; /v1/completions also takes a list of prompts: prompt i's choices are
// i*n .. i*n+n-1), all submitted at once and waited on together. Their events are turned into one
// JSON answer, or into server-sent events with one chunk per choice event. The completions API
// can also send the prompt back (`echo`) with the logprobs of its tokens, as evaluation harnesses
// ask (`echo: true, logprobs: k, max_tokens: 0 or 1`), and vLLM's `prompt_logprobs`. Anthropic's
// Messages API runs through the same path (anthropic_api.h).
#pragma once

#include <httplib.h>

#include <atomic>
#include <cstdint>

#include "runtime/chat_session.h"
#include "serve/engine.h"
#include "serve/http_server.h"
#include "serve/tool_calls.h"
#include "tokenizer/tokenizer.h"

namespace tandem {

struct CompletionContext {
    Engine& engine;
    const Tokenizer& tok;
    const ChatConfig* chat;  // null: the model has no chat template
    ToolCallFormat tool_format;  // of the chat template's tool calls (tool_calls.h)
    const ServerConfig& config;
    std::atomic<int64_t>& next_id;
};

// Answers one request (authorization already checked); every error is an OpenAI error object.
void serve_completion(const CompletionContext& ctx, const httplib::Request& req, httplib::Response& res, bool chat_api);

// POST /v1/messages and /v1/messages/count_tokens (anthropic_api.h); errors in Anthropic's shape.
void serve_messages(const CompletionContext& ctx, const httplib::Request& req, httplib::Response& res);
void serve_count_tokens(const CompletionContext& ctx, const httplib::Request& req, httplib::Response& res);
// POST /v1/responses (responses_api.h)
void serve_responses(const CompletionContext& ctx, const httplib::Request& req, httplib::Response& res);

}  // namespace tandem
