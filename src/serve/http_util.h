// Small pieces shared by the HTTP handlers: the JSON dump every answer uses, OpenAI error
// answers, and a watch on a request's connection.
#pragma once

#include <httplib.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace tandem {

// Compact JSON; invalid UTF-8 (a token cut in the middle of a character) becomes U+FFFD.
std::string dump_json(const nlohmann::json& j);

// An OpenAI (or Anthropic) error object with its status (429/503 also say Retry-After).
void send_error(httplib::Response& res, int status, const std::string& message, bool anthropic = false);

int64_t unix_now();

// The socket of an HTTP connection, found from the request's addresses, so that a handler that
// is waiting for the engine can notice that its client went away (cpp-httplib 0.11 offers no
// such check). A peer that closed its end makes the socket readable with 0 bytes or HUP.
class ConnectionWatch {
public:
    explicit ConnectionWatch(const httplib::Request& req);
    bool closed() const;

private:
    int fd_ = -1;
};

}  // namespace tandem
