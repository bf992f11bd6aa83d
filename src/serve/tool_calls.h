// Tool calls in generated text, in the two formats of the Qwen3 family:
//   json (Qwen3, Qwen3-2507, Hermes): <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>
//   xml (Qwen3-Coder, Qwen3.5):       <tool_call>\n<function=f>\n<parameter=p>\nVALUE\n</parameter>\n
//                                     </function>\n</tool_call>
// turned into OpenAI `tool_calls` (arguments as a JSON string). Only used when the request
// offered tools. Text that is not a well-formed call stays in the content.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace tandem {

// The markers around a call (special tokens of Qwen3's vocabulary), and the xml format's tags.
inline constexpr std::string_view kToolCallOpen = "<tool_call>", kToolCallClose = "</tool_call>";
inline constexpr std::string_view kXmlFunction = "<function=", kXmlFunctionEnd = "</function>", kXmlParameter = "<parameter=",
                                  kXmlParameterEnd = "</parameter>";

enum class ToolCallFormat { json, xml };

// The format a chat template teaches its model: xml where it writes kXmlFunction, else json.
ToolCallFormat tool_call_format(const std::string& chat_template);

struct ToolCall {
    std::string name;
    std::string arguments;  // JSON text
};

struct ToolCallParse {
    std::string content;           // the text without the parsed calls (trimmed)
    std::vector<ToolCall> calls;
};

// xml: each parameter's text (one newline around it dropped) becomes a JSON string where the
// tool's schema (`tools`: the request's OpenAI tools array, or null) types it "string" or the
// text is not JSON, and the JSON value it spells otherwise (numbers, booleans, objects, ...;
// True/False for a boolean parameter, as Jinja2 prints them).
ToolCallParse parse_tool_calls(const std::string& text, ToolCallFormat format = ToolCallFormat::json,
                               const nlohmann::ordered_json* tools = nullptr);

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
