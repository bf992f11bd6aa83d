// The Anthropic answers of a Call: one message with its content blocks, or the stream of
// message_start, content_block_start / _delta / _stop (thinking, text, tool_use), message_delta
// and message_stop events.
#include "serve/anthropic_api.h"
#include "serve/completion_call.h"
#include "serve/http_util.h"

namespace tandem {
namespace {

using json = nlohmann::json;

std::string event(const char* name, const json& data) {
    return fmt::format("event: {}\ndata: {}\n\n", name, dump_json(data));
}

// A call's arguments as the object Anthropic's tool_use.input is (text that does not parse as
// an object, which a forced call cut by max_tokens can be, comes back as {}).
json input_of(const ToolCall& c) {
    json v = json::parse(c.arguments, nullptr, false);
    return v.is_object() ? v : json::object();
}

}  // namespace

json Call::anthropic_usage(const Gen& g) const {
    const int64_t cached = g.stats.n_prefix_hit;
    return {{"input_tokens", (int64_t)prompts_[g.prompt_i].ids.size() - cached},
            {"output_tokens", g.stats.n_generated},
            {"cache_read_input_tokens", cached},
            {"cache_creation_input_tokens", 0}};
}

void Call::whole_anthropic(httplib::Response& res) {
    Gen& g = gens_[0];
    json content = json::array();
    if (!g.reasoning.empty()) content.push_back({{"type", "thinking"}, {"thinking", g.reasoning}, {"signature", ""}});
    auto [text, calls] = answer_of(g);
    if (!text.empty() || (content.empty() && calls.empty())) content.push_back({{"type", "text"}, {"text", text}});
    for (size_t i = 0; i < calls.size(); ++i)
        content.push_back({{"type", "tool_use"}, {"id", tool_use_id(g, i)}, {"name", calls[i].name}, {"input", input_of(calls[i])}});
    json out = {{"id", id_},
                {"type", "message"},
                {"role", "assistant"},
                {"model", model_},
                {"content", content},
                {"stop_reason", anthropic_stop_reason(g.finish, !g.stop_string.empty(), !calls.empty())},
                {"stop_sequence", g.stop_string.empty() ? json(nullptr) : json(g.stop_string)},
                {"usage", anthropic_usage(g)}};
    res.set_content(dump_json(out), "application/json");
}

std::string Call::anthropic_stream_start() {
    json usage = {{"input_tokens", (int64_t)prompts_[0].ids.size()}, {"output_tokens", 0}};
    json msg = {{"id", id_},          {"type", "message"},      {"role", "assistant"},
                {"model", model_},    {"content", json::array()}, {"stop_reason", nullptr},
                {"stop_sequence", nullptr}, {"usage", usage}};
    return event("message_start", {{"type", "message_start"}, {"message", msg}});
}

std::string Call::anthropic_close_block() {
    if (open_block_.empty()) return {};
    std::string out;
    if (open_block_ == "thinking")
        out += event("content_block_delta", {{"type", "content_block_delta"},
                                             {"index", next_block_ - 1},
                                             {"delta", {{"type", "signature_delta"}, {"signature", ""}}}});
    out += event("content_block_stop", {{"type", "content_block_stop"}, {"index", next_block_ - 1}});
    open_block_.clear();
    return out;
}

std::string Call::anthropic_block(const std::string& type) {
    if (open_block_ == type) return {};
    std::string out = anthropic_close_block();
    json block = type == "thinking" ? json{{"type", "thinking"}, {"thinking", ""}, {"signature", ""}}
                                    : json{{"type", "text"}, {"text", ""}};
    out += event("content_block_start", {{"type", "content_block_start"}, {"index", next_block_++}, {"content_block", block}});
    open_block_ = type;
    return out;
}

std::string Call::anthropic_stream_event(Gen& g, StreamEvent& ev) {
    StreamPieces p = take_pieces(g, ev);
    std::string out;
    auto delta = [&](const char* type, const char* key, const std::string& text) {
        out += event("content_block_delta", {{"type", "content_block_delta"},
                                             {"index", next_block_ - 1},
                                             {"delta", {{"type", type}, {key, text}}}});
    };
    if (!p.reasoning.empty()) {
        out += anthropic_block("thinking");
        delta("thinking_delta", "thinking", p.reasoning);
    }
    if (!p.text.empty()) {
        out += anthropic_block("text");
        delta("text_delta", "text", p.text);
    }
    if (ev.finish == FinishReason::none) return out;
    if (failed_) {
        const std::string msg = ev.error.empty() ? "the request was cancelled" : ev.error;
        return out + event("error", anthropic_error(503, msg));
    }
    if (next_block_ == 0 && p.calls.empty()) out += anthropic_block("text");  // an empty answer: one empty text block
    out += anthropic_close_block();
    for (size_t i = 0; i < p.calls.size(); ++i) {
        const int64_t index = next_block_++;
        json block = {{"type", "tool_use"}, {"id", tool_use_id(g, i)}, {"name", p.calls[i].name}, {"input", json::object()}};
        out += event("content_block_start", {{"type", "content_block_start"}, {"index", index}, {"content_block", block}});
        out += event("content_block_delta", {{"type", "content_block_delta"},
                                             {"index", index},
                                             {"delta", {{"type", "input_json_delta"}, {"partial_json", input_of(p.calls[i]).dump()}}}});
        out += event("content_block_stop", {{"type", "content_block_stop"}, {"index", index}});
    }
    json stop = {{"stop_reason", anthropic_stop_reason(g.finish, !g.stop_string.empty(), !p.calls.empty())},
                 {"stop_sequence", g.stop_string.empty() ? json(nullptr) : json(g.stop_string)}};
    out += event("message_delta", {{"type", "message_delta"}, {"delta", stop}, {"usage", anthropic_usage(g)}});
    out += event("message_stop", {{"type", "message_stop"}});
    return out;
}

}  // namespace tandem
