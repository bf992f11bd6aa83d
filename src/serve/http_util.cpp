#include "serve/http_util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstdlib>
#include <ctime>

#include "serve/anthropic_api.h"
#include "serve/openai_api.h"

namespace tandem {
namespace {

int port_of(const sockaddr_storage& a) {
    if (a.ss_family == AF_INET) return ntohs(((const sockaddr_in&)a).sin_port);
    if (a.ss_family == AF_INET6) return ntohs(((const sockaddr_in6&)a).sin6_port);
    return -1;
}

std::string addr_of(const sockaddr_storage& a) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (a.ss_family == AF_INET) inet_ntop(AF_INET, &((const sockaddr_in&)a).sin_addr, buf, sizeof buf);
    else if (a.ss_family == AF_INET6) inet_ntop(AF_INET6, &((const sockaddr_in6&)a).sin6_addr, buf, sizeof buf);
    return buf;
}

}  // namespace

std::string dump_json(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

void send_error(httplib::Response& res, int status, const std::string& message, bool anthropic) {
    res.status = status;
    res.set_content(dump_json(anthropic ? anthropic_error(status, message) : api_error(status, message)),
                    "application/json");
    if (status == 429 || status == 503) res.set_header("Retry-After", "1");
}

int64_t unix_now() { return (int64_t)std::time(nullptr); }

ConnectionWatch::ConnectionWatch(const httplib::Request& req) {
    DIR* dir = opendir("/proc/self/fd");
    if (!dir) return;
    while (dirent* e = readdir(dir)) {
        const int fd = std::atoi(e->d_name);
        if (fd <= 2) continue;
        sockaddr_storage peer{}, local{};
        socklen_t pl = sizeof peer, ll = sizeof local;
        if (getpeername(fd, (sockaddr*)&peer, &pl) != 0 || getsockname(fd, (sockaddr*)&local, &ll) != 0) continue;
        if (port_of(peer) == req.remote_port && port_of(local) == req.local_port && addr_of(peer) == req.remote_addr) {
            fd_ = fd;
            break;
        }
    }
    closedir(dir);
}

bool ConnectionWatch::closed() const {
    if (fd_ < 0) return false;
    pollfd p{fd_, (short)(POLLIN | POLLRDHUP), 0};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
    char c;
    return (p.revents & POLLIN) && recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

}  // namespace tandem
