#include "serve/text_stream.h"

#include <algorithm>

namespace tandem {

size_t partial_suffix(const std::string& text, const std::string& marker) {
    const size_t max = std::min(text.size(), marker.empty() ? 0 : marker.size() - 1);
    for (size_t len = max; len > 0; --len)
        if (text.compare(text.size() - len, len, marker, 0, len) == 0) return len;
    return 0;
}

StopMatcher::StopMatcher(std::vector<std::string> stops) {
    for (auto& s : stops)
        if (!s.empty()) stops_.push_back(std::move(s));
}

std::string StopMatcher::push(const std::string& text) {
    if (stopped_) return {};
    held_ += text;
    // the earliest stop string wins
    size_t best = std::string::npos;
    for (const std::string& s : stops_) {
        const size_t at = held_.find(s);
        if (at < best) {
            best = at;
            matched_ = s;
        }
    }
    if (best != std::string::npos) {
        stopped_ = true;
        std::string out = held_.substr(0, best);
        held_.clear();
        return out;
    }
    size_t keep = 0;
    for (const std::string& s : stops_) keep = std::max(keep, partial_suffix(held_, s));
    std::string out = held_.substr(0, held_.size() - keep);
    held_.erase(0, held_.size() - keep);
    return out;
}

std::string StopMatcher::flush() {
    if (stopped_) return {};
    std::string out;
    out.swap(held_);
    return out;
}

ThinkSplitter::Out ThinkSplitter::push(const std::string& text) {
    static const std::string kOpen = "<think>", kClose = "</think>";
    Out out;
    held_ += text;
    for (;;) {
        const std::string& marker = in_reasoning_ ? kClose : kOpen;
        const bool active = in_reasoning_ || !seen_content_;
        const size_t at = active ? held_.find(marker) : std::string::npos;
        if (at != std::string::npos) {
            std::string before = held_.substr(0, at);
            // text before <think> that is only whitespace is not content
            if (!in_reasoning_ && before.find_first_not_of(" \n\r\t") == std::string::npos) before.clear();
            emit(out, before);
            held_.erase(0, at + marker.size());
            in_reasoning_ = !in_reasoning_;
            after_close_ = !in_reasoning_;  // the answer usually starts after blank lines
            continue;
        }
        const size_t keep = active ? partial_suffix(held_, marker) : 0;
        std::string ready = held_.substr(0, held_.size() - keep);
        held_.erase(0, held_.size() - keep);
        if (after_close_) {
            ready.erase(0, std::min(ready.size(), ready.find_first_not_of('\n')));
            if (!ready.empty()) after_close_ = false;
        }
        if (!in_reasoning_ && !seen_content_ && ready.find_first_not_of(" \n\r\t") == std::string::npos) {
            held_.insert(0, ready);  // leading whitespace: still waiting to see if <think> follows
            return out;
        }
        if (!in_reasoning_ && !ready.empty()) seen_content_ = true;
        emit(out, ready);
        return out;
    }
}

ThinkSplitter::Out ThinkSplitter::flush() {
    Out out;
    emit(out, held_);
    held_.clear();
    return out;
}

}  // namespace tandem
