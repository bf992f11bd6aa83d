// Tool calls in generated text, Qwen3 / Hermes style:
//   <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>
// turned into OpenAI `tool_calls` (arguments as a JSON string). Only used when the request
// offered tools. Text that is not a well-formed call stays in the content.
#pragma once

#include <string>
#include <vector>

namespace tandem {

struct ToolCall {
    std::string name;
    std::string arguments;  // JSON text
};

struct ToolCallParse {
    std::string content;           // the text without the parsed calls (trimmed)
    std::vector<ToolCall> calls;
};

ToolCallParse parse_tool_calls(const std::string& text);

// tool_choice "required" or a named function: the answer was sampled as JSON (json_schema.h,
// JsonSchema::tool_calls): an array of {"name", "arguments"} calls, or (`named` not empty) that
// function's arguments. Text that does not parse (cut short by max_tokens) stays the content.
ToolCallParse parse_forced_tool_calls(const std::string& text, const std::string& named);

// Streaming: passes text through until a "<tool_call>" marker appears; from there on holds the
// rest for parse_tool_calls at the end.
class ToolCallStream {
public:
    // hold_all: every byte is held (a forced tool call: the whole answer is the calls)
    explicit ToolCallStream(bool hold_all = false) : started_(hold_all) {}
    std::string push(const std::string& text);  // content safe to stream now
    std::string held() const { return held_; }  // the part from the first marker on
    std::string flush();                         // end: a held partial marker that never completed
    bool started() const { return started_; }

private:
    std::string pending_;  // possible start of the marker
    std::string held_;
    bool started_ = false;
};

}  // namespace tandem
