#include "serve/http_server.h"

#include <httplib.h>

#include <atomic>

#include "core/log.h"
#include "serve/completions.h"
#include "serve/http_util.h"
#include "serve/request_json.h"

namespace tandem {
namespace {

using json = nlohmann::json;

bool constant_time_equal(const std::string& a, const std::string& b) {
    if (a.size() != b.size()) return false;
    unsigned char d = 0;
    for (size_t i = 0; i < a.size(); ++i) d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
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
    CompletionContext completions{engine, tok, chat, chat ? tool_call_format(chat->chat_template) : ToolCallFormat::json, config,
                                  next_id};

    void routes();
    bool authorized(const httplib::Request& req, httplib::Response& res, bool anthropic = false) const;
    void completion(const httplib::Request& req, httplib::Response& res, bool chat_api) {
        if (authorized(req, res)) serve_completion(completions, req, res, chat_api);
    }
};

bool ApiServer::Impl::authorized(const httplib::Request& req, httplib::Response& res, bool anthropic) const {
    if (config.api_key.empty()) return true;
    std::string key;
    const std::string auth = req.get_header_value("Authorization");
    if (auth.rfind("Bearer ", 0) == 0) key = auth.substr(7);
    else key = req.get_header_value("x-api-key");
    if (!key.empty() && constant_time_equal(key, config.api_key)) return true;
    send_error(res, 401, key.empty() ? "missing API key: send Authorization: Bearer KEY (or x-api-key: KEY)" : "invalid API key",
               anthropic);
    return false;
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
    svr.Post("/v1/responses", [this](const httplib::Request& req, httplib::Response& res) {
        if (authorized(req, res)) serve_responses(completions, req, res);
    });
    // Anthropic's Messages API (Claude Code and other Anthropic clients)
    svr.Post("/v1/messages", [this](const httplib::Request& req, httplib::Response& res) {
        if (authorized(req, res, true)) serve_messages(completions, req, res);
    });
    svr.Post("/v1/messages/count_tokens", [this](const httplib::Request& req, httplib::Response& res) {
        if (authorized(req, res, true)) serve_count_tokens(completions, req, res);
    });
    auto model_object = [this] {
        const EngineConfig& ec = engine.config();
        return json{{"id", config.model_name},
                    {"object", "model"},
                    {"created", unix_now()},
                    {"owned_by", "tandem"},
                    {"meta", {{"max_seq_len", ec.sched.max_seq_len}, {"cache_tokens", ec.cache_tokens}}}};
    };
    svr.Get("/v1/models", [this, model_object](const httplib::Request& req, httplib::Response& res) {
        if (!authorized(req, res)) return;
        res.set_content(dump_json({{"object", "list"}, {"data", {model_object()}}}), "application/json");
    });
    // OpenAI's "retrieve model" (client.models.retrieve): this server's one model, or 404
    svr.Get(R"(/v1/models/(.+))", [this, model_object](const httplib::Request& req, httplib::Response& res) {
        if (!authorized(req, res)) return;
        const std::string id = req.matches[1];
        if (id != config.model_name) return send_error(res, 404, fmt::format("the model '{}' does not exist (this server has '{}')", id, config.model_name));
        res.set_content(dump_json(model_object()), "application/json");
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
        const chat::Json body = parse_json_bounded(req.body);
        if (!body.is_object() || !body.contains("content") || !body["content"].is_string())
            return send_error(res, 400, "send {\"content\": TEXT}");
        auto ids = tok.encode(body["content"].get<std::string>(), /*parse_special=*/true);
        if (!ids) return send_error(res, 400, ids.error().message);
        res.set_content(dump_json({{"tokens", *ids}}), "application/json");
    });
    svr.Post("/detokenize", [this](const httplib::Request& req, httplib::Response& res) {
        if (!authorized(req, res)) return;
        const chat::Json body = parse_json_bounded(req.body);
        if (!body.is_object() || !body.contains("tokens") || !body["tokens"].is_array())
            return send_error(res, 400, "send {\"tokens\": [ids]}");
        std::vector<int32_t> ids;
        for (const chat::Json& v : body["tokens"]) {
            if (!v.is_number_integer() || !tok.valid_id(v.get<int64_t>()))
                return send_error(res, 400, "tokens must be valid token ids");
            ids.push_back((int32_t)v.get<int64_t>());
        }
        auto text = tok.decode(ids);
        if (!text) return send_error(res, 400, text.error().message);
        res.set_content(dump_json({{"content", *text}}), "application/json");
    });
    svr.Options(R"(.*)", [](const httplib::Request&, httplib::Response& res) {
        res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type, x-api-key, anthropic-version");
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
