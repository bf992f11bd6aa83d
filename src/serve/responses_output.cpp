// The Responses-API answers of a Call: one response object with its output items (reasoning,
// message, function_call), or the stream of response.created / .in_progress, then per item
// output_item.added, content_part.added, *.delta, *.done, content_part.done, output_item.done, and
// response.completed (or .incomplete at max_output_tokens, .failed on an error), every event
// numbered.
#include "serve/completion_call.h"
#include "serve/http_util.h"

namespace tandem {
namespace {

using json = nlohmann::json;

json usage_of(int64_t prompt, int64_t cached, int64_t generated) {
    return {{"input_tokens", prompt},
            {"input_tokens_details", {{"cached_tokens", cached}}},
            {"output_tokens", generated},
            {"output_tokens_details", {{"reasoning_tokens", 0}}},
            {"total_tokens", prompt + generated}};
}

json function_call_item(const std::string& id, const std::string& call_id, const ToolCall& c, const char* status) {
    return {{"type", "function_call"}, {"id", id},        {"call_id", call_id},
            {"name", c.name},          {"arguments", c.arguments}, {"status", status}};
}

}  // namespace

json Call::responses_text_item(const std::string& type, const std::string& id, const std::string& text,
                               const char* status) const {
    if (type == "reasoning")
        return {{"type", "reasoning"}, {"id", id}, {"summary", json::array()},
                {"content", json::array({{{"type", "reasoning_text"}, {"text", text}}})}};
    return {{"type", "message"},
            {"id", id},
            {"status", status},
            {"role", "assistant"},
            {"content", json::array({{{"type", "output_text"}, {"text", text}, {"annotations", json::array()},
                                      {"logprobs", json::array()}}})}};
}

// The response object; `done` (the finished choice) gives its status and usage.
json Call::response_object(const std::string& status, json output, const Gen* done) const {
    std::string text;
    for (const json& it : output)
        if (it["type"] == "message") text += it["content"][0]["text"].get<std::string>();
    json r = {{"id", id_},
              {"object", "response"},
              {"created_at", created_},
              {"status", status},
              {"model", model_},
              {"output", std::move(output)},
              {"output_text", text},
              {"error", nullptr},
              {"incomplete_details", nullptr},
              {"temperature", req_.gen.sampler.temperature},
              {"top_p", req_.gen.sampler.top_p},
              {"max_output_tokens", req_.gen.max_new_tokens}};
    const int64_t prompt = (int64_t)prompts_[0].ids.size();
    if (done) {
        r["usage"] = usage_of(prompt, done->stats.n_prefix_hit, done->stats.n_generated);
        if (done->finish == FinishReason::length) r["incomplete_details"] = {{"reason", "max_output_tokens"}};
    } else {
        r["usage"] = nullptr;
    }
    return r;
}

void Call::whole_responses(httplib::Response& res) {
    Gen& g = gens_[0];
    json output = json::array();
    if (!g.reasoning.empty()) output.push_back(responses_text_item("reasoning", fmt::format("rs_{}_0", id_), g.reasoning, "completed"));
    auto [text, calls] = answer_of(g);
    const char* status = g.finish == FinishReason::length ? "incomplete" : "completed";
    if (!text.empty() || (output.empty() && calls.empty()))  // (an empty answer: one empty message)
        output.push_back(responses_text_item("message", fmt::format("msg_{}_{}", id_, output.size()), text, status));
    for (size_t i = 0; i < calls.size(); ++i)
        output.push_back(function_call_item(fmt::format("fc_{}_{}", id_, i), fmt::format("call_{}_{}", call_id(g), i),
                                            calls[i], "completed"));
    res.set_content(dump_json(response_object(status, std::move(output), &g)), "application/json");
}

std::string Call::responses_event(const char* type, json data) {
    data["type"] = type;
    data["sequence_number"] = seq_no_++;
    return fmt::format("event: {}\ndata: {}\n\n", type, dump_json(data));
}

std::string Call::responses_stream_start() {
    json r = response_object("in_progress", json::array(), nullptr);
    std::string out = responses_event("response.created", {{"response", r}});
    return out + responses_event("response.in_progress", {{"response", r}});
}

std::string Call::responses_close_item(const char* status) {
    if (open_block_.empty()) return {};
    const int64_t index = next_block_ - 1;
    const bool reasoning = open_block_ == "reasoning";
    const json part = reasoning ? json{{"type", "reasoning_text"}, {"text", item_text_}}
                                : json{{"type", "output_text"}, {"text", item_text_}, {"annotations", json::array()},
                                       {"logprobs", json::array()}};
    std::string out = responses_event(reasoning ? "response.reasoning_text.done" : "response.output_text.done",
                                      {{"item_id", item_id_}, {"output_index", index}, {"content_index", 0},
                                       {"text", item_text_}});
    out += responses_event("response.content_part.done",
                           {{"item_id", item_id_}, {"output_index", index}, {"content_index", 0}, {"part", part}});
    json item = responses_text_item(open_block_, item_id_, item_text_, status);
    out += responses_event("response.output_item.done", {{"output_index", index}, {"item", item}});
    done_items_.push_back(std::move(item));
    open_block_.clear();
    return out;
}

std::string Call::responses_item(const std::string& type) {
    if (open_block_ == type) return {};
    std::string out = responses_close_item();
    const int64_t index = next_block_++;
    const bool reasoning = type == "reasoning";
    item_id_ = fmt::format("{}_{}_{}", reasoning ? "rs" : "msg", id_, index);
    item_text_.clear();
    json item = responses_text_item(type, item_id_, "", "in_progress");
    item["content"] = json::array();
    out += responses_event("response.output_item.added", {{"output_index", index}, {"item", item}});
    const json part = reasoning ? json{{"type", "reasoning_text"}, {"text", ""}}
                                : json{{"type", "output_text"}, {"text", ""}, {"annotations", json::array()},
                                       {"logprobs", json::array()}};
    out += responses_event("response.content_part.added",
                           {{"item_id", item_id_}, {"output_index", index}, {"content_index", 0}, {"part", part}});
    open_block_ = type;
    return out;
}

std::string Call::responses_stream_event(Gen& g, StreamEvent& ev) {
    StreamPieces p = take_pieces(g, ev);
    std::string out;
    auto delta = [&](const char* type, const std::string& text) {
        item_text_ += text;
        json d = {{"item_id", item_id_}, {"output_index", next_block_ - 1}, {"content_index", 0}, {"delta", text}};
        if (open_block_ == "message") d["logprobs"] = json::array();
        out += responses_event(type, std::move(d));
    };
    if (!p.reasoning.empty()) {
        out += responses_item("reasoning");
        delta("response.reasoning_text.delta", p.reasoning);
    }
    if (!p.text.empty()) {
        out += responses_item("message");
        delta("response.output_text.delta", p.text);
    }
    if (ev.finish == FinishReason::none) return out;
    if (failed_) {
        json r = response_object("failed", json::array(), nullptr);
        r["error"] = {{"code", "server_error"}, {"message", ev.error.empty() ? "the request was cancelled" : ev.error}};
        return out + responses_event("response.failed", {{"response", r}});
    }
    const bool incomplete = g.finish == FinishReason::length;
    if (next_block_ == 0 && p.calls.empty()) out += responses_item("message");  // an empty answer: one empty message
    out += responses_close_item(incomplete ? "incomplete" : "completed");
    for (size_t i = 0; i < p.calls.size(); ++i) {
        const int64_t index = next_block_++;
        const std::string id = fmt::format("fc_{}_{}", id_, i), cid = fmt::format("call_{}_{}", call_id(g), i);
        out += responses_event("response.output_item.added",
                               {{"output_index", index}, {"item", function_call_item(id, cid, {p.calls[i].name, ""}, "in_progress")}});
        out += responses_event("response.function_call_arguments.delta",
                               {{"item_id", id}, {"output_index", index}, {"delta", p.calls[i].arguments}});
        out += responses_event("response.function_call_arguments.done",
                               {{"item_id", id}, {"output_index", index}, {"name", p.calls[i].name},
                                {"arguments", p.calls[i].arguments}});
        json item = function_call_item(id, cid, p.calls[i], "completed");
        out += responses_event("response.output_item.done", {{"output_index", index}, {"item", item}});
        done_items_.push_back(std::move(item));
    }
    json r = response_object(incomplete ? "incomplete" : "completed", done_items_, &g);
    return out + responses_event(incomplete ? "response.incomplete" : "response.completed", {{"response", r}});
}

}  // namespace tandem
