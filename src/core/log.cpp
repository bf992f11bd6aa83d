#include "core/log.h"

#include <atomic>
#include <cstdio>

namespace tandem::log {
namespace {
std::atomic<Level> g_level{Level::info};
}

void set_level(Level l) { g_level.store(l); }
Level level() { return g_level.load(); }

void write(Level l, std::string_view msg) {
    static constexpr const char* kTags[] = {"debug", "info", "warn", "error", ""};
    std::fprintf(stderr, "[%s] %.*s\n", kTags[(int)l], (int)msg.size(), msg.data());
}

}  // namespace tandem::log
