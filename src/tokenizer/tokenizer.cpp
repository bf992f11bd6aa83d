#include "tokenizer/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <limits>
#include <mutex>
#include <queue>

#include "formats/gguf.h"
#include "formats/hf_tokenizer.h"
#include "model/arch.h"

namespace tandem {

// ---------------------------------------------------------------------------------------------
// UTF-8 helpers

// ---------------------------------------------------------------------------------------------
// GPT-2 byte alphabet

namespace {

bool maps_to_itself(int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255); }

struct ByteAlphabet {
    std::array<uint32_t, 256> to_cp{};
    std::unordered_map<uint32_t, uint8_t> to_byte;
    ByteAlphabet() {
        uint32_t next = 256;
        for (int b = 0; b < 256; ++b) {
            to_cp[(size_t)b] = maps_to_itself(b) ? (uint32_t)b : next++;
            to_byte[to_cp[(size_t)b]] = (uint8_t)b;
        }
    }
};

const ByteAlphabet& alphabet() {
    static const ByteAlphabet a;
    return a;
}

bool is_added(int32_t type) {
    return type == (int32_t)TokenType::control || type == (int32_t)TokenType::user_defined;
}

// Unicode White_Space, the set Rust's regex (and so Hugging Face) means by \s; PCRE2's \s
// differs (U+180E in, U+0085 out depending on version).
constexpr const char* kWs = R"(\t\n\x{0B}\f\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";

// The Qwen2 pre-tokenizer split (tokenizer.json pre_tokenizer.pretokenizers[0].pattern):
// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|
// \s*[\r\n]+|\s+(?!\S)|\s+
std::string qwen2_pattern() {
    const std::string s = std::string("[") + kWs + "]";
    const std::string not_s = std::string("[^") + kWs + "]";
    return std::string(R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^)") + kWs +
           R"(\p{L}\p{N}]+[\r\n]*|)" + s + R"(*[\r\n]+|)" + s + "+(?!" + not_s + ")|" + s + "+";
}

// NFC as Hugging Face's normalizer (ICU); text is valid UTF-8.
std::string nfc(std::string_view text) {
    if (std::all_of(text.begin(), text.end(), [](char c) { return (uint8_t)c < 0x80; })) return std::string(text);
    UErrorCode err = U_ZERO_ERROR;
    const icu::Normalizer2* norm = icu::Normalizer2::getNFCInstance(err);
    if (U_FAILURE(err)) return std::string(text);
    const icu::UnicodeString u = icu::UnicodeString::fromUTF8(icu::StringPiece(text.data(), (int32_t)text.size()));
    if (norm->isNormalized(u, err) && U_SUCCESS(err)) return std::string(text);
    err = U_ZERO_ERROR;
    const icu::UnicodeString n = norm->normalize(u, err);
    if (U_FAILURE(err)) return std::string(text);
    std::string out;
    n.toUTF8String(out);
    return out;
}

constexpr size_t kCacheMaxWordBytes = 256;
constexpr size_t kCacheMaxEntries = 1 << 16;

}  // namespace

uint32_t byte_to_codepoint(uint8_t b) { return alphabet().to_cp[b]; }

int codepoint_to_byte(uint32_t cp) {
    const auto& m = alphabet().to_byte;
    auto it = m.find(cp);
    return it == m.end() ? -1 : it->second;
}

// ---------------------------------------------------------------------------------------------
// Tokenizer

struct Tokenizer::Regex {
    pcre2_code* code = nullptr;
    ~Regex() { pcre2_code_free(code); }
};

struct Tokenizer::Cache {
    std::mutex mu;
    std::unordered_map<std::string, std::vector<int32_t>> words;
};

Tokenizer::Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Result<Tokenizer> Tokenizer::from_vocab(std::vector<std::string> tokens, std::vector<int32_t> types,
                                        const std::vector<std::string>& merges, const std::string& pre,
                                        int32_t eos_id, int32_t bos_id) {
    if (pre != "qwen2")
        return make_error("tokenizer pre-tokenizer '{}' is not supported (only qwen2)", pre);
    if (tokens.empty() || tokens.size() > (size_t)std::numeric_limits<int32_t>::max())
        return make_error("tokenizer has {} tokens", tokens.size());
    if (types.empty()) types.assign(tokens.size(), (int32_t)TokenType::normal);
    if (types.size() != tokens.size())
        return make_error("tokenizer has {} tokens but {} token types", tokens.size(), types.size());

    Tokenizer t;
    t.tokens_ = std::move(tokens);
    t.types_ = std::move(types);
    const int32_t n = (int32_t)t.tokens_.size();
    t.eos_id_ = eos_id >= 0 && eos_id < n ? eos_id : -1;
    t.bos_id_ = bos_id >= 0 && bos_id < n ? bos_id : -1;

    t.bytes_.resize((size_t)n);
    for (int32_t id = 0; id < n; ++id) {
        const std::string& s = t.tokens_[(size_t)id];
        if (is_added(t.types_[(size_t)id])) {
            if (!s.empty()) t.added_by_byte_[(uint8_t)s[0]].push_back(id);
            t.bytes_[(size_t)id] = s;
            continue;
        }
        t.token_ids_.emplace(s, id);
        // GPT-2 alphabet back to bytes; a token outside the alphabet decodes verbatim
        std::string out;
        bool ok = utf8::first_invalid(s) == s.size();
        for (size_t i = 0; ok && i < s.size();) {
            const int len = utf8::sequence_length(s.data(), s.size(), i);
            const int b = codepoint_to_byte(utf8::decode_at(s, i, len));
            if (b < 0) ok = false;
            out += (char)b;
            i += (size_t)len;
        }
        t.bytes_[(size_t)id] = ok ? out : s;
    }
    for (auto& v : t.added_by_byte_)
        std::stable_sort(v.begin(), v.end(),
                         [&](int32_t a, int32_t b) { return t.tokens_[(size_t)a].size() > t.tokens_[(size_t)b].size(); });

    for (int b = 0; b < 256; ++b) {
        std::string ch;
        utf8::append(ch, byte_to_codepoint((uint8_t)b));
        auto it = t.token_ids_.find(ch);
        if (it == t.token_ids_.end()) return make_error("tokenizer vocabulary lacks the token for byte {:#04x}", b);
        t.byte_ids_[(size_t)b] = it->second;
    }

    t.merges_.reserve(merges.size());
    for (size_t rank = 0; rank < merges.size(); ++rank) {
        const std::string& m = merges[rank];
        const size_t sp = m.find(' ', 1);
        if (sp == std::string::npos) return make_error("tokenizer merge {} '{}' is not 'left right'", rank, m);
        const std::string left = m.substr(0, sp), right = m.substr(sp + 1);
        auto l = t.token_ids_.find(left), r = t.token_ids_.find(right), lr = t.token_ids_.find(left + right);
        if (l == t.token_ids_.end() || r == t.token_ids_.end() || lr == t.token_ids_.end())
            return make_error("tokenizer merge {} '{}' names a token that is not in the vocabulary", rank, m);
        const uint64_t key = (uint64_t)(uint32_t)l->second << 32 | (uint32_t)r->second;
        t.merges_.emplace(key, (uint64_t)rank << 32 | (uint32_t)lr->second);  // first (lowest) rank wins
    }

    const std::string pattern = qwen2_pattern();
    int err = 0;
    PCRE2_SIZE err_off = 0;
    t.regex_ = std::make_unique<Regex>();
    t.regex_->code = pcre2_compile((PCRE2_SPTR)pattern.c_str(), pattern.size(), PCRE2_UTF | PCRE2_UCP, &err,
                                   &err_off, nullptr);
    if (!t.regex_->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return make_error("tokenizer regex: {} at {}", (const char*)msg, (size_t)err_off);
    }
    pcre2_jit_compile(t.regex_->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if no JIT
    t.cache_ = std::make_unique<Cache>();
    return t;
}

Result<Tokenizer> Tokenizer::from_gguf(const GgufFile& file) {
    const GgufValue* toks = file.find(key::kTokTokens);
    if (!toks || toks->type != GgufType::ARRAY || toks->array_type != GgufType::STRING)
        return make_error("{}: {} is missing (no tokenizer in this file)", file.path(), key::kTokTokens);
    if (const GgufValue* m = file.find(key::kTokModel); m && m->type == GgufType::STRING && m->str != "gpt2")
        return make_error("{}: {} '{}' is not supported (only gpt2 byte-level BPE)", file.path(), key::kTokModel,
                          m->str);
    std::vector<int32_t> types;
    if (const GgufValue* v = file.find(key::kTokTypes)) {
        if (v->type != GgufType::ARRAY || v->array_len != toks->strings.size() || v->array_type == GgufType::STRING ||
            v->array_type == GgufType::ARRAY)
            return make_error("{}: {} must be an integer array of {} entries", file.path(), key::kTokTypes,
                              toks->strings.size());
        types.resize(v->array_len);
        for (uint64_t i = 0; i < v->array_len; ++i) types[i] = (int32_t)v->array_int(i);
    }
    std::vector<std::string> merges;
    if (const GgufValue* v = file.find(key::kTokMerges); v && v->type == GgufType::ARRAY) merges = v->strings;
    std::string pre = "qwen2";
    if (const GgufValue* v = file.find(key::kTokPre); v && v->type == GgufType::STRING) pre = v->str;
    auto int_or = [&](const char* k) -> int32_t {
        const GgufValue* v = file.find(k);
        return v && v->is_integer() ? (int32_t)v->as_int() : -1;
    };
    auto t = from_vocab(toks->strings, std::move(types), merges, pre, int_or(key::kTokEos), int_or(key::kTokBos));
    if (!t) return make_error("{}: {}", file.path(), t.error().message);
    return t;
}

Result<Tokenizer> Tokenizer::from_hf(const HfTokenizer& hf) {
    return from_vocab(hf.tokens, hf.types, hf.merges, hf.pre, hf.eos_id, hf.bos_id);
}

Result<std::vector<int32_t>> Tokenizer::encode(std::string_view text, bool parse_special) const {
    if (const size_t bad = utf8::first_invalid(text); bad != text.size())
        return make_error("text is not valid UTF-8 (byte {})", bad);
    std::vector<int32_t> out;
    size_t seg = 0;  // start of the text not yet encoded
    for (size_t pos = 0; pos < text.size();) {
        int32_t hit = -1;
        for (int32_t id : added_by_byte_[(uint8_t)text[pos]]) {
            if (!parse_special && types_[(size_t)id] == (int32_t)TokenType::control) continue;
            if (text.substr(pos).starts_with(tokens_[(size_t)id])) {
                hit = id;  // longest first
                break;
            }
        }
        if (hit < 0) {
            ++pos;
            continue;
        }
        TANDEM_TRY(encode_text(text.substr(seg, pos - seg), out));
        out.push_back(hit);
        pos += tokens_[(size_t)hit].size();
        seg = pos;
    }
    TANDEM_TRY(encode_text(text.substr(seg), out));
    return out;
}

Status Tokenizer::encode_text(std::string_view raw, std::vector<int32_t>& out) const {
    if (raw.empty()) return {};
    const std::string text = nfc(raw);
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(regex_->code, nullptr);
    if (!md) return make_error("tokenizer: out of memory");
    size_t pos = 0;
    Status st;
    while (pos < text.size()) {
        const int rc = pcre2_match(regex_->code, (PCRE2_SPTR)text.data(), text.size(), pos, PCRE2_NO_UTF_CHECK, md,
                                   nullptr);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            st = make_error("tokenizer regex match: {}", (const char*)msg);
            break;
        }
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        const size_t b = ov[0], e = ov[1];
        if (b > pos) encode_word(std::string_view(text).substr(pos, b - pos), out);  // unmatched gap: its own piece
        if (e == b) {  // cannot happen with this pattern (no alternative matches empty); never loop
            st = make_error("tokenizer regex matched an empty piece");
            break;
        }
        encode_word(std::string_view(text).substr(b, e - b), out);
        pos = e;
    }
    if (st.ok() && pos < text.size()) encode_word(std::string_view(text).substr(pos), out);
    pcre2_match_data_free(md);
    return st;
}

void Tokenizer::encode_word(std::string_view word, std::vector<int32_t>& out) const {
    const bool cacheable = word.size() <= kCacheMaxWordBytes;
    if (cacheable) {
        std::lock_guard<std::mutex> lock(cache_->mu);
        auto it = cache_->words.find(std::string(word));
        if (it != cache_->words.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    std::vector<int32_t> ids;
    bpe(word, ids);
    out.insert(out.end(), ids.begin(), ids.end());
    if (cacheable) {
        std::lock_guard<std::mutex> lock(cache_->mu);
        if (cache_->words.size() >= kCacheMaxEntries) cache_->words.clear();
        cache_->words.emplace(std::string(word), std::move(ids));
    }
}

// Merges the lowest-ranked adjacent pair (leftmost on ties) until none is left, as Hugging Face's
// BPE does: symbols in a linked list, candidate merges in a min-heap keyed (rank, position);
// entries made stale by an earlier merge are skipped. O(n log n) in the piece length, so a piece
// of a million spaces is fine.
void Tokenizer::bpe(std::string_view word, std::vector<int32_t>& out) const {
    const size_t n = word.size();
    std::vector<int32_t> sym(n);
    std::vector<int64_t> prev(n), next(n);  // -1 / n: none
    for (size_t i = 0; i < n; ++i) {
        sym[i] = byte_ids_[(uint8_t)word[i]];
        prev[i] = (int64_t)i - 1;
        next[i] = (int64_t)i + 1;
    }
    struct Cand {
        uint32_t rank;
        uint32_t pos;  // left symbol; the right one is the left's next when the entry was made
        int32_t left, right, merged;
        bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
    auto consider = [&](int64_t l) {
        if (l < 0 || next[(size_t)l] >= (int64_t)n) return;
        const int32_t a = sym[(size_t)l], b = sym[(size_t)next[(size_t)l]];
        auto it = merges_.find((uint64_t)(uint32_t)a << 32 | (uint32_t)b);
        if (it != merges_.end())
            heap.push({(uint32_t)(it->second >> 32), (uint32_t)l, a, b, (int32_t)(uint32_t)it->second});
    };
    for (size_t i = 0; i + 1 < n; ++i) consider((int64_t)i);
    std::vector<bool> dead(n, false);
    while (!heap.empty()) {
        const Cand c = heap.top();
        heap.pop();
        const size_t l = c.pos;
        if (dead[l] || sym[l] != c.left) continue;
        const int64_t r = next[l];
        if (r >= (int64_t)n || sym[(size_t)r] != c.right) continue;  // stale
        sym[l] = c.merged;
        dead[(size_t)r] = true;
        next[l] = next[(size_t)r];
        if (next[l] < (int64_t)n) prev[(size_t)next[l]] = (int64_t)l;
        consider(prev[l]);
        consider((int64_t)l);
    }
    for (size_t i = 0; i < n; i = (size_t)next[i]) out.push_back(sym[i]);
}

int32_t Tokenizer::special_id(std::string_view text) const {
    auto ids = encode(text, /*parse_special=*/true);
    if (!ids || ids->size() != 1 || token_bytes((*ids)[0]) != text) return -1;
    return (*ids)[0];
}

std::string_view Tokenizer::token_bytes(int32_t id) const {
    return valid_id(id) ? std::string_view(bytes_[(size_t)id]) : std::string_view();
}

Result<std::string> Tokenizer::decode(const std::vector<int32_t>& ids) const {
    std::string out;
    for (int32_t id : ids) {
        if (!valid_id(id)) return make_error("token id {} is out of the vocabulary (0..{})", id, n_vocab() - 1);
        out += bytes_[(size_t)id];
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// StreamingDecoder

std::string StreamingDecoder::push(int32_t id) {
    pending_ += tok_->token_bytes(id);
    std::string out;
    size_t i = 0;
    while (i < pending_.size()) {
        const int len = utf8::sequence_length(pending_.data(), pending_.size(), i);
        if (len == 0) break;  // wait for the rest of the character
        if (len < 0) {
            utf8::append(out, 0xFFFD);
            ++i;
            continue;
        }
        out.append(pending_, i, (size_t)len);
        i += (size_t)len;
    }
    pending_.erase(0, i);
    return out;
}

std::string StreamingDecoder::flush() {
    std::string out;
    if (!pending_.empty()) utf8::append(out, 0xFFFD);
    pending_.clear();
    return out;
}

}  // namespace tandem
