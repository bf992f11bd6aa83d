// `tandem tokenize` and `tandem detokenize`: the model's tokenizer on its own (no weights read).
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace tandem::cli {
namespace {

Result<Tokenizer> load_tokenizer(const std::string& path) {
    TANDEM_ASSIGN(GgufFile file, Model::open_file(path, ViewFor::tokenizer));
    return Tokenizer::from_gguf(file);
}

// ASCII-only JSON: one value per line whatever the text holds (U+2028 and friends escaped);
// invalid UTF-8 (ids that end inside a character) becomes U+FFFD.
std::string dump(const nlohmann::json& j) {
    return j.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
}

}  // namespace

Runner add_tokenize(CLI::App& app) {
    struct Opts {
        std::string model, text;
        bool no_special = false;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("-m,--model", o->model, "Model .gguf or Hugging Face folder (its tokenizer)")->required();
    app.add_flag("--no-special", o->no_special, "Treat control tokens written in the text (<|im_start|>) as plain text");
    app.add_option("text", o->text,
                   "Text to tokenize; '-' reads one JSON string per line from stdin and prints one JSON array per line")
        ->required();

    return [o]() -> int {
        auto tok = load_tokenizer(o->model);
        if (!tok) return fail(tok.error().message);
        const bool special = !o->no_special;
        if (o->text != "-") {
            auto ids = tok->encode(o->text, special);
            if (!ids) return fail(ids.error().message);
            std::printf("%s\n", dump(*ids).c_str());
            return 0;
        }
        std::string line;
        for (int64_t n = 1; std::getline(std::cin, line); ++n) {
            if (line.empty()) continue;
            std::string text;
            try {
                text = nlohmann::json::parse(line).get<std::string>();
            } catch (const nlohmann::json::exception&) {
                return fail(fmt::format("stdin line {}: not a JSON string", n));
            }
            auto ids = tok->encode(text, special);
            if (!ids) return fail(fmt::format("stdin line {}: {}", n, ids.error().message));
            std::fputs(dump(*ids).c_str(), stdout);
            std::fputc('\n', stdout);
        }
        return 0;
    };
}

Runner add_detokenize(CLI::App& app) {
    struct Opts {
        std::string model;
        std::vector<std::string> ids;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("-m,--model", o->model, "Model .gguf or Hugging Face folder (its tokenizer)")->required();
    app.add_option("ids", o->ids,
                   "Token ids (separate or comma-separated); '-' reads one JSON array per line from stdin and prints "
                   "one JSON string per line")
        ->required();

    return [o]() -> int {
        auto tok = load_tokenizer(o->model);
        if (!tok) return fail(tok.error().message);
        if (o->ids.size() == 1 && o->ids[0] == "-") {
            std::string line;
            for (int64_t n = 1; std::getline(std::cin, line); ++n) {
                if (line.empty()) continue;
                std::vector<int32_t> ids;
                try {
                    ids = nlohmann::json::parse(line).get<std::vector<int32_t>>();
                } catch (const nlohmann::json::exception&) {
                    return fail(fmt::format("stdin line {}: not a JSON array of token ids", n));
                }
                auto text = tok->decode(ids);
                if (!text) return fail(fmt::format("stdin line {}: {}", n, text.error().message));
                std::fputs(dump(*text).c_str(), stdout);
                std::fputc('\n', stdout);
            }
            return 0;
        }
        std::string joined;
        for (const auto& s : o->ids) joined += (joined.empty() ? "" : ",") + s;
        std::vector<int32_t> ids;
        std::string err;
        if (!parse_ids(joined, ids, err)) return fail(err);
        auto text = tok->decode(ids);
        if (!text) return fail(text.error().message);
        std::fwrite(text->data(), 1, text->size(), stdout);
        std::fputc('\n', stdout);
        return 0;
    };
}

}  // namespace tandem::cli
