#include "serve/tool_calls.h"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "serve/request_json.h"
#include "serve/text_stream.h"
#include "serve/xml_calls.h"

namespace tandem {
namespace {
constexpr std::string_view kOpen = kToolCallOpen, kClose = kToolCallClose;

std::string trim(const std::string& s) {
    const size_t b = s.find_first_not_of(" \n\r\t");
    if (b == std::string::npos) return {};
    const size_t e = s.find_last_not_of(" \n\r\t");
    return s.substr(b, e - b + 1);
}
}  // namespace

ToolCallFormat tool_call_format(const std::string& chat_template) {
    return chat_template.find(kXmlFunction) != std::string::npos ? ToolCallFormat::xml : ToolCallFormat::json;
}

namespace {
using json = nlohmann::ordered_json;

// The value of parameter `param` of tool `fn` written as `text`: read by the rule of its schema in
// `tools` (xml_calls.h); a parameter no tool declares reads as JSON where the text is JSON.
json param_value(const json* tools, const std::string& fn, const std::string& param, const std::string& text) {
    if (tools && tools->is_array())
        for (const json& t : *tools) {
            const json* f = tool_function(t);
            if (!f || !f->contains("name") || (*f)["name"] != fn) continue;
            const auto ps = f->find("parameters");
            if (ps == f->end() || !ps->is_object() || !ps->contains("properties") || !(*ps)["properties"].is_object()) break;
            const json& props = (*ps)["properties"];
            if (const auto it = props.find(param); it != props.end()) return xml_value(xml_value_rule(*it), text);
            break;
        }
    json v = parse_json_bounded(text);
    return v.is_discarded() ? json(text) : v;
}

// One call's body in the xml format: "<function=NAME>" then parameters, then "</function>";
// false when it is not that.
bool parse_xml_call(const std::string& body, const nlohmann::ordered_json* tools, ToolCall& call) {
    constexpr std::string_view kFn = kXmlFunction, kFnEnd = kXmlFunctionEnd, kParam = kXmlParameter, kParamEnd = kXmlParameterEnd;
    if (body.rfind(kFn, 0) != 0) return false;
    const size_t name_end = body.find('>', kFn.size());
    if (name_end == std::string::npos) return false;
    call.name = trim(body.substr(kFn.size(), name_end - kFn.size()));
    if (call.name.empty()) return false;
    const size_t fn_end = body.rfind(kFnEnd);
    if (fn_end == std::string::npos || fn_end < name_end || !trim(body.substr(fn_end + kFnEnd.size())).empty()) return false;
    nlohmann::ordered_json args = nlohmann::ordered_json::object();
    size_t pos = name_end + 1;
    for (;;) {
        const size_t p = body.find(kParam, pos);
        if (p == std::string::npos || p >= fn_end) break;
        if (!trim(body.substr(pos, p - pos)).empty()) return false;  // text between parameters
        const size_t pn_end = body.find('>', p + kParam.size());
        if (pn_end == std::string::npos || pn_end >= fn_end) return false;
        const std::string pname = trim(body.substr(p + kParam.size(), pn_end - p - kParam.size()));
        // the value runs to the next </parameter> (a value the constraint held never holds one),
        // or, where none comes before </function>, to the next parameter or the function's end
        size_t v_end = body.find(kParamEnd, pn_end + 1);
        size_t next = v_end == std::string::npos ? std::string::npos : v_end + kParamEnd.size();
        if (v_end == std::string::npos || v_end > fn_end) {
            v_end = std::min(body.find(kParam, pn_end + 1), fn_end);
            next = v_end;
        }
        std::string value = body.substr(pn_end + 1, v_end - pn_end - 1);
        if (!value.empty() && value.front() == '\n') value.erase(0, 1);
        if (!value.empty() && value.back() == '\n') value.pop_back();
        if (pname.empty()) return false;
        args[pname] = param_value(tools, call.name, pname, value);
        pos = next;
    }
    if (!trim(body.substr(pos, fn_end - pos)).empty()) return false;
    call.arguments = args.dump();
    return true;
}
}  // namespace

ToolCallParse parse_tool_calls(const std::string& text, ToolCallFormat format, const nlohmann::ordered_json* tools) {
    ToolCallParse out;
    std::string rest;
    size_t pos = 0;
    for (;;) {
        // each closing marker with the opening one nearest before it (one the model spelled in
        // its text earlier stays text; the constraint keeps both out of a call's document)
        const size_t close = text.find(kClose, pos);
        if (close == std::string::npos) break;
        const size_t open = text.rfind(kOpen, close);
        if (open == std::string::npos || open < pos) {  // a closing marker alone: text
            rest += text.substr(pos, close + kClose.size() - pos);
            pos = close + kClose.size();
            continue;
        }
        const std::string body = trim(text.substr(open + kOpen.size(), close - open - kOpen.size()));
        ToolCall call;
        bool ok = false;
        if (format == ToolCallFormat::xml) {
            ok = parse_xml_call(body, tools, call);
        } else {
            const json j = parse_json_bounded(body);
            if (j.is_object() && j.contains("name") && j["name"].is_string()) {
                call.name = j["name"].get<std::string>();
                const json args = j.contains("arguments") ? j["arguments"] : json::object();
                call.arguments = args.is_string() ? args.get<std::string>() : args.dump();
                ok = true;
            }
        }
        if (ok) {
            out.calls.push_back(std::move(call));
            rest += text.substr(pos, open - pos);
        } else {
            rest += text.substr(pos, close + kClose.size() - pos);  // not a call: keep it as text
        }
        pos = close + kClose.size();
    }
    rest += text.substr(pos);
    out.content = out.calls.empty() ? text : trim(rest);
    return out;
}

ToolCallParse parse_forced_tool_calls(const std::string& text, const std::string& named) {
    ToolCallParse out;
    const json j = parse_json_bounded(text);
    if (!named.empty() && j.is_object()) {
        out.calls.push_back({named, j.dump()});
    } else if (named.empty() && j.is_array()) {
        for (const json& c : j)
            if (c.is_object() && c.contains("name") && c["name"].is_string() && c.contains("arguments"))
                out.calls.push_back({c["name"].get<std::string>(), c["arguments"].dump()});
    }
    if (out.calls.empty()) out.content = text;
    return out;
}

std::string ToolCallStream::flush() {
    std::string out;
    out.swap(pending_);
    return out;
}

std::string ToolCallStream::push(const std::string& text) {
    if (started_) {
        held_ += text;
        return {};
    }
    pending_ += text;
    const size_t at = pending_.find(kOpen);
    if (at != std::string::npos) {
        started_ = true;
        held_ = pending_.substr(at);
        std::string out = pending_.substr(0, at);
        pending_.clear();
        return out;
    }
    const size_t keep = partial_suffix(pending_, std::string(kOpen));
    std::string out = pending_.substr(0, pending_.size() - keep);
    pending_.erase(0, pending_.size() - keep);
    return out;
}

}  // namespace tandem
