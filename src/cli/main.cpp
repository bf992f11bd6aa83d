// tandem: one binary, sub-commands.
#include <cstdio>
#include <map>

#include "cli/commands.h"
#include "core/log.h"

namespace tandem::cli {

int fail(const std::string& msg) {
    std::fprintf(stderr, "tandem: error: %s\n", msg.c_str());
    return kExitError;
}

namespace {
// Comma-separated non-negative integers; what: "token id" or "number" for the messages
bool parse_list(const std::string& s, std::vector<int32_t>& out, std::string& err, const char* what) {
    out.clear();
    size_t i = 0;
    while (i < s.size()) {
        size_t j = s.find(',', i);
        if (j == std::string::npos) j = s.size();
        std::string part = s.substr(i, j - i);
        while (!part.empty() && part.front() == ' ') part.erase(part.begin());
        while (!part.empty() && part.back() == ' ') part.pop_back();
        char* end = nullptr;
        const long long v = std::strtoll(part.c_str(), &end, 10);
        if (part.empty() || *end != '\0' || v < 0 || v > INT32_MAX) {
            err = std::string("invalid ") + what + " '" + part + "' in '" + s + "'";
            return false;
        }
        out.push_back((int32_t)v);
        i = j + 1;
    }
    if (out.empty()) err = std::string("no ") + what + "s given";
    return !out.empty();
}
}  // namespace

bool parse_ids(const std::string& s, std::vector<int32_t>& out, std::string& err) {
    return parse_list(s, out, err, "token id");
}

bool parse_counts(const std::string& s, std::vector<int32_t>& out, std::string& err) {
    return parse_list(s, out, err, "number");
}

}  // namespace tandem::cli

int main(int argc, char** argv) {
    using namespace tandem;
    CLI::App app{"Tandem: MoE inference on CPU (+ accelerator). Models: a .gguf file (or the first of its splits) or a Hugging Face folder (config.json, tokenizer, *.safetensors). Run `tandem COMMAND --help` for details."};
    app.set_version_flag("--version", std::string("tandem ") + TANDEM_VERSION);
    app.require_subcommand(1);
    bool verbose = false, quiet = false;
    app.add_flag("-v,--verbose", verbose, "Debug logging");
    app.add_flag("-q,--quiet", quiet, "Only errors");

    std::map<CLI::App*, cli::Runner> runners;
    auto add = [&](const char* name, const char* desc, auto&& make) {
        CLI::App* sub = app.add_subcommand(name, desc);
        runners[sub] = make(*sub);
    };
    add("run", "Generate tokens from a prompt", [](CLI::App& a) { return cli::add_run(a); });
    add("serve", "OpenAI-compatible HTTP server (continuous batching, paged KV cache, prefix reuse)",
        [](CLI::App& a) { return cli::add_serve(a); });
    add("chat", "Chat with a model in the terminal (or through a pipe)", [](CLI::App& a) { return cli::add_chat(a); });
    add("inspect", "Show a model's architecture, hyper-parameters, tokenizer and tensors",
        [](CLI::App& a) { return cli::add_inspect(a); });
    add("tokenize", "Print the token ids of a text (JSON)", [](CLI::App& a) { return cli::add_tokenize(a); });
    add("detokenize", "Print the text of token ids", [](CLI::App& a) { return cli::add_detokenize(a); });
    add("bench", "Prefill and decode speed table (the seed's), with GB/s and time per stage",
        [](CLI::App& a) { return cli::add_bench(a); });
    add("convert", "Write a model (GGUF, Hugging Face or merged folder) as GGUF in a quantization mix",
        [](CLI::App& a) { return cli::add_convert(a); });
    add("eval", "Compare a model's next-token distributions with a reference model's (top-1 agreement, KL)",
        [](CLI::App& a) { return cli::add_eval(a); });
    add("merge", "Merge a safetensors checkpoint (dense parts) and a GGUF (routed experts) into one model folder",
        [](CLI::App& a) { return cli::add_merge(a); });
    add("make-test-model", "Write a synthetic Qwen3-MoE GGUF or Hugging Face folder (real tokenizer, random weights)",
        [&](CLI::App& a) { return cli::add_make_test_model(a, argv[0]); });

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int code = app.exit(e);
        return code == 0 ? 0 : cli::kExitUsage;
    }
    if (verbose) log::set_level(log::Level::debug);
    if (quiet) log::set_level(log::Level::error);
    for (auto& [sub, run] : runners)
        if (sub->parsed()) return run();
    return cli::kExitUsage;
}
