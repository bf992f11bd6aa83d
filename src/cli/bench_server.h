// `tandem bench --server URL`: measures a running server through its API.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tandem::cli {

struct BenchServerOptions {
    std::string url, api_key;
    std::vector<int32_t> prompt_lens;  // the seed's table: one request at a time
    int gen = 1024;
    std::vector<int32_t> concurrency;  // sweep: streams at once (empty: no sweep)
    int sweep_prompt = 256, sweep_gen = 128, sweep_requests = 2;
    double temperature = 0;  // of every request (0: greedy)
    uint64_t seed = 1;
    bool json = false;
};

int run_bench_server(const BenchServerOptions& o);

}  // namespace tandem::cli
