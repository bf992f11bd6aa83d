#include "serve/completions.h"

#include "serve/completion_call.h"
#include "serve/request_json.h"

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "core/log.h"
#include "serve/anthropic_api.h"
#include "serve/http_util.h"
#include "serve/openai_api.h"
#include "serve/responses_api.h"
#include "serve/text_stream.h"
#include "serve/tool_calls.h"

namespace tandem {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// OpenAI's usage counts (the final response's, and every chunk's with continuous_usage_stats)
json usage_counts(int64_t prompt, int64_t completion) {
    return {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
}

// OpenAI tool_calls entries (with index, for stream deltas too).
json tool_calls_json(const std::vector<ToolCall>& calls, const std::string& id) {
    json out = json::array();
    for (size_t i = 0; i < calls.size(); ++i)
        out.push_back({{"index", i},
                       {"id", fmt::format("call_{}_{}", id, i)},
                       {"type", "function"},
                       {"function", {{"name", calls[i].name}, {"arguments", calls[i].arguments}}}});
    return out;
}

}  // namespace

bool Call::fail(httplib::Response& res, int status, const std::string& msg) const {
    send_error(res, status, msg, api_ == Api::messages);
    return false;
}

bool Call::parse(const httplib::Request& req, httplib::Response& res) {
    if (!json_depth_within(req.body)) return fail(res, 400, fmt::format("the request body nests deeper than {} levels", kMaxJsonDepth));
    chat::Json body = chat::Json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded()) return fail(res, 400, "the request body is not valid JSON");
    if (api_ == Api::messages || api_ == Api::responses) {
        auto converted = api_ == Api::messages ? anthropic_to_openai(body) : responses_to_openai(body);
        if (!converted) return fail(res, 400, converted.error().message);
        body = std::move(*converted);
    }
    auto parsed = parse_api_request(body, chat_api_, ctx_.config.limits);
    if (!parsed) return fail(res, 400, parsed.error().message);
    req_ = std::move(*parsed);
    // Anthropic clients name their own models (claude-...): the answer carries the name asked for
    model_ = api_ == Api::messages && !req_.model.empty() ? req_.model : ctx_.config.model_name;
    if (api_ != Api::messages && !req_.model.empty() && req_.model != ctx_.config.model_name)
        return fail(res, 404, fmt::format("the model '{}' does not exist; this server serves '{}'", req_.model,
                                          ctx_.config.model_name));
    return true;
}

Result<Call::Rendered> Call::render_conversation() const {
    if (!ctx_.chat) return make_error("this model has no chat template: use /v1/completions or --chat-template");
    const ChatConfig& chat = *ctx_.chat;
    const ApiRequest& r = req_;
    chat::Json kwargs = r.template_kwargs.is_object() ? r.template_kwargs : chat::Json::object();
    auto text = render_chat(chat.chat_template, r.messages, r.tools, true, kwargs, chat.bos_token, chat.eos_token);
    if (!text) return make_error("the chat template failed on these messages: {}", text.error().message);
    Rendered out;
    // the template may open the reasoning block itself
    std::string_view t = *text;
    while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.remove_suffix(1);
    out.think_opened = t.size() >= 7 && t.substr(t.size() - 7) == "<think>";
    const bool closed = t.size() >= 8 && t.substr(t.size() - 8) == "</think>";
    // a response format applies to the answer: after the reasoning the prompt opened, or the
    // one the model may open with its first token
    out.mode = out.think_opened ? ThinkMode::free_until_close
               : closed || r.enable_thinking == std::optional<bool>(false) ? ThinkMode::none
                                                                          : ThinkMode::may_open;
    auto ids = ctx_.tok.encode(*text, /*parse_special=*/true);
    if (!ids) return make_error("cannot tokenize the prompt: {}", ids.error().message);
    out.ids = std::move(*ids);
    return out;
}

void Call::count_tokens(const httplib::Request& req, httplib::Response& res) {
    if (!parse(req, res)) return;
    auto rendered = render_conversation();
    if (!rendered) {
        fail(res, 400, rendered.error().message);
        return;
    }
    res.set_content(dump_json({{"input_tokens", rendered->ids.size()}}), "application/json");
}

bool Call::start(const httplib::Request& req, httplib::Response& res) {
    if (!parse(req, res)) return false;
    const ApiRequest& r = req_;
    if (r.stream && r.prompt_logprobs >= 0) return fail(res, 400, "prompt_logprobs cannot be streamed (stream: false)");
    const Tokenizer& tok = ctx_.tok;
    ThinkMode think_mode = ThinkMode::none;
    bool think_opened = false;
    if (chat_api_) {
        auto rendered = render_conversation();
        if (!rendered) return fail(res, 400, rendered.error().message);
        think_mode = rendered->mode;
        think_opened = rendered->think_opened;
        prompts_.push_back({std::move(rendered->ids), std::string()});
    } else {
        for (const PromptInput& in : r.prompts) {
            Prompt p;
            if (in.is_ids) {
                p.ids = in.ids;
                if (r.echo) {
                    for (int32_t id : p.ids)
                        if (!tok.valid_id(id)) return fail(res, 400, fmt::format("token id {} is out of the vocabulary", id));
                    auto text = tok.decode(p.ids);
                    if (!text) return fail(res, 400, "cannot decode the prompt: " + text.error().message);
                    p.text = std::move(*text);
                }
            } else {
                auto ids = tok.encode(in.text, /*parse_special=*/true);
                if (!ids) return fail(res, 400, "cannot tokenize the prompt: " + ids.error().message);
                p.ids = std::move(*ids);
                p.text = in.text;
            }
            prompts_.push_back(std::move(p));
        }
    }
    for (const Prompt& p : prompts_)
        if (p.ids.empty()) return fail(res, 400, "the prompt has no tokens");
    const int64_t n_choices = (int64_t)prompts_.size() * r.n;
    if (const int64_t q = ctx_.engine.config().sched.max_queue; n_choices > q)
        return fail(res, 400, fmt::format("{} choices (n x prompts) are more than this server queues (--max-queue {})",
                                          n_choices, q));

    GenParams gen = r.gen;
    if (ctx_.chat) gen.stop_ids = ctx_.chat->stop_ids;
    else if (tok.valid_id(tok.eos_id())) gen.stop_ids = {tok.eos_id()};
    if (r.ignore_eos) gen.stop_ids.clear();
    gen.stop_ids.insert(gen.stop_ids.end(), r.stop_token_ids.begin(), r.stop_token_ids.end());
    gen.constraint = {r.response_schema, think_mode};
    // calls the model opens follow the tools' schemas, in the format its template teaches
    if (!r.response_schema) {
        const int32_t open = tok.special_id(kToolCallOpen), close = tok.special_id(kToolCallClose);
        ConstraintSpec calls{nullptr, think_mode, open, close, r.max_tool_calls};
        if (ctx_.tool_format == ToolCallFormat::xml) calls.xml = r.tool_call_xml;
        else calls.schema = r.tool_call_schema;
        if (open >= 0 && close >= 0 && calls.active()) gen.constraint = std::move(calls);
    }
    gens_.resize((size_t)n_choices);
    for (size_t i = 0; i < prompts_.size(); ++i)
        for (int64_t j = 0; j < r.n; ++j) {
            Gen& g = gens_[i * (size_t)r.n + (size_t)j];
            g.index = (int64_t)i * r.n + j;
            g.prompt_i = i;
            if (chat_api_) {
                g.think = std::make_unique<ThinkSplitter>(think_opened);
                if (!r.tools.is_null()) g.tools = std::make_unique<ToolCallStream>(/*hold_all=*/r.forced_tools);
            }
            GenParams p = gen;
            // choice 0 draws as the same request with n = 1 would; the others from other seeds
            p.sampler.seed += (uint64_t)j * 0x9E3779B97F4A7C15ull;
            SubmitResult sub = ctx_.engine.submit(prompts_[i].ids, std::move(p), signal_);
            if (!sub.handle) {
                for (Gen& s : gens_)
                    if (s.handle) s.handle->cancel();
                return fail(res, sub.http_status, sub.error);
            }
            g.handle = sub.handle;
        }
    const char* prefix = api_ == Api::messages    ? "msg_"
                         : api_ == Api::responses ? "resp_"
                         : api_ == Api::chat      ? "chatcmpl-"
                                                  : "cmpl-";
    id_ = fmt::format("{}{}", prefix, ctx_.next_id.fetch_add(1));
    created_ = unix_now();
    return true;
}

template <class F>
bool Call::poll(std::chrono::milliseconds timeout, F&& fn) {
    std::vector<StreamEvent> evs;
    auto drain = [&] {
        bool got = false;
        for (Gen& g : gens_) {
            if (g.done()) continue;
            evs.clear();
            if (!g.handle->take(evs)) continue;
            got = true;
            for (StreamEvent& ev : evs) fn(g, ev);
        }
        return got;
    };
    const uint64_t seen = signal_->count();
    if (drain()) return true;
    signal_->wait_past(seen, timeout);
    return drain();
}

void Call::cancel_and_wait() {
    cancel_all();
    while (!all_done() && poll(1000ms, [](Gen& g, StreamEvent& ev) {
        if (ev.finish != FinishReason::none) g.finish = ev.finish;
    })) {
    }
}

json Call::usage() const {
    int64_t prompt = 0, cached = 0, completion = 0;
    for (size_t i = 0; i < prompts_.size(); ++i) {
        prompt += (int64_t)prompts_[i].ids.size();
        cached += gens_[i * (size_t)req_.n].stats.n_prefix_hit;  // the prompt's first choice
    }
    for (const Gen& g : gens_) completion += g.stats.n_generated;
    json u = usage_counts(prompt, completion);
    u["prompt_tokens_details"] = {{"cached_tokens", cached}};
    return u;
}

// llama.cpp's timings, of the first choice
json Call::timings() const {
    const RequestStats& s = gens_[0].stats;
    const double prompt_s = std::max(0.0, s.ttft_s - s.queue_s);
    const int64_t prompt_n = s.n_prompt - s.n_prefix_hit;
    const int64_t decode_n = std::max<int64_t>(0, s.n_generated - 1);
    return {{"cache_n", s.n_prefix_hit},
            {"prompt_n", prompt_n},
            {"prompt_ms", prompt_s * 1e3},
            {"prompt_per_second", prompt_s > 0 ? prompt_n / prompt_s : 0.0},
            {"predicted_n", s.n_generated},
            {"predicted_ms", s.decode_s * 1e3},
            {"predicted_per_second", s.decode_s > 0 ? decode_n / s.decode_s : 0.0},
            {"queue_ms", s.queue_s * 1e3},
            {"preempted", s.n_preempted}};
}

json Call::token_logprob(int32_t id, float lp) const {
    const std::string_view b = ctx_.tok.token_bytes(id);
    json bytes = json::array();
    for (unsigned char c : b) bytes.push_back(c);
    return {{"token", std::string(b)}, {"logprob", lp}, {"bytes", bytes}};
}

json Call::chat_logprobs(const std::vector<TokenLogprob>& lps) const {
    json content = json::array();
    for (const TokenLogprob& lp : lps) {
        json e = token_logprob(lp.id, lp.logprob);
        json top = json::array();
        for (auto [id, l] : lp.top) top.push_back(token_logprob(id, l));
        e["top_logprobs"] = top;
        content.push_back(e);
    }
    return {{"content", content}};
}

json Call::completion_logprobs(Gen& g, const Prompt* echo, const std::vector<TokenLogprob>& generated) const {
    json tokens = json::array(), token_lps = json::array(), tops = json::array(), offsets = json::array();
    const size_t k = req_.gen.top_logprobs < 0 ? 0 : (size_t)req_.gen.top_logprobs;
    auto add = [&](int32_t id, const TokenLogprob* lp) {
        const std::string_view b = ctx_.tok.token_bytes(id);
        tokens.push_back(std::string(b));
        offsets.push_back(g.text_offset);
        g.text_offset += (int64_t)b.size();
        if (!lp) {
            token_lps.push_back(nullptr);
            tops.push_back(nullptr);
            return;
        }
        token_lps.push_back(lp->logprob);
        json top = json::object();
        for (size_t i = 0; i < lp->top.size() && i < k; ++i)
            top[std::string(ctx_.tok.token_bytes(lp->top[i].first))] = lp->top[i].second;
        tops.push_back(top);
    };
    if (echo) {
        add(echo->ids[0], nullptr);
        for (const TokenLogprob& lp : g.prompt_logprobs) add(lp.id, &lp);
    }
    for (const TokenLogprob& lp : generated) add(lp.id, &lp);
    return {{"tokens", tokens}, {"token_logprobs", token_lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

json Call::vllm_prompt_logprobs(const Gen& g) const {
    json out = json::array({nullptr});
    const size_t k = (size_t)std::max(0, req_.prompt_logprobs);
    auto entry = [&](float lp, int rank, int32_t id) {
        return json{{"logprob", lp}, {"rank", rank}, {"decoded_token", std::string(ctx_.tok.token_bytes(id))}};
    };
    for (const TokenLogprob& lp : g.prompt_logprobs) {
        json pos = json::object();
        pos[std::to_string(lp.id)] = entry(lp.logprob, lp.rank, lp.id);
        for (size_t i = 0; i < lp.top.size() && i < k; ++i) {
            const std::string key = std::to_string(lp.top[i].first);
            if (!pos.contains(key)) pos[key] = entry(lp.top[i].second, (int)i + 1, lp.top[i].first);
        }
        out.push_back(pos);
    }
    return out;
}

void Call::accumulate(Gen& g, StreamEvent& ev) {
    if (g.think) {
        auto o = g.think->push(ev.text);
        g.content += o.content;
        g.reasoning += o.reasoning;
    } else {
        g.content += ev.text;
    }
    for (auto& lp : ev.logprobs) g.logprobs.push_back(std::move(lp));
    for (auto& lp : ev.prompt_logprobs) g.prompt_logprobs.push_back(std::move(lp));
    if (ev.finish == FinishReason::none) return;
    g.finish = ev.finish;
    g.error = ev.error;
    g.stop_string = ev.stop_string;
    g.stats = ev.stats;
    if (g.think) {
        auto o = g.think->flush();
        g.content += o.content;
        g.reasoning += o.reasoning;
    }
}

int64_t Call::prompt_tokens() const {
    int64_t n = 0;
    for (const Prompt& p : prompts_) n += (int64_t)p.ids.size();
    return n;
}

void Call::respond_whole(const httplib::Request& req, httplib::Response& res) {
    ConnectionWatch watch(req);
    auto last_check = std::chrono::steady_clock::now();
    while (!all_done()) {
        const bool got = poll(100ms, [this](Gen& g, StreamEvent& ev) { accumulate(g, ev); });
        // look at the connection every 100 ms, also while tokens keep coming
        const auto now = std::chrono::steady_clock::now();
        if (!got || now - last_check >= 100ms) {
            last_check = now;
            if (watch.closed()) return cancel_and_wait();
        }
    }
    for (const Gen& g : gens_)
        if (g.finish == FinishReason::error || g.finish == FinishReason::cancelled) {
            fail(res, 503, g.error.empty() ? "the request was cancelled" : g.error);
            return;
        }
    if (api_ == Api::messages) whole_anthropic(res);
    else if (api_ == Api::responses) whole_responses(res);
    else whole_openai(res);
}

void Call::whole_openai(httplib::Response& res) {
    json choices = json::array();
    for (Gen& g : gens_) {
        json choice = {{"index", g.index}, {"finish_reason", finish_reason_name(g.finish)}};
        // vLLM's stop_reason: the stop string that ended it
        choice["stop_reason"] = g.stop_string.empty() ? json(nullptr) : json(g.stop_string);
        const Prompt& prompt = prompts_[g.prompt_i];
        if (chat_api_) {
            choice["logprobs"] = req_.logprobs ? chat_logprobs(g.logprobs) : json(nullptr);
            json msg = {{"role", "assistant"}, {"content", g.content}};
            if (!g.reasoning.empty()) msg["reasoning_content"] = g.reasoning;
            if (ToolCallParse tc = answer_of(g); !tc.calls.empty()) {
                msg["content"] = tc.content.empty() ? json(nullptr) : json(tc.content);
                msg["tool_calls"] = tool_calls_json(tc.calls, call_id(g));
                choice["finish_reason"] = "tool_calls";
            }
            choice["message"] = msg;
        } else {
            choice["text"] = req_.echo ? prompt.text + g.content : g.content;
            if (!req_.logprobs) choice["logprobs"] = nullptr;
            else if (req_.echo) choice["logprobs"] = completion_logprobs(g, &prompt, g.logprobs);
            else {
                g.text_offset = (int64_t)prompt.text.size();
                choice["logprobs"] = completion_logprobs(g, nullptr, g.logprobs);
            }
            if (req_.prompt_logprobs >= 0) choice["prompt_logprobs"] = vllm_prompt_logprobs(g);
        }
        choices.push_back(std::move(choice));
    }
    json out = {{"id", id_},
                {"object", chat_api_ ? "chat.completion" : "text_completion"},
                {"created", created_},
                {"model", model_},
                {"choices", choices},
                {"usage", usage()},
                {"timings", timings()}};
    if (chat_api_ && req_.prompt_logprobs >= 0) out["prompt_logprobs"] = vllm_prompt_logprobs(gens_[0]);
    res.set_content(dump_json(out), "application/json");
}

std::string Call::chunk(const Gen& g, json delta_or_text, const json& finish, const json& lps) const {
    json choice = {{"index", g.index}, {"finish_reason", finish}};
    if (chat_api_) choice["delta"] = std::move(delta_or_text);
    else choice["text"] = std::move(delta_or_text);
    choice["logprobs"] = lps;
    json c = {{"id", id_},
              {"object", chat_api_ ? "chat.completion.chunk" : "text_completion"},
              {"created", created_},
              {"model", model_},
              {"choices", json::array({std::move(choice)})}};
    if (req_.include_usage && req_.continuous_usage) c["usage"] = usage_counts(prompt_tokens(), n_streamed_);
    else if (req_.include_usage) c["usage"] = nullptr;
    return "data: " + dump_json(c) + "\n\n";
}

StreamPieces Call::take_pieces(Gen& g, StreamEvent& ev) {
    StreamPieces p;
    n_streamed_ += ev.n_tokens;
    p.text = ev.text;
    if (g.think) {
        auto o = g.think->push(ev.text);
        p.text = o.content;
        p.reasoning = o.reasoning;
        if (ev.finish != FinishReason::none) {
            auto f = g.think->flush();
            p.text += f.content;
            p.reasoning += f.reasoning;
        }
    }
    if (g.tools) {  // at the end: the calls held back from the stream
        p.text = g.tools->push(p.text);
        if (ev.finish != FinishReason::none) {
            p.text += g.tools->flush();
            ToolCallParse tc = parse_calls(g.tools->held());
            if (!tc.calls.empty()) {
                p.text += tc.content;
                p.calls = std::move(tc.calls);
            } else {
                p.text += g.tools->held();
            }
        }
    }
    if (ev.finish != FinishReason::none) {
        g.finish = ev.finish;
        g.error = ev.error;
        g.stop_string = ev.stop_string;
        g.stats = ev.stats;
        if (ev.finish == FinishReason::error || ev.finish == FinishReason::cancelled) failed_ = true;
    }
    return p;
}

// One engine event of one choice as SSE chunks.
std::string Call::openai_stream_event(Gen& g, StreamEvent& ev) {
    std::string out;
    for (auto& lp : ev.prompt_logprobs) g.prompt_logprobs.push_back(std::move(lp));
    const bool news = ev.n_tokens > 0 || !ev.text.empty() || ev.finish != FinishReason::none;
    if (!chat_api_ && !g.opened && news) {
        // the prompt logprobs (all of them come before the first token) and the echo go first
        g.opened = true;
        const Prompt& prompt = prompts_[g.prompt_i];
        if (req_.echo) {
            const json lps = req_.logprobs ? completion_logprobs(g, &prompt, {}) : json(nullptr);
            out += chunk(g, json(prompt.text), nullptr, lps);
        } else {
            g.text_offset = (int64_t)prompt.text.size();
        }
    }
    StreamPieces p = take_pieces(g, ev);
    json lps;
    if (req_.logprobs && !ev.logprobs.empty())
        lps = chat_api_ ? chat_logprobs(ev.logprobs) : completion_logprobs(g, nullptr, ev.logprobs);
    if (!p.reasoning.empty()) out += chunk(g, {{"reasoning_content", p.reasoning}}, nullptr, nullptr);
    if (!p.text.empty() || !lps.is_null())
        out += chunk(g, chat_api_ ? json{{"content", p.text}} : json(p.text), nullptr, lps);
    if (ev.finish == FinishReason::none) return out;
    if (failed_) {
        out += "data: " + dump_json(api_error(503, ev.error.empty() ? "the request was cancelled" : ev.error)) + "\n\n";
        return out;
    }
    if (!p.calls.empty()) out += chunk(g, {{"tool_calls", tool_calls_json(p.calls, call_id(g))}}, nullptr, nullptr);
    out += chunk(g, chat_api_ ? json::object() : json(""), p.calls.empty() ? finish_reason_name(ev.finish) : "tool_calls",
                 nullptr);
    return out;
}

std::string Call::openai_stream_end() {
    std::string out;
    if (!failed_ && req_.include_usage) {
        json u = {{"id", id_},
                  {"object", chat_api_ ? "chat.completion.chunk" : "text_completion"},
                  {"created", created_},
                  {"model", model_},
                  {"choices", json::array()},
                  {"usage", usage()},
                  {"timings", timings()}};
        out += "data: " + dump_json(u) + "\n\n";
    }
    return out + "data: [DONE]\n\n";
}

void Call::respond_stream(std::shared_ptr<Call> self, const httplib::Request& req, httplib::Response& res) {
    auto watch = std::make_shared<ConnectionWatch>(req);
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    auto ended = std::make_shared<bool>(false);  // the last event went out
    res.set_chunked_content_provider(
        "text/event-stream",
        [self, watch, ended](size_t, httplib::DataSink& sink) -> bool {
          // cpp-httplib calls this outside its handler's try: an exception here would end the
          // process, so one ends this stream instead (its choices cancelled)
          try {
            Call& c = *self;
            std::string out;
            for (Gen& g : c.gens_)
                if (c.chat_api_ && !g.opened) {  // the role chunk (chat), message_start / response.created
                    g.opened = true;
                    out += c.api_ == Api::messages    ? c.anthropic_stream_start()
                           : c.api_ == Api::responses ? c.responses_stream_start()
                                                      : c.chunk(g, {{"role", "assistant"}, {"content", ""}}, nullptr, nullptr);
                }
            const bool got = c.poll(100ms, [&](Gen& g, StreamEvent& ev) {
                if (c.failed_) return;
                out += c.api_ == Api::messages    ? c.anthropic_stream_event(g, ev)
                       : c.api_ == Api::responses ? c.responses_stream_event(g, ev)
                                                  : c.openai_stream_event(g, ev);
            });
            if (watch->closed()) {  // a poll() per chunk: the client may be gone before a write fails
                c.cancel_all();
                return false;
            }
            if (!got && out.empty()) return true;
            const bool end = c.failed_ || c.all_done();
            if (end) {
                if (c.failed_) c.cancel_all();
                if (c.api_ == Api::chat || c.api_ == Api::completions) out += c.openai_stream_end();
            }
            if (!out.empty() && !sink.write(out.data(), out.size())) {
                c.cancel_all();
                return false;
            }
            if (end) {
                *ended = true;
                sink.done();
            }
            return true;
          } catch (const std::exception& e) {
            log::warn("stream of request {} failed: {}", self->id_, e.what());
            self->cancel_all();
            return false;
          }
        },
        [self, ended](bool) {
            if (!*ended) self->cancel_all();  // the client went away or the server stops
        });
}

namespace {

void run_call(const CompletionContext& ctx, const httplib::Request& req, httplib::Response& res, Api api) {
    auto call = std::make_shared<Call>(ctx, api);
    if (!call->start(req, res)) return;
    if (call->streaming()) Call::respond_stream(call, req, res);
    else call->respond_whole(req, res);
}

}  // namespace

void serve_completion(const CompletionContext& ctx, const httplib::Request& req, httplib::Response& res, bool chat_api) {
    run_call(ctx, req, res, chat_api ? Api::chat : Api::completions);
}

void serve_messages(const CompletionContext& ctx, const httplib::Request& req, httplib::Response& res) {
    run_call(ctx, req, res, Api::messages);
}

void serve_responses(const CompletionContext& ctx, const httplib::Request& req, httplib::Response& res) {
    run_call(ctx, req, res, Api::responses);
}

void serve_count_tokens(const CompletionContext& ctx, const httplib::Request& req, httplib::Response& res) {
    Call(ctx, Api::messages).count_tokens(req, res);
}

}  // namespace tandem
