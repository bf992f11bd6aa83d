#include "core/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace tandem {

struct Regex::Code {
    pcre2_code* code = nullptr;
    pcre2_match_context* match_ctx = nullptr;
    ~Code() {
        pcre2_match_context_free(match_ctx);
        pcre2_code_free(code);
    }
};

namespace {
std::string pcre2_message(int code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(code, buf, sizeof buf);
    return reinterpret_cast<const char*>(buf);
}
}  // namespace

Result<Regex> Regex::compile(const std::string& pattern) {
    auto c = std::make_shared<Code>();
    int err = 0;
    PCRE2_SIZE offset = 0;
    c->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), 0, &err, &offset, nullptr);
    if (!c->code) return make_error("{} (at offset {})", pcre2_message(err), offset);
    c->match_ctx = pcre2_match_context_create(nullptr);
    if (!c->match_ctx) return make_error("out of memory");
    pcre2_set_match_limit(c->match_ctx, kMatchLimit);
    pcre2_set_depth_limit(c->match_ctx, kDepthLimit);
    Regex r;
    r.pattern_ = pattern;
    r.code_ = std::move(c);
    return r;
}

Result<bool> Regex::run(std::string_view s, bool full) const {
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
        pcre2_match_data_create_from_pattern(code_->code, nullptr), &pcre2_match_data_free);
    if (!md) return make_error("out of memory");
    const int rc = pcre2_match(code_->code, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0,
                               full ? PCRE2_ANCHORED | PCRE2_ENDANCHORED : 0, md.get(), code_->match_ctx);
    if (rc >= 0) return true;
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT)
        return make_error("regex '{}' needs too many backtracking steps on '{}' (simplify it)", pattern_, s);
    return make_error("regex '{}' on '{}': {}", pattern_, s, pcre2_message(rc));
}

}  // namespace tandem
