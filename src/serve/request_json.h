// Reading request bodies of the OpenAI and Anthropic APIs: a member that may be absent, and text
// given as a string or as an array of typed parts.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>

#include "chat/value.h"
#include "core/status.h"

namespace tandem {

// JSON nesting deeper than this is refused before it is parsed: nlohmann's parser and destructor
// are iterative, but copies and dump() recurse once per level, so a body of 100,000 '[' would
// overflow a handler thread's stack.
inline constexpr int kMaxJsonDepth = 128;

// Whether the arrays and objects of a JSON text (valid or not) nest at most max_depth deep;
// brackets inside strings do not count.
inline bool json_depth_within(std::string_view text, int max_depth = kMaxJsonDepth) {
    int depth = 0;
    bool in_string = false, escaped = false;
    for (char c : text) {
        if (in_string) {
            if (escaped) escaped = false;
            else if (c == '\\') escaped = true;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth) return false;
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
    return true;
}

// The JSON a text holds, or a discarded value when it is not JSON or nests deeper than
// kMaxJsonDepth.
inline chat::Json parse_json_bounded(std::string_view text) {
    if (!json_depth_within(text)) return chat::Json(chat::Json::value_t::discarded);
    return chat::Json::parse(text, nullptr, /*allow_exceptions=*/false);
}

// A member of a JSON object, or null when it is absent or JSON null (the APIs treat both as "not
// given").
inline const chat::Json* json_field(const chat::Json& obj, const char* name) {
    auto it = obj.find(name);
    if (it == obj.end() || it->is_null()) return nullptr;
    return &*it;
}

// Text given as a string or as an array of parts {"type": T, "text": ...} where T is one of
// `types`, joined by `sep`. Another part type is an error naming `where` and the part: the models
// served read text.
Result<std::string> text_of_parts(const chat::Json& v, const std::string& where,
                                  std::initializer_list<const char*> types, const char* sep = "");

// An OpenAI chat tool {"type": "function", "function": {name, description, parameters}}, keys in
// OpenAI's order (chat templates print tools as JSON, so the order reaches the prompt).
inline chat::Json function_tool(const chat::Json& name, const chat::Json* description, const chat::Json& parameters) {
    chat::Json fn = {{"name", name}};
    if (description && description->is_string()) fn["description"] = *description;
    fn["parameters"] = parameters;
    return {{"type", "function"}, {"function", std::move(fn)}};
}

}  // namespace tandem
