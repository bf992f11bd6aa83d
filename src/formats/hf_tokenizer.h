// Reads a Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) into the form GGUF
// stores (tokenizer.ggml.*): token strings by id, token types, merges, special ids, template.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace tandem {

enum class TokenType : int32_t { normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };

struct HfTokenizer {
    std::vector<std::string> tokens;  // id -> token text (byte-level BPE alphabet)
    std::vector<int32_t> types;       // id -> TokenType
    std::vector<std::string> merges;  // "left right", by rank
    int32_t bos_id = -1, eos_id = -1, pad_id = -1;
    bool add_bos = false;
    std::string chat_template;
    std::string pre = "qwen2";  // llama.cpp pre-tokenizer name

    // dir holds tokenizer.json and tokenizer_config.json
    static Result<HfTokenizer> load(const std::string& dir);
    // Pads the vocabulary to n with "[PAD{i}]" tokens of type unused (as llama.cpp's converter).
    Status pad_to(int64_t n);
};

}  // namespace tandem
