// Regular expressions from files users and models give us (placement rules, compressed-tensors
// `ignore` patterns): PCRE2 with bounded matching. std::regex matches by recursion and can take
// exponential time on a pattern such as `(a|a?)+b`; a hostile rule file must get an error, not a
// hang. Perl-compatible syntax (\d, groups, alternation, anchors, lookaround); patterns are bytes
// (no UTF-8 mode: tensor and module names are ASCII).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "core/status.h"

namespace tandem {

class Regex {
public:
    // Compiles `pattern`; an error says why it is not a valid regex (PCRE2's message and offset).
    static Result<Regex> compile(const std::string& pattern);

    // Whether the pattern matches somewhere in `s` (search) or all of it (full); an error when the
    // match needs more backtracking steps than kMatchLimit (a catastrophic pattern).
    Result<bool> search(std::string_view s) const { return run(s, false); }
    Result<bool> full_match(std::string_view s) const { return run(s, true); }

    const std::string& pattern() const { return pattern_; }

    static constexpr uint32_t kMatchLimit = 1'000'000;   // backtracking steps per match
    static constexpr uint32_t kDepthLimit = 10'000;      // nested backtracking points (heap frames)

private:
    struct Code;
    Result<bool> run(std::string_view s, bool full) const;
    std::string pattern_;
    std::shared_ptr<const Code> code_;  // shared: compiled once, Rule/RuleSet stay copyable
};

}  // namespace tandem
