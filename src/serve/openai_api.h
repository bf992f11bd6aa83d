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
#include "serve/xml_calls.h"

namespace tandem {

struct ApiLimits {
    int64_t default_max_tokens = 1024;  // when the request names none (then clamped to the context)
    int64_t max_tokens_cap = 1 << 30;   // --max-new-tokens
    bool constrain_tool_calls = true;   // tool_choice auto: calls follow the tools' schemas (--no-tool-call-constraint)
};

// One prompt of /v1/completions: text, or token ids.
struct PromptInput {
    std::string text;
    std::vector<int32_t> ids;
    bool is_ids = false;
};

// Most choices one request may ask for (n x the prompts of a list).
inline constexpr int64_t kMaxChoices = 128;

struct ApiRequest {
    bool chat = false;
    std::string model;                   // empty when absent
    chat::Json messages;                 // chat: validated messages (content as text)
    chat::Json tools;                    // chat: null or the tools array
    std::optional<bool> enable_thinking; // chat_template_kwargs.enable_thinking
    chat::Json template_kwargs;          // every chat_template_kwargs entry (object or null)
    std::vector<PromptInput> prompts;    // completions: one or a list (choices prompt by prompt, n each)
    int64_t n = 1;                       // choices per prompt
    GenParams gen;
    bool stream = false;
    bool include_usage = false;
    bool continuous_usage = false;       // stream_options.continuous_usage_stats (vLLM): usage in every chunk
    bool logprobs = false;
    bool echo = false;                   // completions: the prompt comes back before the answer
    int prompt_logprobs = -1;            // (vLLM) the prompt's logprobs with this many alternatives
    bool ignore_eos = false;             // keep generating after end-of-generation tokens (benchmarks)
    std::vector<int32_t> stop_token_ids; // (vLLM) end tokens besides the model's
    // response_format json_object / json_schema (null: free text); gen.constraint gets it with the
    // reasoning mode the prompt implies (http_server.cpp)
    std::shared_ptr<const JsonSchema> response_schema;
    // tool_choice "required" or a named function: the answer is sampled as the calls (their
    // schema in response_schema) and comes back as tool_calls; forced_tool names the function
    bool forced_tools = false;
    std::string forced_tool;
    // tool_choice auto (tools offered, nothing else shaping the answer): what the model writes
    // after a <tool_call> marker, one call of one of the tools (JsonSchema::ToolShape::call; a
    // tool whose parameters do not compile takes any arguments object); max_tool_calls: 1 with
    // parallel_tool_calls false, else -1. Null when the server does not constrain tool calls or
    // the tools cannot be compiled at all (more than JsonSchema::kMaxLiterals).
    std::shared_ptr<const JsonSchema> tool_call_schema;
    std::shared_ptr<const XmlCallSchema> tool_call_xml;  // the same for XML calls (xml_calls.h: Qwen3-Coder)
    int64_t max_tool_calls = -1;  // 1: parallel_tool_calls false (at most one call comes back, however made)
};

// Error messages name the field: "max_tokens must be an integer >= 1".
Result<ApiRequest> parse_api_request(const chat::Json& body, bool chat, const ApiLimits& limits);

// {"error": {"message", "type", "param", "code"}} for an HTTP status.
nlohmann::json api_error(int status, const std::string& message);

}  // namespace tandem
