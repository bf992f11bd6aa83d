#include "serve/http_server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <ctime>

#include "chat/chat_template.h"
#include "core/log.h"
#include "serve/text_stream.h"
#include "serve/tool_calls.h"

namespace tandem {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// The socket of an HTTP connection, found from the request's addresses, so that a handler that
// is waiting for the engine can notice that its client went away (cpp-httplib 0.11 offers no
// such check). A peer that closed its end makes the socket readable with 0 bytes or HUP.
class ConnectionWatch {
public:
    explicit ConnectionWatch(const httplib::Request& req) {
        DIR* dir = opendir("/proc/self/fd");
        if (!dir) return;
        while (dirent* e = readdir(dir)) {
            const int fd = std::atoi(e->d_name);
            if (fd <= 2) continue;
            sockaddr_storage peer{}, local{};
            socklen_t pl = sizeof peer, ll = sizeof local;
            if (getpeername(fd, (sockaddr*)&peer, &pl) != 0 || getsockname(fd, (sockaddr*)&local, &ll) != 0) continue;
            if (port_of(peer) == req.remote_port && port_of(local) == req.local_port &&
                addr_of(peer) == req.remote_addr) {
                fd_ = fd;
                break;
            }
        }
        closedir(dir);
    }
    bool closed() const {
        if (fd_ < 0) return false;
        pollfd p{fd_, (short)(POLLIN | POLLRDHUP), 0};
        if (poll(&p, 1, 0) <= 0) return false;
        if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
        char c;
        return (p.revents & POLLIN) && recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
    }

private:
    static int port_of(const sockaddr_storage& a) {
        if (a.ss_family == AF_INET) return ntohs(((const sockaddr_in&)a).sin_port);
        if (a.ss_family == AF_INET6) return ntohs(((const sockaddr_in6&)a).sin6_port);
        return -1;
    }
    static std::string addr_of(const sockaddr_storage& a) {
        char buf[INET6_ADDRSTRLEN] = {};
        if (a.ss_family == AF_INET) inet_ntop(AF_INET, &((const sockaddr_in&)a).sin_addr, buf, sizeof buf);
        else if (a.ss_family == AF_INET6) inet_ntop(AF_INET6, &((const sockaddr_in6&)a).sin6_addr, buf, sizeof buf);
        return buf;
    }
    int fd_ = -1;
};

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_error(httplib::Response& res, int status, const std::string& message) {
    res.status = status;
    res.set_content(dump(api_error(status, message)), "application/json");
    if (status == 429 || status == 503) res.set_header("Retry-After", "1");
}

bool constant_time_equal(const std::string& a, const std::string& b) {
    if (a.size() != b.size()) return false;
    unsigned char d = 0;
    for (size_t i = 0; i < a.size(); ++i) d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

int64_t unix_now() { return (int64_t)std::time(nullptr); }

// OpenAI's usage counts (the final response's, and every chunk's with continuous_usage_stats)
json usage_counts(int64_t prompt, int64_t completion) {
    return {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
}

}  // namespace

struct ApiServer::Impl {
    Impl(Engine& e, const Tokenizer& t, const ChatConfig* c, ServerConfig cfg)
        : engine(e), tok(t), chat(c), config(std::move(cfg)) {}

    Engine& engine;
    const Tokenizer& tok;
    const ChatConfig* chat;
    ServerConfig config;
    httplib::Server svr;
    std::atomic<int64_t> next_id{1};

    // One generation in progress, as the handler sees it.
    struct Gen {
        ApiRequest req;
        std::string id;
        int64_t created = 0;
        std::shared_ptr<RequestHandle> handle;
        std::unique_ptr<ThinkSplitter> think;  // chat only
        std::unique_ptr<ToolCallStream> tools; // chat with tools: holds text from <tool_call> on
        FinishReason finish = FinishReason::none;
        std::string error;
        RequestStats stats;
        std::string content, reasoning;
        std::vector<TokenLogprob> logprobs;
        int64_t n_events = 0;
        int64_t n_prompt = 0, n_streamed = 0;  // for usage in every chunk (continuous_usage_stats)
        ToolCallParse parse_calls(const std::string& text) const {
            return req.forced_tools ? parse_forced_tool_calls(text, req.forced_tool) : parse_tool_calls(text);
        }
    };

    void routes();
    bool authorized(const httplib::Request& req, httplib::Response& res) const;
    // Renders / tokenizes the prompt and submits it; on error fills res and returns null.
    std::unique_ptr<Gen> start(const httplib::Request& req, httplib::Response& res, bool chat_api);
    void completion(const httplib::Request& req, httplib::Response& res, bool chat_api);
    json usage(const Gen& g) const;
    json timings(const Gen& g) const;
    json logprobs_json(const std::vector<TokenLogprob>& lps, bool chat_api) const;
    json token_logprob(int32_t id, float lp) const;
};

bool ApiServer::Impl::authorized(const httplib::Request& req, httplib::Response& res) const {
    if (config.api_key.empty()) return true;
    std::string key;
    const std::string auth = req.get_header_value("Authorization");
    if (auth.rfind("Bearer ", 0) == 0) key = auth.substr(7);
    else key = req.get_header_value("x-api-key");
    if (!key.empty() && constant_time_equal(key, config.api_key)) return true;
    send_error(res, 401, key.empty() ? "missing API key: send Authorization: Bearer KEY" : "invalid API key");
    return false;
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

json ApiServer::Impl::usage(const Gen& g) const {
    json u = usage_counts(g.stats.n_prompt, g.stats.n_generated);
    u["prompt_tokens_details"] = {{"cached_tokens", g.stats.n_prefix_hit}};
    return u;
}

json ApiServer::Impl::timings(const Gen& g) const {
    const RequestStats& s = g.stats;
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

json ApiServer::Impl::token_logprob(int32_t id, float lp) const {
    const std::string_view b = tok.token_bytes(id);
    json bytes = json::array();
    for (unsigned char c : b) bytes.push_back(c);
    return {{"token", std::string(b)}, {"logprob", lp}, {"bytes", bytes}};
}

json ApiServer::Impl::logprobs_json(const std::vector<TokenLogprob>& lps, bool chat_api) const {
    if (chat_api) {
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
    json tokens = json::array(), token_lps = json::array(), tops = json::array();
    for (const TokenLogprob& lp : lps) {
        tokens.push_back(std::string(tok.token_bytes(lp.id)));
        token_lps.push_back(lp.logprob);
        json top = json::object();
        for (auto [id, l] : lp.top) top[std::string(tok.token_bytes(id))] = l;
        tops.push_back(top);
    }
    return {{"tokens", tokens}, {"token_logprobs", token_lps}, {"top_logprobs", tops}};
}

std::unique_ptr<ApiServer::Impl::Gen> ApiServer::Impl::start(const httplib::Request& req, httplib::Response& res,
                                                             bool chat_api) {
    chat::Json body = chat::Json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded()) {
        send_error(res, 400, "the request body is not valid JSON");
        return nullptr;
    }
    auto parsed = parse_api_request(body, chat_api, config.limits);
    if (!parsed) {
        send_error(res, 400, parsed.error().message);
        return nullptr;
    }
    auto g = std::make_unique<Gen>();
    g->req = std::move(*parsed);
    const ApiRequest& r = g->req;
    if (!r.model.empty() && r.model != config.model_name) {
        send_error(res, 404, fmt::format("the model '{}' does not exist; this server serves '{}'", r.model, config.model_name));
        return nullptr;
    }
    std::vector<int32_t> prompt;
    ThinkMode think_mode = ThinkMode::none;
    if (chat_api) {
        if (!chat) {
            send_error(res, 400, "this model has no chat template: use /v1/completions");
            return nullptr;
        }
        chat::Json kwargs = r.template_kwargs.is_object() ? r.template_kwargs : chat::Json::object();
        auto text = render_chat(chat->chat_template, r.messages, r.tools, true, kwargs, chat->bos_token, chat->eos_token);
        if (!text) {
            send_error(res, 400, "the chat template failed on these messages: " + text.error().message);
            return nullptr;
        }
        // the template may open the reasoning block itself
        std::string_view t = *text;
        while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.remove_suffix(1);
        const bool opened = t.size() >= 7 && t.substr(t.size() - 7) == "<think>";
        const bool closed = t.size() >= 8 && t.substr(t.size() - 8) == "</think>";
        g->think = std::make_unique<ThinkSplitter>(opened);
        // a response format applies to the answer: after the reasoning the prompt opened, or the
        // one the model may open with its first token
        think_mode = opened ? ThinkMode::free_until_close
                     : closed || r.enable_thinking == std::optional<bool>(false) ? ThinkMode::none
                                                                                : ThinkMode::may_open;
        if (!r.tools.is_null()) g->tools = std::make_unique<ToolCallStream>(/*hold_all=*/r.forced_tools);
        auto ids = tok.encode(*text, /*parse_special=*/true);
        if (!ids) {
            send_error(res, 400, "cannot tokenize the prompt: " + ids.error().message);
            return nullptr;
        }
        prompt = std::move(*ids);
    } else if (r.prompt_is_ids) {
        prompt = r.prompt_ids;
    } else {
        auto ids = tok.encode(r.prompt_text, /*parse_special=*/true);
        if (!ids) {
            send_error(res, 400, "cannot tokenize the prompt: " + ids.error().message);
            return nullptr;
        }
        prompt = std::move(*ids);
    }
    if (prompt.empty()) {
        send_error(res, 400, "the prompt has no tokens");
        return nullptr;
    }
    GenParams gen = r.gen;
    if (chat) gen.stop_ids = chat->stop_ids;
    else if (tok.valid_id(tok.eos_id())) gen.stop_ids = {tok.eos_id()};
    if (r.ignore_eos) gen.stop_ids.clear();
    gen.stop_ids.insert(gen.stop_ids.end(), r.stop_token_ids.begin(), r.stop_token_ids.end());
    gen.constraint = {r.response_schema, think_mode};
    g->n_prompt = (int64_t)prompt.size();
    SubmitResult sub = engine.submit(std::move(prompt), std::move(gen));
    if (!sub.handle) {
        send_error(res, sub.http_status, sub.error);
        return nullptr;
    }
    g->handle = sub.handle;
    g->id = fmt::format("{}-{}", chat_api ? "chatcmpl" : "cmpl", next_id.fetch_add(1));
    g->created = unix_now();
    return g;
}

void ApiServer::Impl::completion(const httplib::Request& req, httplib::Response& res, bool chat_api) {
    if (!authorized(req, res)) return;
    std::shared_ptr<Gen> g = start(req, res, chat_api);
    if (!g) return;
    const std::string model = config.model_name;
    const char* object = chat_api ? "chat.completion" : "text_completion";

    if (!g->req.stream) {
        ConnectionWatch watch(req);
        std::vector<StreamEvent> evs;
        auto last_check = std::chrono::steady_clock::now();
        while (g->finish == FinishReason::none) {
            evs.clear();
            const bool got = g->handle->wait(evs, 100ms);
            // look at the connection every 100 ms, also while tokens keep coming
            const auto now = std::chrono::steady_clock::now();
            if (!got || now - last_check >= 100ms) {
                last_check = now;
                if (watch.closed()) {
                    g->handle->cancel();
                    evs.clear();
                    // wait for the engine to drop it so that its pages are free when we return
                    while (g->finish == FinishReason::none && g->handle->wait(evs, 1000ms))
                        for (auto& ev : evs)
                            if (ev.finish != FinishReason::none) g->finish = ev.finish;
                    return;
                }
            }
            for (StreamEvent& ev : evs) {
                if (g->think) {
                    auto o = g->think->push(ev.text);
                    g->content += o.content;
                    g->reasoning += o.reasoning;
                } else {
                    g->content += ev.text;
                }
                for (auto& lp : ev.logprobs) g->logprobs.push_back(std::move(lp));
                if (ev.finish != FinishReason::none) {
                    g->finish = ev.finish;
                    g->error = ev.error;
                    g->stats = ev.stats;
                }
            }
        }
        if (g->think) {
            auto o = g->think->flush();
            g->content += o.content;
            g->reasoning += o.reasoning;
        }
        if (g->finish == FinishReason::error || g->finish == FinishReason::cancelled) {
            send_error(res, 503, g->error.empty() ? "the request was cancelled" : g->error);
            return;
        }
        json choice = {{"index", 0}, {"finish_reason", finish_reason_name(g->finish)}};
        choice["logprobs"] = g->req.logprobs ? logprobs_json(g->logprobs, chat_api) : json(nullptr);
        if (chat_api) {
            json msg = {{"role", "assistant"}, {"content", g->content}};
            if (!g->reasoning.empty()) msg["reasoning_content"] = g->reasoning;
            if (g->tools) {
                ToolCallParse tc = g->parse_calls(g->content);
                if (!tc.calls.empty()) {
                    msg["content"] = tc.content.empty() ? json(nullptr) : json(tc.content);
                    msg["tool_calls"] = tool_calls_json(tc.calls, g->id);
                    choice["finish_reason"] = "tool_calls";
                }
            }
            choice["message"] = msg;
        } else {
            choice["text"] = g->content;
        }
        json out = {{"id", g->id},         {"object", object},       {"created", g->created}, {"model", model},
                    {"choices", {choice}}, {"usage", usage(*g)}, {"timings", timings(*g)}};
        res.set_content(dump(out), "application/json");
        return;
    }

    // streaming: server-sent events, one chunk per event batch
    auto watch = std::make_shared<ConnectionWatch>(req);
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    auto sent_role = std::make_shared<bool>(false);
    auto finished_stream = std::make_shared<bool>(false);
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, g, watch, sent_role, finished_stream, chat_api, model](size_t, httplib::DataSink& sink) -> bool {
            auto chunk = [&](json delta_or_text, const json& finish, const json* lps) {
                json choice = {{"index", 0}, {"finish_reason", finish}};
                if (chat_api) choice["delta"] = delta_or_text;
                else choice["text"] = delta_or_text;
                choice["logprobs"] = lps ? *lps : json(nullptr);
                json c = {{"id", g->id},
                          {"object", chat_api ? "chat.completion.chunk" : "text_completion"},
                          {"created", g->created},
                          {"model", model},
                          {"choices", {choice}}};
                if (g->req.include_usage && g->req.continuous_usage)
                    c["usage"] = usage_counts(g->n_prompt, g->n_streamed);
                else if (g->req.include_usage)
                    c["usage"] = nullptr;
                return "data: " + dump(c) + "\n\n";
            };
            auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
            if (chat_api && !*sent_role) {
                *sent_role = true;
                if (!write(chunk({{"role", "assistant"}, {"content", ""}}, nullptr, nullptr))) {
                    g->handle->cancel();
                    return false;
                }
            }
            std::vector<StreamEvent> evs;
            const bool got = g->handle->wait(evs, 100ms);
            if (watch->closed()) {  // a poll() per chunk: the client may be gone before a write fails
                g->handle->cancel();
                return false;
            }
            if (!got) return true;
            std::string out;
            for (StreamEvent& ev : evs) {
                g->n_streamed += ev.n_tokens;
                std::string text = ev.text, reasoning;
                if (g->think) {
                    auto o = g->think->push(ev.text);
                    text = o.content;
                    reasoning = o.reasoning;
                }
                if (ev.finish != FinishReason::none && g->think) {
                    auto o = g->think->flush();
                    text += o.content;
                    reasoning += o.reasoning;
                }
                json calls;  // at the end of a chat with tools: the calls held back from the stream
                if (g->tools) {
                    text = g->tools->push(text);
                    if (ev.finish != FinishReason::none) {
                        text += g->tools->flush();
                        ToolCallParse tc = g->parse_calls(g->tools->held());
                        if (!tc.calls.empty()) {
                            text += tc.content;
                            calls = tool_calls_json(tc.calls, g->id);
                        } else {
                            text += g->tools->held();
                        }
                    }
                }
                const json lps = g->req.logprobs && !ev.logprobs.empty() ? logprobs_json(ev.logprobs, chat_api) : json();
                const json* lpp = lps.is_null() ? nullptr : &lps;
                if (!reasoning.empty()) out += chunk({{"reasoning_content", reasoning}}, nullptr, nullptr);
                if (!text.empty() || lpp) out += chunk(chat_api ? json{{"content", text}} : json(text), nullptr, lpp);
                if (ev.finish == FinishReason::none) continue;
                g->finish = ev.finish;
                g->stats = ev.stats;
                if (ev.finish == FinishReason::error || ev.finish == FinishReason::cancelled) {
                    out += "data: " + dump(api_error(503, ev.error.empty() ? "the request was cancelled" : ev.error)) + "\n\n";
                } else {
                    if (!calls.is_null()) out += chunk({{"tool_calls", calls}}, nullptr, nullptr);
                    out += chunk(chat_api ? json::object() : json(""),
                                 calls.is_null() ? finish_reason_name(ev.finish) : "tool_calls", nullptr);
                    if (g->req.include_usage) {
                        json u = {{"id", g->id},
                                  {"object", chat_api ? "chat.completion.chunk" : "text_completion"},
                                  {"created", g->created},
                                  {"model", model},
                                  {"choices", json::array()},
                                  {"usage", usage(*g)},
                                  {"timings", timings(*g)}};
                        out += "data: " + dump(u) + "\n\n";
                    }
                }
                out += "data: [DONE]\n\n";
            }
            if (!out.empty() && !write(out)) {
                g->handle->cancel();
                return false;
            }
            if (g->finish != FinishReason::none) {
                *finished_stream = true;
                sink.done();
            }
            return true;
        },
        [g, finished_stream](bool) {
            if (!*finished_stream) g->handle->cancel();  // the client went away or the server stops
        });
}

void ApiServer::Impl::routes() {
    svr.set_pre_routing_handler([](const httplib::Request&, httplib::Response& res) {
        res.set_header("Access-Control-Allow-Origin", "*");
        return httplib::Server::HandlerResponse::Unhandled;
    });
    svr.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        std::string msg = res.status == 404   ? fmt::format("no route {} {}", req.method, req.path)
                          : res.status == 413 ? "the request body is too large"
                          : res.status == 405 ? "method not allowed"
                                              : fmt::format("HTTP error {}", res.status);
        send_error(res, res.status, msg);
        return httplib::Server::HandlerResponse::Handled;
    }));
    svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown";
        try {
            if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
            what = e.what();
        } catch (...) {
        }
        log::warn("request handler failed: {}", what);
        send_error(res, 500, "internal error: " + what);
    });

    svr.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) { completion(req, res, true); });
    svr.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) { completion(req, res, false); });
    svr.Post("/chat/completions", [this](const httplib::Request& req, httplib::Response& res) { completion(req, res, true); });
    svr.Post("/completions", [this](const httplib::Request& req, httplib::Response& res) { completion(req, res, false); });
    svr.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
        if (!authorized(req, res)) return;
        const EngineConfig& ec = engine.config();
        json m = {{"id", config.model_name},
                  {"object", "model"},
                  {"created", unix_now()},
                  {"owned_by", "tandem"},
                  {"meta", {{"max_seq_len", ec.sched.max_seq_len}, {"cache_tokens", ec.cache_tokens}}}};
        res.set_content(dump({{"object", "list"}, {"data", {m}}}), "application/json");
    });
    svr.Get("/health", [](const httplib::Request&, httplib::Response& res) {
        res.set_content(R"({"status":"ok"})", "application/json");
    });
    svr.Get("/metrics", [this](const httplib::Request& req, httplib::Response& res) {
        if (!authorized(req, res)) return;
        res.set_content(engine.metrics().render(config.model_name), "text/plain; version=0.0.4");
    });
    svr.Post("/tokenize", [this](const httplib::Request& req, httplib::Response& res) {
        if (!authorized(req, res)) return;
        json body = json::parse(req.body, nullptr, false);
        if (!body.is_object() || !body.contains("content") || !body["content"].is_string())
            return send_error(res, 400, "send {\"content\": TEXT}");
        auto ids = tok.encode(body["content"].get<std::string>(), /*parse_special=*/true);
        if (!ids) return send_error(res, 400, ids.error().message);
        res.set_content(dump({{"tokens", *ids}}), "application/json");
    });
    svr.Post("/detokenize", [this](const httplib::Request& req, httplib::Response& res) {
        if (!authorized(req, res)) return;
        json body = json::parse(req.body, nullptr, false);
        if (!body.is_object() || !body.contains("tokens") || !body["tokens"].is_array())
            return send_error(res, 400, "send {\"tokens\": [ids]}");
        std::vector<int32_t> ids;
        for (const json& v : body["tokens"]) {
            if (!v.is_number_integer() || !tok.valid_id(v.get<int64_t>()))
                return send_error(res, 400, "tokens must be valid token ids");
            ids.push_back((int32_t)v.get<int64_t>());
        }
        auto text = tok.decode(ids);
        if (!text) return send_error(res, 400, text.error().message);
        res.set_content(dump({{"content", *text}}), "application/json");
    });
    svr.Options(R"(.*)", [](const httplib::Request&, httplib::Response& res) {
        res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
        res.status = 204;
    });
}

ApiServer::ApiServer(Engine& engine, const Tokenizer& tok, const ChatConfig* chat, ServerConfig config)
    : impl_(std::make_unique<Impl>(engine, tok, chat, std::move(config))) {
    const int threads = impl_->config.http_threads;
    impl_->svr.new_task_queue = [threads] { return new httplib::ThreadPool((size_t)threads); };
    impl_->svr.set_payload_max_length(impl_->config.max_body_bytes);
    impl_->svr.set_read_timeout(30, 0);
    impl_->svr.set_write_timeout(30, 0);
    impl_->svr.set_keep_alive_timeout(5);
    impl_->routes();
}

ApiServer::~ApiServer() { stop(); }

Status ApiServer::bind() {
    const ServerConfig& c = impl_->config;
    if (c.port == 0) {
        const int p = impl_->svr.bind_to_any_port(c.host);
        if (p <= 0) return make_error("cannot listen on {} (any port)", c.host);
        port_ = p;
    } else {
        if (!impl_->svr.bind_to_port(c.host, c.port))
            return make_error("cannot listen on {}:{} (in use, or not an address of this machine)", c.host, c.port);
        port_ = c.port;
    }
    return {};
}

void ApiServer::run() { impl_->svr.listen_after_bind(); }

void ApiServer::stop() {
    if (impl_ && impl_->svr.is_running()) impl_->svr.stop();
}

}  // namespace tandem
