// Tool calls in the XML format of Qwen3-Coder (tool_calls.h), as a byte-level recognizer like
// JsonMatcher (json_schema.h): what may follow a <tool_call> marker so that it stays a prefix of
//   <function=NAME>
//   <parameter=P>
//   VALUE
//   </parameter>
//   ...
//   </function>
// with NAME one of the offered tools, each P one of that tool's parameters (each at most once,
// every required one before </function>), and whitespace (at most JsonSchema::kMaxWs bytes)
// around the tags. A VALUE is free text up to </parameter> for string (or untyped) parameters;
// for the others it is what the template prints for them: a JSON document of the parameter's
// schema (numbers, objects, arrays; never holding the text </parameter>), true/false/True/False
// (booleans: Jinja2 prints True), null/None, or one of an enum's texts, with at most one newline
// on each side. Tools (and parameters) whose names the format cannot carry (empty, or with '>')
// are left out; a tool whose required parameter is left out, too.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "serve/json_schema.h"

namespace tandem {

// How the value of a parameter with this JSON Schema is written (as the template prints it) and
// read back: free text (strings, untyped), a JSON document (numbers, objects, arrays), a boolean,
// null, or one of an enum's texts (each standing for its JSON value).
struct XmlValueRule {
    enum class Kind { text, json, boolean, null, choice } kind = Kind::text;
    std::vector<std::string> texts;            // choice: as `| string` prints each value
    std::vector<nlohmann::ordered_json> values;  // choice: the values
    nlohmann::ordered_json schema;             // json: the parameter's schema
};
XmlValueRule xml_value_rule(const nlohmann::ordered_json& param_schema);

// The JSON value a parameter's text stands for under its rule (text that does not read as its
// kind stays a string).
nlohmann::ordered_json xml_value(const XmlValueRule& rule, const std::string& text);

// The function object of an OpenAI chat tool ({"type": "function", "function": {...}}), or null.
const nlohmann::ordered_json* tool_function(const nlohmann::ordered_json& tool);

class XmlCallSchema {
public:
    static constexpr int kMaxTools = 64, kMaxParams = 64;
    struct Param {
        std::string name;
        std::shared_ptr<const JsonSchema> value;  // null: free text
    };
    static bool carries(const std::string& name) { return !name.empty() && name.find('>') == std::string::npos; }
    struct Tool {
        std::string name;
        std::vector<Param> params;
        uint64_t required = 0;  // bit i: params[i]
    };
    // From an OpenAI tools array; an error for more than kMaxTools tools or kMaxParams
    // parameters of one tool, or when no tool is left.
    static Result<std::shared_ptr<const XmlCallSchema>> from_tools(const nlohmann::ordered_json& tools);
    const std::vector<Tool>& tools() const { return tools_; }

private:
    std::vector<Tool> tools_;
};

class XmlCallMatcher {
public:
    explicit XmlCallMatcher(std::shared_ptr<const XmlCallSchema> schema);
    // As JsonMatcher: false (the state then undefined: feed a copy) when no call starts so.
    bool feed_byte(uint8_t c);
    bool feed(std::string_view bytes);
    bool can_end() const { return phase_ == Phase::end_ws; }

private:
    enum class Phase : uint8_t { lead_ws, open_fn, fn_name, between, tag, param_name, value_text, pre_value, value_doc,
                                 post_value, close_param, end_ws };
    bool step(uint8_t c);
    bool take_ws();

    std::shared_ptr<const XmlCallSchema> schema_;
    Phase phase_ = Phase::lead_ws;
    int32_t pos_ = 0;        // bytes of the current tag or name matched
    uint64_t mask_ = 0;      // names (tools, parameters, or the two tags) still matching
    int32_t tool_ = -1, param_ = -1;
    uint64_t seen_ = 0;      // parameters given
    int32_t ws_ = 0;         // whitespace run
    std::optional<JsonMatcher> doc_;
    int32_t doc_close_ = 0;  // bytes of </parameter> the document's last bytes spell
};

}  // namespace tandem
