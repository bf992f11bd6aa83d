// Fuzz target: the Jinja-subset chat template parser and renderer must accept or reject any
// template text with an error, never crash, read out of bounds or loop forever. The input is
// the template; the context is a small fixed conversation (system, user, assistant with
// reasoning and a tool call, tool result) plus one tool, as a real render would see.
#include <cstddef>
#include <cstdint>
#include <string>

#include "chat/chat_template.h"

namespace {

const tandem::chat::Json& context() {
    static const tandem::chat::Json ctx = tandem::chat::Json::parse(R"({
      "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "<think>\nuse the tool\n</think>\n\nChecking.",
         "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "{\"temp\": 21}"},
        {"role": "user", "content": "Thanks \u00e9\u4e2d"}
      ],
      "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
      "add_generation_prompt": true,
      "enable_thinking": false,
      "bos_token": "",
      "eos_token": "<|im_end|>"
    })");
    return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 64 * 1024) return 0;  // templates are small; long inputs only slow the search
    const std::string source(reinterpret_cast<const char*>(data), size);
    auto t = tandem::ChatTemplate::parse(source);
    if (!t.ok()) return 0;
    auto text = t->render(context());
    volatile size_t keep = text.ok() ? text->size() : text.error().message.size();
    (void)keep;
    return 0;
}
