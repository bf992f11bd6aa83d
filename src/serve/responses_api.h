// OpenAI's Responses API (POST /v1/responses), which Codex CLI and the OpenAI Agents SDK speak,
// over the same engine: the request is translated into the chat request it means (then validated
// by parse_api_request), and the answer is written back as output items (reasoning, message,
// function_call) or the response.* event stream (responses_output.cpp). The server is stateless:
// previous_response_id and conversation are refused; clients send the whole input.
#pragma once

#include "chat/value.h"
#include "core/status.h"

namespace tandem {

// The chat body of a Responses request: instructions as the system message; input as a text
// (one user message) or items: messages (input_text / output_text parts), function_call items as
// the assistant's tool_calls, function_call_output items as tool messages (reasoning items are
// dropped: the templates drop earlier reasoning too); function tools (other tool types, which
// only OpenAI's servers run, are left out); tool_choice, parallel_tool_calls, max_output_tokens,
// temperature, top_p, text.format (json_object / json_schema as response_format), reasoning.effort
// ("none" / "minimal": no thinking) and stream. Errors name the field.
Result<chat::Json> responses_to_openai(const chat::Json& body);

}  // namespace tandem
