// One request of the chat/completions/messages APIs while it runs (internal to the server):
// its choices (an engine request each), waited on together, and their events turned into the
// answer of its API. completions.cpp: parsing, submission, waiting, the OpenAI answers;
// anthropic_messages.cpp: the Anthropic answers.
#pragma once

#include <httplib.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "serve/completions.h"
#include "serve/openai_api.h"
#include "serve/text_stream.h"
#include "serve/tool_calls.h"

namespace tandem {

enum class Api { chat, completions, messages, responses };

// One choice: an engine request and what its client has been sent or will be.
struct Gen {
    int64_t index = 0;
    size_t prompt_i = 0;
    std::shared_ptr<RequestHandle> handle;
    std::unique_ptr<ThinkSplitter> think;   // chat only
    std::unique_ptr<ToolCallStream> tools;  // chat with tools: holds text from <tool_call> on
    FinishReason finish = FinishReason::none;
    std::string error, stop_string;
    RequestStats stats;
    std::string content, reasoning;
    std::vector<TokenLogprob> logprobs, prompt_logprobs;
    int64_t text_offset = 0;  // completions logprobs: bytes of text before the next token
    bool opened = false;      // streaming: its role chunk (chat) or its echo (completions) went out
    bool done() const { return finish != FinishReason::none; }
};

struct Prompt {
    std::vector<int32_t> ids;
    std::string text;  // as the client gave it, or its ids decoded (echo)
};

// What one engine event of a streamed choice adds, after the reasoning split and the tool-call
// hold-back: at the end, the calls parsed from what was held.
struct StreamPieces {
    std::string reasoning, text;
    std::vector<ToolCall> calls;
};

class Call {
public:
    Call(const CompletionContext& ctx, Api api) : ctx_(ctx), api_(api), chat_api_(api != Api::completions) {}

    // Parses the body, renders or tokenizes the prompts and submits every choice; on error
    // fills res (cancelling what was submitted) and returns false.
    bool start(const httplib::Request& req, httplib::Response& res);
    void respond_whole(const httplib::Request& req, httplib::Response& res);
    static void respond_stream(std::shared_ptr<Call> self, const httplib::Request& req, httplib::Response& res);
    bool streaming() const { return req_.stream; }
    // POST /v1/messages/count_tokens: {"input_tokens": the rendered prompt's length}
    void count_tokens(const httplib::Request& req, httplib::Response& res);

private:
    struct Rendered {
        std::vector<int32_t> ids;
        bool think_opened = false;  // the template opened the reasoning block
        ThinkMode mode = ThinkMode::none;
    };
    bool parse(const httplib::Request& req, httplib::Response& res);  // the body into req_
    Result<Rendered> render_conversation() const;                     // req_'s messages (error: a 400)
    bool fail(httplib::Response& res, int status, const std::string& msg) const;
    bool all_done() const {
        for (const Gen& g : gens_)
            if (!g.done()) return false;
        return true;
    }
    void cancel_all() {
        for (Gen& g : gens_)
            if (!g.done()) g.handle->cancel();
    }
    // Hands the pending events of every choice to fn(gen, event), in each choice's order; waits
    // up to `timeout` for one when none is pending. False when none came.
    template <class F>
    bool poll(std::chrono::milliseconds timeout, F&& fn);
    // Cancels every choice and waits (a second at most without news) until the engine dropped
    // them, so that their pages are free when the handler returns.
    void cancel_and_wait();
    void accumulate(Gen& g, StreamEvent& ev);
    StreamPieces take_pieces(Gen& g, StreamEvent& ev);
    ToolCallParse parse_calls(const std::string& text) const {
        ToolCallParse tc = req_.forced_tools ? parse_forced_tool_calls(text, req_.forced_tool)
                                             : parse_tool_calls(text, ctx_.tool_format, &req_.tools);
        // parallel_tool_calls false: one call (the marker may also be spelled with plain tokens,
        // which the constraint does not count)
        if (req_.max_tool_calls == 1 && tc.calls.size() > 1) tc.calls.resize(1);
        return tc;
    }
    // A finished chat answer: its text and the tool calls parsed from it (none without tools,
    // or when none parses: then the text is all of it)
    ToolCallParse answer_of(const Gen& g) const {
        if (g.tools)
            if (ToolCallParse tc = parse_calls(g.content); !tc.calls.empty()) return tc;
        return {g.content, {}};
    }
    // the prefix of a choice's tool call ids: the response id (and the choice index after the first)
    std::string call_id(const Gen& g) const { return g.index == 0 ? id_ : fmt::format("{}_{}", id_, g.index); }
    int64_t prompt_tokens() const;

    // OpenAI (completions.cpp)
    void whole_openai(httplib::Response& res);
    std::string openai_stream_event(Gen& g, StreamEvent& ev);
    std::string openai_stream_end();
    std::string chunk(const Gen& g, nlohmann::json delta_or_text, const nlohmann::json& finish,
                      const nlohmann::json& lps) const;
    nlohmann::json usage() const;
    nlohmann::json timings() const;
    nlohmann::json token_logprob(int32_t id, float lp) const;
    nlohmann::json chat_logprobs(const std::vector<TokenLogprob>& lps) const;
    // The legacy completions object {tokens, token_logprobs, top_logprobs, text_offset} for the
    // prompt's tokens (echo: the first has no logprob) and/or generated ones; advances g.text_offset.
    nlohmann::json completion_logprobs(Gen& g, const Prompt* echo, const std::vector<TokenLogprob>& generated) const;
    // vLLM's prompt_logprobs: [null, {"id": {logprob, rank, decoded_token}}, ...]
    nlohmann::json vllm_prompt_logprobs(const Gen& g) const;

    // Anthropic (anthropic_messages.cpp)
    void whole_anthropic(httplib::Response& res);
    std::string anthropic_stream_start();
    std::string anthropic_stream_event(Gen& g, StreamEvent& ev);
    std::string anthropic_block(const std::string& type);  // closes the open block, opens one of `type`
    std::string anthropic_close_block();
    nlohmann::json anthropic_usage(const Gen& g) const;
    std::string tool_use_id(const Gen& g, size_t i) const { return fmt::format("toolu_{}_{}", call_id(g), i); }

    // OpenAI Responses (responses_output.cpp)
    void whole_responses(httplib::Response& res);
    std::string responses_stream_start();
    std::string responses_stream_event(Gen& g, StreamEvent& ev);
    std::string responses_event(const char* type, nlohmann::json data);  // numbered in sequence
    std::string responses_item(const std::string& type);  // closes the open item, opens one of `type`
    std::string responses_close_item(const char* status = "completed");
    nlohmann::json response_object(const std::string& status, nlohmann::json output, const Gen* done) const;
    nlohmann::json responses_text_item(const std::string& type, const std::string& id, const std::string& text,
                                       const char* status) const;

    const CompletionContext ctx_;  // (references to the server's parts, which outlive every call)
    const Api api_;
    const bool chat_api_;          // chat or messages: a rendered conversation
    ApiRequest req_;
    std::string id_;
    std::string model_;            // the name answers carry
    int64_t created_ = 0;
    std::vector<Prompt> prompts_;
    std::vector<Gen> gens_;
    std::shared_ptr<EventSignal> signal_ = std::make_shared<EventSignal>();
    int64_t n_streamed_ = 0;       // all choices, for continuous usage
    bool failed_ = false;          // streaming: a choice ended with an error, the stream ends
    // Anthropic / Responses streaming: the content block (output item) open now ("" none), the
    // next one's index; Responses: the open item's id and text, the events' sequence number
    std::string open_block_;
    int64_t next_block_ = 0;
    std::string item_id_, item_text_;
    int64_t seq_no_ = 0;
    nlohmann::json done_items_ = nlohmann::json::array();  // Responses: the finished output items
};

}  // namespace tandem
