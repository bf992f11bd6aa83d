// Server pieces without a model: stop strings across pieces, the reasoning split, request
// validation, metrics text.
#include <gtest/gtest.h>

#include <fstream>
#include <limits>
#include <random>

#include "chat/chat_template.h"
#include "serve/anthropic_api.h"
#include "serve/engine.h"
#include "serve/metrics.h"
#include "serve/openai_api.h"
#include "serve/request_json.h"
#include "serve/responses_api.h"
#include "serve/text_stream.h"
#include "serve/tool_calls.h"

namespace tandem {
namespace {

// Feeds text split at every position given by `cuts` and returns the concatenated output.
std::string feed(StopMatcher& m, const std::string& text, const std::vector<size_t>& cuts) {
    std::string out;
    size_t prev = 0;
    for (size_t c : cuts) {
        out += m.push(text.substr(prev, c - prev));
        prev = c;
    }
    out += m.push(text.substr(prev));
    out += m.flush();
    return out;
}

TEST(AdjustLogits, BiasThenPenaltiesThenMinTokens) {
    GenParams p;
    p.logit_bias = {{0, 2.0f}, {5, -1.0f}};
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    p.repetition_penalty = 2.0f;
    p.stop_ids = {7};
    p.min_tokens = 3;
    const std::unordered_map<int32_t, int> counts = {{1, 2}, {2, 1}};  // generated: 1 twice, 2 once
    const std::vector<int32_t> seen = {1, 2, 3, 4};                    // prompt 3, 4 and the output
    std::vector<float> row = {1.0f, 4.0f, -2.0f, 6.0f, -3.0f, 0.5f, 9.0f, 8.0f};
    adjust_logits(row.data(), p, counts, seen, 2);
    EXPECT_EQ(row[0], 3.0f);                          // bias only
    EXPECT_EQ(row[1], (4.0f - 0.5f - 0.5f) / 2.0f);   // presence + 2 x frequency, then / 2 (positive)
    EXPECT_EQ(row[2], (-2.0f - 0.5f - 0.25f) * 2.0f); // ..., then x 2 (negative)
    EXPECT_EQ(row[3], 3.0f);                          // in the prompt only: / 2
    EXPECT_EQ(row[4], -6.0f);                         // x 2
    EXPECT_EQ(row[5], -0.5f);                         // bias only
    EXPECT_EQ(row[6], 9.0f);                          // untouched
    EXPECT_EQ(row[7], -std::numeric_limits<float>::infinity());  // a stop id before min_tokens
    row[7] = 8.0f;
    GenParams q = p;
    q.logit_bias.clear();
    q.presence_penalty = q.frequency_penalty = 0.0f;
    q.repetition_penalty = 1.0f;
    std::vector<float> same = row;
    adjust_logits(same.data(), q, counts, seen, 3);  // nothing asked, min_tokens reached: unchanged
    EXPECT_EQ(same, row);
}

TEST(StopMatcher, StopsBeforeTheFirstMatchWhateverTheSplit) {
    const std::string text = "Hello, world! The end. More text.";
    std::mt19937 rng(1);
    for (int trial = 0; trial < 200; ++trial) {
        std::vector<size_t> cuts;
        for (size_t i = 1; i < text.size(); ++i)
            if (rng() % 3 == 0) cuts.push_back(i);
        StopMatcher m({"The end", "xyz"});
        EXPECT_EQ(feed(m, text, cuts), "Hello, world! ");
        EXPECT_TRUE(m.stopped());
        EXPECT_EQ(m.matched(), "The end");
    }
}

TEST(StopMatcher, EarliestMatchWinsAndNothingIsHeldWithoutStops) {
    StopMatcher m({"world", "lo"});
    EXPECT_EQ(feed(m, "Hello world", {3, 4}), "Hel");
    StopMatcher none({});
    EXPECT_EQ(none.push("abc"), "abc");  // immediate: nothing held back
    StopMatcher partial({"abcd"});
    EXPECT_EQ(partial.push("xxab"), "xx");  // "ab" could start a stop string
    EXPECT_EQ(partial.push("cX"), "abcX");
    EXPECT_FALSE(partial.stopped());
    EXPECT_EQ(partial.push("ab"), "");
    EXPECT_EQ(partial.flush(), "ab");  // the end of the stream releases a partial match
}

TEST(StopMatcher, EmptyStopStringsAreIgnored) {
    StopMatcher m({""});
    EXPECT_EQ(m.push("abc"), "abc");
    EXPECT_FALSE(m.stopped());
}

ThinkSplitter::Out split_all(ThinkSplitter& t, const std::string& text, size_t step) {
    ThinkSplitter::Out all;
    for (size_t i = 0; i < text.size(); i += step) {
        auto o = t.push(text.substr(i, step));
        all.reasoning += o.reasoning;
        all.content += o.content;
    }
    auto o = t.flush();
    all.reasoning += o.reasoning;
    all.content += o.content;
    return all;
}

TEST(ThinkSplitter, SeparatesReasoningFromTheAnswerAtAnySplit) {
    const std::string text = "<think>\nLet me think.\n</think>\n\nThe answer is 4.";
    for (size_t step = 1; step <= text.size(); ++step) {
        ThinkSplitter t;
        auto o = split_all(t, text, step);
        EXPECT_EQ(o.reasoning, "\nLet me think.\n") << "step " << step;
        EXPECT_EQ(o.content, "The answer is 4.") << "step " << step;
    }
}

TEST(ThinkSplitter, PromptThatOpenedReasoningAndPlainAnswers) {
    ThinkSplitter opened(true);
    auto o = split_all(opened, "step 1</think>done", 2);
    EXPECT_EQ(o.reasoning, "step 1");
    EXPECT_EQ(o.content, "done");
    ThinkSplitter plain;
    o = split_all(plain, "No thinking here, <think> later is text.", 3);
    EXPECT_EQ(o.reasoning, "");
    EXPECT_EQ(o.content, "No thinking here, <think> later is text.");
    ThinkSplitter unterminated;
    o = split_all(unterminated, "<think>still going", 4);
    EXPECT_EQ(o.reasoning, "still going");
    EXPECT_EQ(o.content, "");
}

Result<ApiRequest> parse(const std::string& body, bool chat) {
    return parse_api_request(chat::Json::parse(body), chat, ApiLimits{});
}

TEST(OpenAiRequest, ParsesEveryField) {
    auto r = parse(R"({"model": "m", "messages": [{"role": "developer", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "1", "type": "function",
          "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
        {"role": "tool", "tool_call_id": "1", "content": "r"}],
        "max_completion_tokens": 7, "temperature": 0.5, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "seed": 3,
        "stop": ["x", "y"], "presence_penalty": 1, "frequency_penalty": -1, "stream": true,
        "stream_options": {"include_usage": true, "continuous_usage_stats": true}, "logprobs": true, "top_logprobs": 4,
        "chat_template_kwargs": {"enable_thinking": false}, "unknown_field": 1})",
                   true);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->model, "m");
    EXPECT_EQ(r->messages[0]["role"], "system");
    EXPECT_EQ(r->messages[1]["content"], "ab");
    EXPECT_EQ(r->messages[2]["content"], "");
    EXPECT_EQ(r->messages[2]["tool_calls"][0]["function"]["arguments"]["x"], 1);  // parsed for the template
    EXPECT_EQ(r->messages[3]["tool_call_id"], "1");
    EXPECT_EQ(r->gen.max_new_tokens, 7);
    EXPECT_FLOAT_EQ(r->gen.sampler.temperature, 0.5f);
    EXPECT_FLOAT_EQ(r->gen.sampler.top_p, 0.9f);
    EXPECT_EQ(r->gen.sampler.top_k, 40);
    EXPECT_FLOAT_EQ(r->gen.sampler.min_p, 0.05f);
    EXPECT_EQ(r->gen.sampler.seed, 3u);
    EXPECT_EQ(r->gen.stop, (std::vector<std::string>{"x", "y"}));
    EXPECT_FLOAT_EQ(r->gen.presence_penalty, 1.0f);
    EXPECT_FLOAT_EQ(r->gen.frequency_penalty, -1.0f);
    EXPECT_TRUE(r->stream);
    EXPECT_TRUE(r->include_usage);
    EXPECT_TRUE(r->continuous_usage);
    EXPECT_EQ(r->gen.top_logprobs, 4);
    ASSERT_TRUE(r->enable_thinking.has_value());
    EXPECT_FALSE(*r->enable_thinking);

    auto c = parse(R"({"prompt": [[1, 2, 3]], "logprobs": 2, "max_tokens": 1e2})", false);
    ASSERT_TRUE(c.ok()) << c.error().message;
    ASSERT_EQ(c->prompts.size(), 1u);
    EXPECT_TRUE(c->prompts[0].is_ids);
    EXPECT_EQ(c->prompts[0].ids, (std::vector<int32_t>{1, 2, 3}));
    EXPECT_EQ(c->gen.top_logprobs, 2);
    EXPECT_EQ(c->gen.prompt_logprobs, -1);  // no echo: the prompt's are not computed
    EXPECT_EQ(c->gen.max_new_tokens, 100);
    EXPECT_FLOAT_EQ(c->gen.sampler.temperature, 1.0f);  // OpenAI's default
    EXPECT_EQ(c->n, 1);

    // a list of prompts (texts or ids), n choices each; echo with logprobs asks for the prompt's
    auto l = parse(R"({"prompt": ["ab", [4, 5]], "n": 3, "echo": true, "logprobs": 1, "max_tokens": 0})", false);
    ASSERT_TRUE(l.ok()) << l.error().message;
    ASSERT_EQ(l->prompts.size(), 2u);
    EXPECT_EQ(l->prompts[0].text, "ab");
    EXPECT_FALSE(l->prompts[0].is_ids);
    EXPECT_EQ(l->prompts[1].ids, (std::vector<int32_t>{4, 5}));
    EXPECT_EQ(l->n, 3);
    EXPECT_TRUE(l->echo);
    EXPECT_EQ(l->gen.max_new_tokens, 0);
    EXPECT_EQ(l->gen.prompt_logprobs, 1);
    auto v = parse(R"({"prompt": [7], "prompt_logprobs": 3, "logprobs": 1, "echo": true})", false);
    ASSERT_TRUE(v.ok()) << v.error().message;
    EXPECT_EQ(v->prompts[0].ids, (std::vector<int32_t>{7}));
    EXPECT_EQ(v->prompt_logprobs, 3);
    EXPECT_EQ(v->gen.prompt_logprobs, 3);  // the larger of the two asks
    auto e = parse(R"({"prompt": "a", "echo": true})", false);
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e->gen.prompt_logprobs, -1);  // echo alone needs no logits
}

TEST(OpenAiRequest, RejectsInvalidFieldsWithTheirName) {
    const std::pair<const char*, const char*> bad[] = {
        {R"({"prompt": "a", "max_tokens": 0})", "max_tokens"},
        {R"({"prompt": "a", "max_tokens": 1.5})", "max_tokens"},
        {R"({"prompt": "a", "max_tokens": 99999999999999999999})", "max_tokens"},
        {R"({"prompt": "a", "temperature": 3})", "temperature"},
        {R"({"prompt": "a", "top_p": 0})", "top_p"},
        {R"({"prompt": "a", "min_p": -0.1})", "min_p"},
        {R"({"prompt": "a", "n": 0})", "n is out of range"},
        {R"({"prompt": "a", "n": 129})", "n is out of range"},
        {R"({"prompt": ["a", "b", "c"], "n": 64})", "choices"},
        {R"({"prompt": ["a", 5]})", "prompt[1]"},
        {R"({"prompt": ["a", ""]})", "prompt[1] is empty"},
        {R"({"prompt": [[1], []]})", "prompt[1]"},
        {R"({"prompt": "a", "prompt_logprobs": 21})", "prompt_logprobs"},
        {R"({"prompt": "a", "echo": 1})", "echo"},
        {R"({"prompt": "a", "stop": [1]})", "stop"},
        {R"({"prompt": "a", "stream": 1})", "stream"},
        {R"({"prompt": "a", "stream_options": {"continuous_usage_stats": 1}})", "continuous_usage_stats"},
        {R"({"prompt": [1, "x"]})", "prompt"},
        {R"({"prompt": {}})", "prompt"},
        {R"({"prompt": "a", "logprobs": 21})", "logprobs"},
        {R"({"prompt": "a", "model": 5})", "model"},
    };
    for (auto [body, word] : bad) {
        auto r = parse(body, false);
        ASSERT_FALSE(r.ok()) << body;
        EXPECT_NE(r.error().message.find(word), std::string::npos) << body << " -> " << r.error().message;
    }
    const char* bad_chat[] = {
        R"({"messages": []})",
        R"({"messages": [{"content": "x"}]})",
        R"({"messages": [{"role": "user"}]})",
        R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
        R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})",
        R"({"messages": [{"role": "user", "content": "x"}], "tools": {}})",
        R"({"messages": [{"role": "user", "content": "x"}], "chat_template_kwargs": {"enable_thinking": "no"}})",
    };
    for (const char* body : bad_chat) EXPECT_FALSE(parse(body, true).ok()) << body;
    EXPECT_FALSE(parse_api_request(chat::Json::array(), true, ApiLimits{}).ok());
}

TEST(OpenAiRequest, MaxTokensIsCappedAndDefaulted) {
    ApiLimits lim;
    lim.default_max_tokens = 50;
    lim.max_tokens_cap = 80;
    auto r = parse_api_request(chat::Json::parse(R"({"prompt": "a"})"), false, lim);
    EXPECT_EQ(r->gen.max_new_tokens, 50);
    r = parse_api_request(chat::Json::parse(R"({"prompt": "a", "max_tokens": 1000})"), false, lim);
    EXPECT_EQ(r->gen.max_new_tokens, 80);
}

TEST(AnthropicRequest, TranslatesIntoTheOpenAiChatRequestItMeans) {
    auto body = chat::Json::parse(R"({
        "model": "claude-x", "max_tokens": 9, "temperature": 0.3, "top_k": 5, "stream": true,
        "system": [{"type": "text", "text": "Be"}, {"type": "text", "text": "brief."}],
        "stop_sequences": ["END"],
        "messages": [
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "easy", "signature": "s"},
                {"type": "text", "text": "Let me add."},
                {"type": "tool_use", "id": "toolu_1", "name": "add", "input": {"a": 2, "b": 2}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "4"}]},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "bad", "is_error": true},
                {"type": "text", "text": "Thanks"}]}],
        "tools": [{"name": "add", "description": "adds", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "thinking": {"type": "enabled", "budget_tokens": 100},
        "metadata": {"user_id": "u"}
    })");
    auto r = anthropic_to_openai(body);
    ASSERT_TRUE(r.ok()) << r.error().message;
    const chat::Json& o = *r;
    EXPECT_EQ(o["model"], "claude-x");
    EXPECT_EQ(o["max_tokens"], 9);
    EXPECT_EQ(o["top_k"], 5);
    EXPECT_EQ(o["stream"], true);
    EXPECT_EQ(o["stop"], chat::Json::array({"END"}));
    const chat::Json& m = o["messages"];
    ASSERT_EQ(m.size(), 6u);
    EXPECT_EQ(m[0], chat::Json({{"role", "system"}, {"content", "Be\nbrief."}}));
    EXPECT_EQ(m[1]["content"], "What is 2+2?");
    EXPECT_EQ(m[2]["role"], "assistant");
    EXPECT_EQ(m[2]["content"], "Let me add.");
    EXPECT_EQ(m[2]["reasoning_content"], "easy");
    EXPECT_EQ(m[2]["tool_calls"][0]["id"], "toolu_1");
    EXPECT_EQ(chat::Json::parse(m[2]["tool_calls"][0]["function"]["arguments"].get<std::string>()),
              chat::Json({{"a", 2}, {"b", 2}}));
    // tool results first (in order), then the user's text
    EXPECT_EQ(m[3], chat::Json({{"role", "tool"}, {"tool_call_id", "toolu_1"}, {"content", "4"}}));
    EXPECT_EQ(m[4]["content"], "Error: bad");
    EXPECT_EQ(m[5], chat::Json({{"role", "user"}, {"content", "Thanks"}}));
    EXPECT_EQ(o["tools"][0]["function"]["name"], "add");
    EXPECT_EQ(o["tools"][0]["function"]["parameters"], chat::Json({{"type", "object"}}));
    EXPECT_EQ(o["tool_choice"], "required");
    EXPECT_EQ(o["parallel_tool_calls"], false);
    EXPECT_EQ(o["chat_template_kwargs"]["enable_thinking"], true);
    // and the OpenAI parser takes it as it is
    auto api = parse_api_request(o, true, ApiLimits{});
    ASSERT_TRUE(api.ok()) << api.error().message;
    EXPECT_TRUE(api->forced_tools);
    EXPECT_EQ(api->gen.max_new_tokens, 9);

    auto named = anthropic_to_openai(chat::Json::parse(
        R"({"messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "tool", "name": "add"},
            "thinking": {"type": "disabled"}})"));
    ASSERT_TRUE(named.ok());
    EXPECT_EQ((*named)["tool_choice"]["function"]["name"], "add");
    EXPECT_EQ((*named)["chat_template_kwargs"]["enable_thinking"], false);

    auto structured = anthropic_to_openai(chat::Json::parse(
        R"({"messages": [{"role": "user", "content": "x"}],
            "output_format": {"type": "json_schema", "schema": {"type": "object", "properties": {"a": {}}, "required": ["a"]}}})"));
    ASSERT_TRUE(structured.ok());
    auto shaped = parse_api_request(*structured, true, ApiLimits{});
    ASSERT_TRUE(shaped.ok()) << shaped.error().message;
    EXPECT_TRUE(shaped->response_schema != nullptr);
}

TEST(AnthropicRequest, RejectsWhatItCannotServeWithTheField) {
    const std::pair<const char*, const char*> bad[] = {
        {R"({"messages": []})", "messages"},
        {R"({"messages": [{"role": "system", "content": "x"}]})", "messages[0].role"},
        {R"({"messages": [{"role": "user"}]})", "messages[0].content"},
        {R"({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]})", "messages[0].content[0]"},
        {R"({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "b"}]}]})", "tool_use"},
        {R"({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "b", "input": 3}]}]})", "input"},
        {R"({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": 1}]}]})", "tool_use_id"},
        {R"({"messages": [{"role": "user", "content": "x"}], "system": 5})", "system"},
        {R"({"messages": [{"role": "user", "content": "x"}], "system": [{"type": "image"}]})", "system[0]"},
        {R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search_20250305", "name": "w"}]})", "tools[0]"},
        {R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"name": "f"}]})", "input_schema"},
        {R"({"messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "sometimes"}})", "tool_choice"},
        {R"({"messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "tool"}})", "tool_choice.name"},
        {R"({"messages": [{"role": "user", "content": "x"}], "thinking": {"type": "deep"}})", "thinking"},
        {R"({"messages": [{"role": "user", "content": "x"}], "stop_sequences": "END"})", "stop_sequences"},
        {R"({"messages": [{"role": "user", "content": "x"}], "output_format": {"type": "xml"}})", "output_format"},
        {R"({"messages": [{"role": "user", "content": "x"}], "output_format": {"type": "json_schema"}})", "output_format.schema"},
    };
    for (auto [text, word] : bad) {
        auto r = anthropic_to_openai(chat::Json::parse(text));
        ASSERT_FALSE(r.ok()) << text;
        EXPECT_NE(r.error().message.find(word), std::string::npos) << text << " -> " << r.error().message;
    }
    EXPECT_FALSE(anthropic_to_openai(chat::Json::array()).ok());
    EXPECT_EQ(anthropic_error(401, "k")["error"]["type"], "authentication_error");
    EXPECT_EQ(anthropic_error(503, "busy")["error"]["type"], "overloaded_error");
    EXPECT_EQ(anthropic_error(400, "x")["type"], "error");
    EXPECT_STREQ(anthropic_stop_reason(FinishReason::length, false, false), "max_tokens");
    EXPECT_STREQ(anthropic_stop_reason(FinishReason::stop, true, false), "stop_sequence");
    EXPECT_STREQ(anthropic_stop_reason(FinishReason::stop, false, true), "tool_use");
    EXPECT_STREQ(anthropic_stop_reason(FinishReason::stop, false, false), "end_turn");
}

TEST(ResponsesRequest, TranslatesIntoTheChatRequestItMeans) {
    auto body = chat::Json::parse(R"({
        "model": "m", "instructions": "Be brief.", "max_output_tokens": 50, "temperature": 0.2, "stream": true,
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Is 7 "}, {"type": "input_text", "text": "prime?"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
            {"type": "function_call", "call_id": "c1", "name": "check", "arguments": "{\"n\":7}"},
            {"type": "function_call", "call_id": "c2", "name": "check", "arguments": "{\"n\":8}"},
            {"type": "function_call_output", "call_id": "c1", "output": "yes"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "no"}]},
            {"type": "function_call", "call_id": "c3", "name": "check", "arguments": "{}"}],
        "tools": [{"type": "function", "name": "check", "description": "d", "parameters": {"type": "object"}, "strict": true},
                  {"type": "web_search"}, {"type": "local_shell"}],
        "tool_choice": {"type": "function", "name": "check"}, "parallel_tool_calls": false,
        "reasoning": {"effort": "minimal"}, "store": false, "include": ["reasoning.encrypted_content"]
    })");
    auto r = responses_to_openai(body);
    ASSERT_TRUE(r.ok()) << r.error().message;
    const chat::Json& o = *r;
    const chat::Json& m = o["messages"];
    ASSERT_EQ(m.size(), 6u);
    EXPECT_EQ(m[0], chat::Json({{"role", "system"}, {"content", "Be brief."}}));
    EXPECT_EQ(m[1], chat::Json({{"role", "user"}, {"content", "Is 7 prime?"}}));
    // the calls after an assistant message are its tool_calls; a call after tool results opens a new turn
    EXPECT_EQ(m[2]["content"], "Checking.");
    ASSERT_EQ(m[2]["tool_calls"].size(), 2u);
    EXPECT_EQ(m[2]["tool_calls"][1]["id"], "c2");
    EXPECT_EQ(m[2]["tool_calls"][1]["function"]["arguments"], "{\"n\":8}");
    EXPECT_EQ(m[3], chat::Json({{"role", "tool"}, {"tool_call_id", "c1"}, {"content", "yes"}}));
    EXPECT_EQ(m[4]["content"], "no");
    EXPECT_EQ(m[5]["role"], "assistant");
    EXPECT_EQ(m[5]["tool_calls"][0]["id"], "c3");
    ASSERT_EQ(o["tools"].size(), 1u);  // the OpenAI-run tools are left out
    EXPECT_EQ(o["tools"][0]["function"]["parameters"], chat::Json({{"type", "object"}}));
    EXPECT_EQ(o["tool_choice"]["function"]["name"], "check");
    EXPECT_EQ(o["max_tokens"], 50);
    EXPECT_EQ(o["parallel_tool_calls"], false);
    EXPECT_EQ(o["chat_template_kwargs"]["enable_thinking"], false);
    auto api = parse_api_request(o, true, ApiLimits{});
    ASSERT_TRUE(api.ok()) << api.error().message;
    EXPECT_TRUE(api->forced_tools);

    auto text = responses_to_openai(chat::Json::parse(
        R"({"input": "hi", "reasoning": {"effort": "high"},
            "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}, "strict": true}}})"));
    ASSERT_TRUE(text.ok());
    EXPECT_EQ((*text)["messages"], chat::Json::array({{{"role", "user"}, {"content", "hi"}}}));
    EXPECT_EQ((*text)["chat_template_kwargs"]["enable_thinking"], true);
    EXPECT_EQ((*text)["response_format"]["json_schema"]["name"], "x");
    auto shaped = parse_api_request(*text, true, ApiLimits{});
    ASSERT_TRUE(shaped.ok()) << shaped.error().message;
    EXPECT_TRUE(shaped->response_schema != nullptr);

    const std::pair<const char*, const char*> bad[] = {
        {R"({"input": "x", "previous_response_id": "resp_1"})", "previous_response_id"},
        {R"({"input": "x", "conversation": "c"})", "conversation"},
        {R"({"model": "m"})", "input is required"},
        {R"({"input": []})", "no messages"},
        {R"({"input": 5})", "input"},
        {R"({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]})", "input[0].content[0]"},
        {R"({"input": [{"type": "computer_call", "id": "x"}]})", "input[0]"},
        {R"({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]})", "call_id"},
        {R"({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]})", "arguments"},
        {R"({"input": "x", "tools": [{"type": "function"}]})", "tools[0].name"},
        {R"({"input": "x", "tool_choice": {"type": "file_search"}})", "tool_choice"},
        {R"({"input": "x", "text": {"format": {"type": "yaml"}}})", "text.format.type"},
        {R"({"input": "x", "reasoning": {"effort": "extreme"}})", "reasoning.effort"},
        {R"({"input": "x", "instructions": 3})", "instructions"},
    };
    for (auto [t, word] : bad) {
        auto e = responses_to_openai(chat::Json::parse(t));
        ASSERT_FALSE(e.ok()) << t;
        EXPECT_NE(e.error().message.find(word), std::string::npos) << t << " -> " << e.error().message;
    }
}

TEST(Metrics, PrometheusTextHasCumulativeHistogramBuckets) {
    Metrics m;
    m.update([](MetricValues& v, Histogram& ttft, Histogram& itl) {
        v.running = 2;
        v.pages_used = 5;
        ttft.observe(0.02);
        ttft.observe(0.3);
        ttft.observe(100);
        itl.observe(0.004);
    });
    const std::string text = m.render("tiny");
    EXPECT_NE(text.find("tandem_requests_running 2\n"), std::string::npos);
    EXPECT_NE(text.find("tandem_kv_pages_used 5\n"), std::string::npos);
    EXPECT_NE(text.find("tandem_time_to_first_token_seconds_bucket{le=\"0.025\"} 1\n"), std::string::npos);
    EXPECT_NE(text.find("tandem_time_to_first_token_seconds_bucket{le=\"0.5\"} 2\n"), std::string::npos);
    EXPECT_NE(text.find("tandem_time_to_first_token_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos);
    EXPECT_NE(text.find("tandem_time_to_first_token_seconds_count 3\n"), std::string::npos);
    EXPECT_NE(text.find("tandem_info{model=\"tiny\"} 1"), std::string::npos);
}

}  // namespace
}  // namespace tandem

namespace tandem {
namespace {

TEST(ToolCalls, ParsesQwenStyleCallsAndKeepsTheRest) {
    auto r = parse_tool_calls("Let me check.\n<tool_call>\n{\"name\": \"weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
                              "</tool_call>\n<tool_call>\n{\"name\": \"time\", \"arguments\": \"{}\"}\n</tool_call>");
    ASSERT_EQ(r.calls.size(), 2u);
    EXPECT_EQ(r.calls[0].name, "weather");
    EXPECT_EQ(nlohmann::json::parse(r.calls[0].arguments)["city"], "Paris");
    EXPECT_EQ(r.calls[1].name, "time");
    EXPECT_EQ(r.calls[1].arguments, "{}");
    EXPECT_EQ(r.content, "Let me check.");
    // a marker spelled in the text before a call stays text: each closing marker pairs with the
    // opening one nearest before it
    auto stray = parse_tool_calls("Use <tool_call> tags.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>");
    ASSERT_EQ(stray.calls.size(), 1u);
    EXPECT_EQ(stray.calls[0].name, "f");
    EXPECT_EQ(stray.content, "Use <tool_call> tags.");
    auto lone = parse_tool_calls("a </tool_call> b <tool_call>{\"name\": \"g\"}</tool_call>");
    ASSERT_EQ(lone.calls.size(), 1u);
    EXPECT_EQ(lone.content, "a </tool_call> b");
    // not JSON, or unterminated: plain text
    auto bad = parse_tool_calls("<tool_call>not json</tool_call> and <tool_call>{\"name\": \"x\"");
    EXPECT_TRUE(bad.calls.empty());
    EXPECT_EQ(bad.content, "<tool_call>not json</tool_call> and <tool_call>{\"name\": \"x\"");
}

// Qwen3-Coder writes calls as XML (<function=NAME><parameter=P>VALUE</parameter>): what its own
// template renders for an assistant's call parses back into the same name and arguments, each
// parameter typed by the tool's schema (a string that looks like a number stays a string).
TEST(ToolCalls, ParsesQwen3CoderCallsAsItsTemplateWritesThem) {
    std::ifstream in(std::string(TANDEM_SOURCE_DIR) + "/tests/data/chat_templates/qwen3-coder.json");
    ASSERT_TRUE(in.good());
    const chat::Json cfg = chat::Json::parse(in);
    const std::string tmpl = cfg["chat_template"];
    EXPECT_EQ(tool_call_format(tmpl), ToolCallFormat::xml);
    EXPECT_EQ(tool_call_format("{{ '<tool_call>\\n{\"name\": ...}' }}"), ToolCallFormat::json);
    const chat::Json tools = chat::Json::parse(R"([{"type": "function", "function": {"name": "edit", "parameters": {
        "type": "object", "properties": {"path": {"type": "string"}, "line": {"type": "integer"},
        "dry": {"type": "boolean"}, "opts": {"type": "object"}, "code": {"type": "string"},
        "id": {"type": "string"}, "ratio": {"type": "number"}}}}}])");
    const chat::Json args = chat::Json::parse(R"({"path": "a/b.py", "line": 12, "dry": true, "opts": {"x": [1, "two"]},
        "code": "def f():\n    return 1\n", "id": "42", "ratio": 0.5})");
    chat::Json msgs = chat::Json::array();
    msgs.push_back({{"role", "user"}, {"content", "fix it"}});
    msgs.push_back({{"role", "assistant"}, {"content", "On it."},
                    {"tool_calls", {{{"type", "function"}, {"function", {{"name", "edit"}, {"arguments", args}}}}}}});
    auto text = render_chat(tmpl, msgs, tools, false, chat::Json::object(), "", "<|im_end|>");
    ASSERT_TRUE(text.ok()) << text.error().message;
    // what the model wrote: the assistant turn's text
    const std::string head = "<|im_start|>assistant\n";
    const size_t b = text->rfind(head), e = text->rfind("<|im_end|>");
    ASSERT_NE(b, std::string::npos);
    ASSERT_NE(e, std::string::npos);
    const std::string said = text->substr(b + head.size(), e - b - head.size());
    EXPECT_NE(said.find("<function=edit>\n<parameter=path>\na/b.py\n</parameter>"), std::string::npos) << said;
    ToolCallParse r = parse_tool_calls(said, ToolCallFormat::xml, &tools);
    ASSERT_EQ(r.calls.size(), 1u) << said;
    EXPECT_EQ(r.calls[0].name, "edit");
    EXPECT_EQ(chat::Json::parse(r.calls[0].arguments), args) << r.calls[0].arguments;
    EXPECT_EQ(r.content, "On it.");
    // without the schema, text that spells JSON becomes that value
    r = parse_tool_calls(said, ToolCallFormat::xml, nullptr);
    ASSERT_EQ(r.calls.size(), 1u);
    EXPECT_EQ(chat::Json::parse(r.calls[0].arguments)["id"], 42);
    // a missing </parameter> before the next parameter or </function> is tolerated
    r = parse_tool_calls("<tool_call>\n<function=f>\n<parameter=a>\nx\n<parameter=b>\n1\n</function>\n</tool_call>",
                         ToolCallFormat::xml, nullptr);
    ASSERT_EQ(r.calls.size(), 1u);
    EXPECT_EQ(chat::Json::parse(r.calls[0].arguments), chat::Json::parse(R"({"a": "x", "b": 1})"));
    // not a call: no function, text outside parameters, unterminated function, a JSON call
    for (const char* bad : {"<tool_call>\n<parameter=a>\n1\n</parameter>\n</tool_call>",
                            "<tool_call>\n<function=f>\nhello\n</function>\n</tool_call>",
                            "<tool_call>\n<function=f>\n<parameter=a>\n1\n</parameter>\n</tool_call>",
                            "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>"}) {
        r = parse_tool_calls(bad, ToolCallFormat::xml, &tools);
        EXPECT_TRUE(r.calls.empty()) << bad;
        EXPECT_EQ(r.content, bad);
    }
}

TEST(RequestJson, NestingDepthIsCountedOutsideStrings) {
    EXPECT_TRUE(json_depth_within("[[[]]]", 3));
    EXPECT_FALSE(json_depth_within("[[[[]]]]", 3));
    EXPECT_TRUE(json_depth_within(R"({"a": "[[[[[[\"{{{{", "b": [1]})", 2));  // brackets in strings, escaped quotes
    EXPECT_FALSE(json_depth_within(R"({"a": "\\", "b": [[1]]})", 2));          // an escaped backslash ends no string
    EXPECT_TRUE(json_depth_within(std::string(100000, ']'), 1));                // (invalid JSON: the parser says so)
    EXPECT_FALSE(json_depth_within(std::string(kMaxJsonDepth + 1, '{')));
}

TEST(ToolCalls, StreamHoldsFromTheMarkerOnAtAnySplit) {
    const std::string text = "Sure. <tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>";
    for (size_t step = 1; step <= text.size(); ++step) {
        ToolCallStream s;
        std::string streamed;
        for (size_t i = 0; i < text.size(); i += step) streamed += s.push(text.substr(i, step));
        streamed += s.flush();
        EXPECT_EQ(streamed, "Sure. ") << step;
        EXPECT_TRUE(s.started());
        EXPECT_EQ(parse_tool_calls(s.held()).calls.size(), 1u);
    }
    ToolCallStream plain;
    std::string out = plain.push("a <tool");
    out += plain.flush();
    EXPECT_EQ(out, "a <tool");
    EXPECT_FALSE(plain.started());
}

}  // namespace
}  // namespace tandem
