// The Anthropic Messages API (POST /v1/messages, /v1/messages/count_tokens), which Claude Code and
// other Anthropic clients speak, over the same engine as the OpenAI API: a request is translated
// into the OpenAI chat request it means (then validated by parse_api_request), and the answer is
// written back as Anthropic content blocks (thinking, text, tool_use) or its stream events
// (completion_call.h).
#pragma once

#include <string>

#include "chat/value.h"
#include "core/status.h"
#include "serve/engine.h"

namespace tandem {

// The OpenAI chat body of a Messages request: system (text or text blocks) as the first message;
// user text and tool_result blocks as user / tool messages; assistant text, thinking and tool_use
// blocks as content, reasoning_content and tool_calls; stop_sequences as stop; tools
// ({name, description, input_schema}) as functions; tool_choice auto / any / tool / none and
// disable_parallel_tool_use; thinking enabled / disabled as enable_thinking; output_format
// (structured outputs) as a json_schema response_format. Image, document and
// server-tool blocks are refused (the models served read text). Errors name the field.
Result<chat::Json> anthropic_to_openai(const chat::Json& body);

// {"type": "error", "error": {"type", "message"}} with the error type of an HTTP status.
nlohmann::json anthropic_error(int status, const std::string& message);

// end_turn, max_tokens, stop_sequence or tool_use.
const char* anthropic_stop_reason(FinishReason finish, bool stop_sequence, bool tool_use);

}  // namespace tandem
