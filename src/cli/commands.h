// Sub-commands of the `tandem` binary. Each registers its options on the app and returns the
// function that runs it (returning the process exit code).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

namespace tandem::cli {

// Exit codes: 0 success, 1 runtime error (bad model, I/O), 2 usage error.
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

using Runner = std::function<int()>;

Runner add_run(CLI::App& app);
Runner add_inspect(CLI::App& app);
Runner add_bench(CLI::App& app);
Runner add_make_test_model(CLI::App& app, const std::string& exe_path);
Runner add_tokenize(CLI::App& app);
Runner add_detokenize(CLI::App& app);
Runner add_chat(CLI::App& app);
Runner add_serve(CLI::App& app);
Runner add_convert(CLI::App& app);
Runner add_merge(CLI::App& app);
Runner add_eval(CLI::App& app);

// Prints "tandem: error: MSG" on one line to stderr and returns kExitError.
int fail(const std::string& msg);

// --no-repack (run, chat, bench, serve): keep the GGUF blocks instead of the packed layouts.
inline void add_no_repack_flag(CLI::App& app, bool& no_repack) {
    app.add_flag("--no-repack", no_repack,
                 "Run the matrices from their GGUF blocks (no load-time repacking into the CPU kernels' "
                 "16-row layout: less memory, slower)");
}

// --experts FILE (run, chat, bench, serve, eval): the routed experts from a GGUF file.
inline void add_experts_option(CLI::App& app, std::string& path) {
    app.add_option("--experts", path,
                   "Take the routed experts from this GGUF (e.g. Q4_K_M) and the rest from -m (e.g. a W8A8 "
                   "folder): the seed's merged weights without writing them (see `tandem merge`)");
}

// "1,2,3" -> ids; error on anything else.
bool parse_ids(const std::string& s, std::vector<int32_t>& out, std::string& err);
// Comma-separated non-negative numbers (lengths, counts): false with err on a bad or empty list
bool parse_counts(const std::string& s, std::vector<int32_t>& out, std::string& err);

}  // namespace tandem::cli
