// Tokenizer throughput, one thread: encodes a text file (the corpus of
// benchmarks/tokenizer_bench.mjs) with the Qwen3 tokenizer and prints one JSON line
// {"impl", "bytes", "tokens", "seconds", "mb_s"}, the best of REPEATS runs after a warm-up run;
// scripts/bench-tokenizer.sh puts it beside the JS reference's line.
//   tokenizer_bench FILE [REPEATS] [TOKENIZER_DIR]
// The whole file is one encode() call, as a long prompt is. Each run starts from a fresh
// tokenizer so that the word cache of the previous run does not flatter the result.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "formats/hf_tokenizer.h"
#include "tokenizer/tokenizer.h"

int main(int argc, char** argv) {
    if (argc < 2 || argc > 4) {
        std::fprintf(stderr, "usage: tokenizer_bench FILE [REPEATS] [TOKENIZER_DIR]\n");
        return 2;
    }
    const int repeats = argc > 2 ? std::max(1, std::atoi(argv[2])) : 3;
    const std::string dir = argc > 3 ? argv[3] : TANDEM_BENCH_TOKENIZER_DIR;
    std::ifstream in(argv[1], std::ios::binary);
    if (!in) {
        std::fprintf(stderr, "tokenizer_bench: error: %s: cannot open\n", argv[1]);
        return 1;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();

    auto hf = tandem::HfTokenizer::load(dir);
    if (!hf) {
        std::fprintf(stderr, "tokenizer_bench: error: %s\n", hf.error().message.c_str());
        return 1;
    }
    double best = 1e30;
    size_t n_tokens = 0;
    for (int r = 0; r <= repeats; ++r) {  // run 0 warms up the allocator and the page cache
        auto tok = tandem::Tokenizer::from_hf(*hf);
        if (!tok) {
            std::fprintf(stderr, "tokenizer_bench: error: %s\n", tok.error().message.c_str());
            return 1;
        }
        const auto t0 = std::chrono::steady_clock::now();
        auto ids = tok->encode(text, /*parse_special=*/true);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (!ids) {
            std::fprintf(stderr, "tokenizer_bench: error: %s: %s\n", argv[1], ids.error().message.c_str());
            return 1;
        }
        n_tokens = ids->size();
        if (r > 0) best = std::min(best, s);
    }
    std::printf("{\"impl\": \"tandem (C++)\", \"bytes\": %zu, \"tokens\": %zu, \"seconds\": %.6f, \"mb_s\": %.3f}\n",
                text.size(), n_tokens, best, (double)text.size() / 1048576.0 / best);
    return 0;
}
