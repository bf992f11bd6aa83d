// Byte-level BPE tokenizer for Qwen2/Qwen3 models, id-exact with Hugging Face `tokenizers`.
//
// encode(text): split on added tokens (control/user_defined, longest match first; control ones
// only when parse_special) -> NFC-normalise the other pieces -> split them with the Qwen2
// pre-tokenizer regex -> map each piece's bytes to the GPT-2 byte alphabet -> merge by rank.
// decode(ids): token text -> bytes (GPT-2 alphabet reversed; added tokens verbatim).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "core/utf8.h"

namespace tandem {

class GgufFile;
struct HfTokenizer;

// GPT-2 byte-level alphabet: every byte maps to one printable code point (bytes 33..126,
// 161..172, 174..255 to themselves, the 68 others to 256, 257, ... in order).
uint32_t byte_to_codepoint(uint8_t b);
// The byte a code point stands for, or -1 if it is not in the alphabet.
int codepoint_to_byte(uint32_t cp);

class Tokenizer {
public:
    // Vocabulary: token strings by id (GPT-2 byte alphabet), types by id (TokenType values;
    // empty means all normal), merges "left right" by rank, and the pre-tokenizer name.
    static Result<Tokenizer> from_vocab(std::vector<std::string> tokens, std::vector<int32_t> types,
                                        const std::vector<std::string>& merges, const std::string& pre,
                                        int32_t eos_id, int32_t bos_id);
    // tokenizer.ggml.* metadata (model "gpt2", pre "qwen2").
    static Result<Tokenizer> from_gguf(const GgufFile& file);
    static Result<Tokenizer> from_hf(const HfTokenizer& hf);

    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;
    ~Tokenizer();

    // Token ids of text (which must be valid UTF-8). No BOS is added. Control tokens written in
    // the text (<|im_start|>) become their ids only when parse_special; user-defined tokens
    // (<think>) always do, as in Hugging Face.
    Result<std::vector<int32_t>> encode(std::string_view text, bool parse_special = true) const;
    // Bytes of the ids concatenated (may end inside a UTF-8 character); error on a bad id.
    Result<std::string> decode(const std::vector<int32_t>& ids) const;
    // Bytes of one token (empty for an id out of range).
    std::string_view token_bytes(int32_t id) const;

    int32_t n_vocab() const { return (int32_t)tokens_.size(); }
    bool valid_id(int64_t id) const { return id >= 0 && id < (int64_t)tokens_.size(); }
    const std::string& token_text(int32_t id) const { return tokens_[(size_t)id]; }
    int32_t token_type(int32_t id) const { return types_[(size_t)id]; }
    int32_t eos_id() const { return eos_id_; }
    // The id of a special token written as text ("<think>"), or -1 when the vocabulary has none.
    int32_t special_id(std::string_view text) const;
    int32_t bos_id() const { return bos_id_; }

private:
    struct Regex;
    struct Cache;
    Tokenizer();
    // Appends the ids of one NFC-normalised, pre-tokenizer-split piece.
    void encode_word(std::string_view word, std::vector<int32_t>& out) const;
    void bpe(std::string_view word, std::vector<int32_t>& out) const;
    Status encode_text(std::string_view text, std::vector<int32_t>& out) const;  // no added tokens

    std::vector<std::string> tokens_;  // id -> text in the GPT-2 byte alphabet
    std::vector<int32_t> types_;       // id -> TokenType
    std::vector<std::string> bytes_;   // id -> decoded bytes
    std::unordered_map<std::string, int32_t> token_ids_;
    std::array<int32_t, 256> byte_ids_{};  // byte -> id of its one-character token
    // (left id << 32 | right id) -> (rank << 32 | merged id)
    std::unordered_map<uint64_t, uint64_t> merges_;
    // added tokens by first byte, longest first
    std::array<std::vector<int32_t>, 256> added_by_byte_;
    int32_t eos_id_ = -1, bos_id_ = -1;
    std::unique_ptr<Regex> regex_;
    std::unique_ptr<Cache> cache_;
};

// Turns generated ids into text one id at a time, holding back the bytes of a character that is
// not complete yet: every returned string is valid UTF-8 (bytes that can never become valid are
// replaced by U+FFFD).
class StreamingDecoder {
public:
    explicit StreamingDecoder(const Tokenizer& tok) : tok_(&tok) {}
    std::string push(int32_t id);
    // The held-back bytes (as U+FFFD) at the end of the stream.
    std::string flush();

private:
    const Tokenizer* tok_;
    std::string pending_;
};

}  // namespace tandem
