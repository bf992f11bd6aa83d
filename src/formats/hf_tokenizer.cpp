#include "formats/hf_tokenizer.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace tandem {
namespace {

using json = nlohmann::json;

Result<json> read_json(const std::string& path) {
    std::ifstream in(path);
    if (!in) return make_error("{}: cannot open", path);
    std::stringstream ss;
    ss << in.rdbuf();
    json j = json::parse(ss.str(), nullptr, false);
    if (j.is_discarded()) return make_error("{}: invalid JSON", path);
    return j;
}

// "<|im_end|>" or {"content": "<|im_end|>", ...}
std::string token_text(const json& v) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
    return {};
}

bool looks_special(const std::string& t) {
    return t.size() >= 4 && t.compare(0, 2, "<|") == 0 && t.compare(t.size() - 2, 2, "|>") == 0;
}

}  // namespace

Result<HfTokenizer> HfTokenizer::load(const std::string& dir) {
    const std::string tok_path = dir + "/tokenizer.json", cfg_path = dir + "/tokenizer_config.json";
    TANDEM_ASSIGN(json tj, read_json(tok_path));
    TANDEM_ASSIGN(json cj, read_json(cfg_path));
    HfTokenizer t;

    const json& model = tj["model"];
    if (!model.is_object() || model.value("type", "") != "BPE")
        return make_error("{}: only BPE tokenizers are supported", tok_path);
    const json& vocab = model["vocab"];
    if (!vocab.is_object() || vocab.empty()) return make_error("{}: missing model.vocab", tok_path);

    auto place = [&](const std::string& text, int64_t id, TokenType type) -> Status {
        if (id < 0 || id > 10'000'000) return make_error("{}: token '{}' has invalid id {}", tok_path, text, id);
        if ((size_t)id >= t.tokens.size()) {
            t.tokens.resize((size_t)id + 1);
            t.types.resize((size_t)id + 1, 0);
        }
        t.tokens[(size_t)id] = text;
        t.types[(size_t)id] = (int32_t)type;
        return {};
    };
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        if (!it.value().is_number_integer()) return make_error("{}: vocab entry '{}' has no integer id", tok_path, it.key());
        TANDEM_TRY(place(it.key(), it.value().get<int64_t>(), TokenType::normal));
    }
    if (tj.contains("added_tokens") && tj["added_tokens"].is_array()) {
        for (const auto& a : tj["added_tokens"]) {
            const std::string text = a.value("content", "");
            const bool special = a.value("special", false);
            TANDEM_TRY(place(text, a.value("id", (int64_t)-1),
                             special || looks_special(text) ? TokenType::control : TokenType::user_defined));
        }
    }
    for (size_t i = 0; i < t.tokens.size(); ++i)
        if (t.types[i] == 0) return make_error("{}: token id {} is missing from the vocabulary", tok_path, i);

    const json& merges = model["merges"];
    if (!merges.is_array()) return make_error("{}: missing model.merges", tok_path);
    t.merges.reserve(merges.size());
    for (const auto& m : merges) {
        if (m.is_string()) t.merges.push_back(m.get<std::string>());
        else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
            t.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
        else return make_error("{}: merge #{} is neither \"a b\" nor [a, b]", tok_path, t.merges.size());
    }

    auto id_of = [&](const std::string& text) -> int32_t {
        for (size_t i = t.tokens.size(); i-- > 0;)
            if (t.tokens[i] == text) return (int32_t)i;
        return -1;
    };
    if (cj.contains("eos_token")) t.eos_id = id_of(token_text(cj["eos_token"]));
    if (cj.contains("pad_token")) t.pad_id = id_of(token_text(cj["pad_token"]));
    t.bos_id = cj.contains("bos_token") && !cj["bos_token"].is_null() ? id_of(token_text(cj["bos_token"])) : -1;
    if (t.bos_id < 0) t.bos_id = id_of("<|endoftext|>");  // Qwen has no BOS; llama.cpp uses <|endoftext|>
    if (t.pad_id < 0) t.pad_id = t.bos_id;
    t.add_bos = cj.value("add_bos_token", false);
    if (cj.contains("chat_template") && cj["chat_template"].is_string())
        t.chat_template = cj["chat_template"].get<std::string>();
    if (t.eos_id < 0) return make_error("{}: no eos_token", cfg_path);
    return t;
}

Status HfTokenizer::pad_to(int64_t n) {
    if ((int64_t)tokens.size() > n)
        return make_error("vocabulary has {} tokens, more than the model's {} rows", tokens.size(), n);
    for (int64_t i = (int64_t)tokens.size(); i < n; ++i) {
        tokens.push_back("[PAD" + std::to_string(i) + "]");
        types.push_back((int32_t)TokenType::unused);
    }
    return {};
}

}  // namespace tandem
