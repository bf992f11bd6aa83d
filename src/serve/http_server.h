// The OpenAI-compatible HTTP front end over an Engine (cpp-httplib, one thread per connection):
// /v1/chat/completions, /v1/completions (SSE streaming or one JSON answer), /v1/models,
// /health, /metrics (Prometheus), /tokenize, /detokenize. Every error is an OpenAI error object
// with its HTTP status; a client that disconnects has its request cancelled within a step.
#pragma once

#include <memory>
#include <string>

#include "core/status.h"
#include "runtime/chat_session.h"
#include "serve/engine.h"
#include "serve/openai_api.h"

namespace tandem {

struct ServerConfig {
    std::string host = "127.0.0.1";
    int port = 10002;           // 0: any free port
    std::string api_key;        // empty: no authentication
    std::string model_name;
    size_t max_body_bytes = 8u << 20;
    int http_threads = 64;
    ApiLimits limits;
};

class ApiServer {
public:
    // chat may be null when the model has no chat template (/v1/chat/completions then answers 400).
    ApiServer(Engine& engine, const Tokenizer& tok, const ChatConfig* chat, ServerConfig config);
    ~ApiServer();

    Status bind();   // binds host:port (port 0: any); port() is then the real one
    int port() const { return port_; }
    void run();      // serves until stop()
    void stop();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    int port_ = 0;
};

}  // namespace tandem
