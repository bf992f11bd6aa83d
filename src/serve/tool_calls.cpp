#include "serve/tool_calls.h"

#include <nlohmann/json.hpp>

#include "serve/text_stream.h"

namespace tandem {
namespace {
const std::string kOpen = "<tool_call>", kClose = "</tool_call>";

std::string trim(const std::string& s) {
    const size_t b = s.find_first_not_of(" \n\r\t");
    if (b == std::string::npos) return {};
    const size_t e = s.find_last_not_of(" \n\r\t");
    return s.substr(b, e - b + 1);
}
}  // namespace

ToolCallParse parse_tool_calls(const std::string& text) {
    ToolCallParse out;
    std::string rest;
    size_t pos = 0;
    for (;;) {
        const size_t open = text.find(kOpen, pos);
        if (open == std::string::npos) break;
        const size_t close = text.find(kClose, open + kOpen.size());
        if (close == std::string::npos) break;
        const std::string body = trim(text.substr(open + kOpen.size(), close - open - kOpen.size()));
        nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
        if (j.is_object() && j.contains("name") && j["name"].is_string()) {
            ToolCall call;
            call.name = j["name"].get<std::string>();
            const nlohmann::json args = j.contains("arguments") ? j["arguments"] : nlohmann::json::object();
            call.arguments = args.is_string() ? args.get<std::string>() : args.dump();
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
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (!named.empty() && j.is_object()) {
        out.calls.push_back({named, j.dump()});
    } else if (named.empty() && j.is_array()) {
        for (const nlohmann::json& c : j)
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
    const size_t keep = partial_suffix(pending_, kOpen);
    std::string out = pending_.substr(0, pending_.size() - keep);
    pending_.erase(0, pending_.size() - keep);
    return out;
}

}  // namespace tandem
