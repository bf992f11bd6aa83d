// The OpenAI request schema: validation of /v1/chat/completions and /v1/completions bodies into
// generation parameters, with one clear message per invalid field (HTTP 400). Unknown fields are
// ignored, as OpenAI-compatible servers do.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "chat/value.h"
#include "core/status.h"
#include "serve/engine.h"
#include "serve/json_schema.h"

namespace tandem {

struct ApiLimits {
    int64_t default_max_tokens = 1024;  // when the request names none (then clamped to the context)
    int64_t max_tokens_cap = 1 << 30;   // --max-new-tokens
};

struct ApiRequest {
    bool chat = false;
    std::string model;                   // empty when absent
    chat::Json messages;                 // chat: validated messages (content as text)
    chat::Json tools;                    // chat: null or the tools array
    std::optional<bool> enable_thinking; // chat_template_kwargs.enable_thinking
    chat::Json template_kwargs;          // every chat_template_kwargs entry (object or null)
    std::string prompt_text;             // completions: text prompt ...
    std::vector<int32_t> prompt_ids;     // ... or token ids
    bool prompt_is_ids = false;
    GenParams gen;
    bool stream = false;
    bool include_usage = false;
    bool continuous_usage = false;       // stream_options.continuous_usage_stats (vLLM): usage in every chunk
    bool logprobs = false;
    bool echo = false;
    bool ignore_eos = false;             // keep generating after end-of-generation tokens (benchmarks)
    std::vector<int32_t> stop_token_ids; // (vLLM) end tokens besides the model's
    // response_format json_object / json_schema (null: free text); gen.constraint gets it with the
    // reasoning mode the prompt implies (http_server.cpp)
    std::shared_ptr<const JsonSchema> response_schema;
    // tool_choice "required" or a named function: the answer is sampled as the calls (their
    // schema in response_schema) and comes back as tool_calls; forced_tool names the function
    bool forced_tools = false;
    std::string forced_tool;
};

// Error messages name the field: "max_tokens must be an integer >= 1".
Result<ApiRequest> parse_api_request(const chat::Json& body, bool chat, const ApiLimits& limits);

// {"error": {"message", "type", "param", "code"}} for an HTTP status.
nlohmann::json api_error(int status, const std::string& message);

}  // namespace tandem
