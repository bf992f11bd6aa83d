// core/regex: PCRE2 with bounded matching for user-given patterns (placement rules, ignore lists).
#include "core/regex.h"

#include <gtest/gtest.h>

#include <chrono>

namespace tandem {
namespace {

TEST(Regex, SearchesAndMatchesWholeNames) {
    auto r = Regex::compile(R"(^blk\.\d+\.ffn_(gate|up|down)_exps\.weight$)");
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_TRUE(*r->search("blk.11.ffn_down_exps.weight"));
    EXPECT_FALSE(*r->search("blk.11.ffn_down_shexp.weight"));
    EXPECT_FALSE(*r->search("blk.x.ffn_up_exps.weight"));

    auto attn = Regex::compile("attn_[qk]");
    ASSERT_TRUE(attn.ok());
    EXPECT_TRUE(*attn->search("blk.0.attn_q.weight"));       // anywhere in the name
    EXPECT_FALSE(*attn->full_match("blk.0.attn_q.weight"));  // not the whole of it
    EXPECT_TRUE(*attn->full_match("attn_k"));
    auto alt = Regex::compile("a|ab");
    ASSERT_TRUE(alt.ok());
    EXPECT_TRUE(*alt->full_match("ab"));  // full match tries every alternative, not the first hit
    EXPECT_EQ(attn->pattern(), "attn_[qk]");
}

TEST(Regex, InvalidPatternsSayWhy) {
    for (const char* bad : {"blk.([", "(", "a{2,1}", "*x", "(?<", "\\"}) {
        auto r = Regex::compile(bad);
        ASSERT_FALSE(r.ok()) << bad;
        EXPECT_NE(r.error().message.find("offset"), std::string::npos) << r.error().message;
    }
}

TEST(Regex, CatastrophicBacktrackingIsAnErrorNotAHang) {
    // nested quantifiers over a name that almost matches: exponential for a backtracking matcher
    // (the name holds '_' but does not end with it: PCRE2's required-character check cannot cut it short)
    auto r = Regex::compile(R"(^(\w|\.|\w\.?|[a-z])*_$)");
    ASSERT_TRUE(r.ok()) << r.error().message;
    const std::string name = "blk.11.ffn_down_exps.weight.blk.11.ffn_down_exps.weight.blk.11.ffn_down_exps.weight";
    const auto t0 = std::chrono::steady_clock::now();
    auto hit = r->search(name);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_FALSE(hit.ok());
    EXPECT_NE(hit.error().message.find("too many backtracking steps"), std::string::npos) << hit.error().message;
    EXPECT_LT(s, 5.0);  // bounded by the match limit (milliseconds); a generous bound for a loaded CI box
    // the same pattern on a short name is answered
    auto short_hit = r->search("x_");
    ASSERT_TRUE(short_hit.ok());
    EXPECT_TRUE(*short_hit);
}

TEST(Regex, BytesThatAreNotUtf8AreJustBytes) {
    auto r = Regex::compile(std::string("a\xff+b"));
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(*r->search(std::string("xa\xff\xff" "b")));
    EXPECT_FALSE(*r->search("ab"));
}

}  // namespace
}  // namespace tandem
