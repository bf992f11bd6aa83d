// `tandem bench --server URL`: the seed's table measured through a running server's API
// (/v1/completions, streamed), then a concurrency sweep.
#include "cli/bench_server.h"

#include <fmt/format.h>
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/commands.h"
#include "core/rng.h"

namespace tandem::cli {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

struct Sample {
    bool ok = false;
    std::string error;
    int64_t prompt_tokens = 0, completion_tokens = 0;
    double ttft_s = 0, decode_s = 0, total_s = 0;
    // (arrival, tokens generated so far) of each chunk, from the usage the server puts in every
    // chunk (stream_options.continuous_usage_stats); empty when the server does not
    std::vector<std::pair<Clock::time_point, int64_t>> progress;
    Clock::time_point first, last;  // first and last token
    double prefill_tok_s() const { return ttft_s > 0 ? prompt_tokens / ttft_s : 0; }
    double decode_tok_s() const { return decode_s > 0 && completion_tokens > 1 ? (completion_tokens - 1) / decode_s : 0; }
};

struct Target {
    std::string host_port;  // scheme://host:port for httplib
    std::string api_key, model;
    double temperature = 0;
};

// One streamed completion of `n_prompt` random token ids (seeded: distinct prompts do not share
// a prefix) generating exactly `gen` tokens (sampled with the request's seed at a temperature).
Sample one_request(const Target& t, int n_prompt, int gen, uint64_t seed) {
    Sample s;
    Rng rng(seed);
    json ids = json::array();
    for (int i = 0; i < n_prompt; ++i) ids.push_back(1000 + (int)(rng.next() % 100000));
    json body = {{"prompt", ids},         {"max_tokens", gen}, {"temperature", t.temperature}, {"ignore_eos", true},
                 {"stream", true},        {"stream_options", {{"include_usage", true}, {"continuous_usage_stats", true}}},
                 {"seed", seed >> 1}};
    if (!t.model.empty()) body["model"] = t.model;

    httplib::Client cli(t.host_port);
    cli.set_read_timeout(3600, 0);
    cli.set_connection_timeout(10, 0);
    httplib::Headers headers;
    if (!t.api_key.empty()) headers.emplace("Authorization", "Bearer " + t.api_key);
    std::string buf;
    Clock::time_point t0 = Clock::now(), t_first, t_last;
    bool got_first = false;
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.headers = headers;
    req.body = body.dump();
    req.set_header("Content-Type", "application/json");
    req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
        buf.append(data, len);
        size_t pos;
        while ((pos = buf.find("\n\n")) != std::string::npos) {
            std::string ev = buf.substr(0, pos);
            buf.erase(0, pos + 2);
            if (ev.rfind("data: ", 0) != 0) continue;
            ev.erase(0, 6);
            if (ev == "[DONE]") continue;
            json j = json::parse(ev, nullptr, false);
            if (j.is_discarded()) continue;
            if (j.contains("error")) {
                s.error = j["error"].value("message", "error");
                continue;
            }
            const auto now = Clock::now();
            if (j.contains("choices") && !j["choices"].empty()) {
                if (!got_first) {
                    got_first = true;
                    t_first = now;
                }
                t_last = now;
            }
            if (j.contains("usage") && j["usage"].is_object()) {
                s.prompt_tokens = j["usage"].value("prompt_tokens", 0);
                s.completion_tokens = j["usage"].value("completion_tokens", 0);
                s.progress.emplace_back(now, s.completion_tokens);
            }
        }
        return true;
    };
    httplib::Response res;
    httplib::Error err = httplib::Error::Success;
    if (!cli.send(req, res, err)) {
        s.error = "request failed: " + httplib::to_string(err);
        return s;
    }
    if (res.status != 200) {
        json j = json::parse(res.body.empty() ? buf : res.body, nullptr, false);
        s.error = fmt::format("HTTP {}: {}", res.status,
                              j.is_object() && j.contains("error") ? j["error"].value("message", "") : res.body);
        return s;
    }
    s.total_s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!got_first || s.completion_tokens == 0) {
        if (s.error.empty()) s.error = "no tokens in the stream";
        return s;
    }
    s.ttft_s = std::chrono::duration<double>(t_first - t0).count();
    s.decode_s = std::chrono::duration<double>(t_last - t_first).count();
    s.first = t_first;
    s.last = t_last;
    s.ok = s.error.empty();
    return s;
}

// Tokens per second streamed while every stream was decoding (each between a request's first and
// last token; the prefill of a stream's next request is a gap), counted from the usage in the
// chunks. Unlike a sum of each request's decode rate, the steps in which other streams' prompts
// were prefilled do not count. Zeros when the server sends no usage per chunk or there is no such time.
struct AllDecoding {
    int64_t tokens = 0;
    double secs = 0;
};
AllDecoding all_decoding(const std::vector<Sample>& samples, int streams) {
    // +1 / -1 at each request's first / last token; where the count is `streams`, all decode
    std::vector<std::pair<Clock::time_point, int>> edges;
    for (const Sample& s : samples) {
        if (s.progress.empty()) return {};
        edges.emplace_back(s.first, +1);
        edges.emplace_back(s.last, -1);
    }
    std::sort(edges.begin(), edges.end());  // at equal times the ends (-1) first
    std::vector<std::pair<Clock::time_point, Clock::time_point>> all;
    int active = 0;
    for (const auto& [t, d] : edges) {
        if (d < 0 && active == streams) all.back().second = t;
        active += d;
        if (d > 0 && active == streams) all.emplace_back(t, t);
    }
    double secs = 0;
    for (const auto& [a, b] : all) secs += std::chrono::duration<double>(b - a).count();
    if (secs <= 0) return {};
    // the tokens each chunk brought (a request's first chunk: its prefill's token, never inside)
    int64_t tokens = 0;
    for (const Sample& s : samples)
        for (size_t i = 1; i < s.progress.size(); ++i) {
            const Clock::time_point t = s.progress[i].first;
            for (const auto& [a, b] : all)
                if (t > a && t <= b) tokens += s.progress[i].second - s.progress[i - 1].second;
        }
    return {tokens, secs};
}

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const size_t i = std::min(v.size() - 1, (size_t)(p / 100.0 * (double)(v.size() - 1) + 0.5));
    return v[i];
}

}  // namespace

int run_bench_server(const BenchServerOptions& o) {
    Target t;
    t.host_port = o.url;
    while (!t.host_port.empty() && t.host_port.back() == '/') t.host_port.pop_back();
    if (t.host_port.size() >= 3 && t.host_port.substr(t.host_port.size() - 3) == "/v1") t.host_port.resize(t.host_port.size() - 3);
    if (t.host_port.rfind("http://", 0) != 0) return fail("--server must be an http:// URL, e.g. http://127.0.0.1:10002");
    t.api_key = o.api_key;
    t.temperature = o.temperature;

    // the served model's name (and whether the server answers at all)
    {
        httplib::Client cli(t.host_port);
        cli.set_connection_timeout(5, 0);
        httplib::Headers h;
        if (!t.api_key.empty()) h.emplace("Authorization", "Bearer " + t.api_key);
        auto res = cli.Get("/v1/models", h);
        if (!res) return fail("cannot reach " + o.url + ": " + httplib::to_string(res.error()));
        if (res->status != 200) return fail(fmt::format("{}/v1/models answered HTTP {}: {}", o.url, res->status, res->body));
        json j = json::parse(res->body, nullptr, false);
        if (j.is_object() && j.contains("data") && j["data"].is_array() && !j["data"].empty())
            t.model = j["data"][0].value("id", "");
    }

    uint64_t seed = o.seed * 1000003;
    json out = {{"server", o.url}, {"model", t.model}, {"temperature", o.temperature}};
    std::vector<std::pair<int, Sample>> table;
    for (int len : o.prompt_lens) {
        std::fprintf(stderr, "\rbench: prompt %d, %d tokens out...            ", len, o.gen);
        Sample s = one_request(t, len, o.gen, ++seed);
        if (!s.ok) return fail(fmt::format("prompt {}: {}", len, s.error));
        table.emplace_back(len, s);
        out["prefill_tok_s"][std::to_string(len)] = s.prefill_tok_s();
        out["decode_tok_s"][std::to_string(len)] = s.decode_tok_s();
        out["ttft_s"][std::to_string(len)] = s.ttft_s;
    }
    struct SweepRow {
        int streams;
        double aggregate, decode_sum, per_stream, ttft_p50, ttft_p99;
        int n;
    };
    std::vector<SweepRow> sweep;
    for (int c : o.concurrency) {
        std::vector<Sample> samples;
        std::mutex mu;
        std::fprintf(stderr, "\rbench: %d concurrent streams x %d requests...         ", c, o.sweep_requests);
        const auto t0 = Clock::now();
        std::vector<std::thread> threads;
        for (int k = 0; k < c; ++k)
            threads.emplace_back([&, k] {
                for (int r = 0; r < o.sweep_requests; ++r) {
                    Sample s = one_request(t, o.sweep_prompt, o.sweep_gen, seed + 7919 * (uint64_t)(k * 1000 + r + 1) + (uint64_t)c);
                    std::lock_guard<std::mutex> lock(mu);
                    samples.push_back(s);
                }
            });
        for (auto& th : threads) th.join();
        seed += 1000003;
        const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
        int64_t gen = 0;
        std::vector<double> ttft, per;
        for (const Sample& s : samples) {
            if (!s.ok) return fail(fmt::format("{} streams: {}", c, s.error));
            gen += s.completion_tokens;
            ttft.push_back(s.ttft_s);
            per.push_back(s.decode_tok_s());
        }
        double mean = 0;
        for (double v : per) mean += v / (double)per.size();
        // what the streams decode together; without usage per chunk, the sum of their decode rates
        const AllDecoding all = all_decoding(samples, c);
        const double decode_sum = all.secs > 0 ? (double)all.tokens / all.secs : mean * c;
        sweep.push_back({c, gen / wall, decode_sum, mean, percentile(ttft, 50), percentile(ttft, 99), (int)samples.size()});
        out["sweep"].push_back({{"streams", c},
                                {"requests", samples.size()},
                                {"aggregate_tok_s", gen / wall},
                                {"aggregate_decode_tok_s", decode_sum},
                                {"all_decoding_tokens", all.tokens},
                                {"all_decoding_s", all.secs},
                                {"per_stream_decode_tok_s", mean},
                                {"ttft_p50_s", percentile(ttft, 50)},
                                {"ttft_p99_s", percentile(ttft, 99)}});
    }
    std::fprintf(stderr, "\r%70s\r", "");
    if (o.json) {
        std::printf("%s\n", out.dump().c_str());
        return 0;
    }
    std::printf("server %s, model %s, temperature %g\n", o.url.c_str(), t.model.c_str(), o.temperature);
    if (!table.empty()) {
        std::printf("one request at a time, %d tokens generated each\n", o.gen);
        std::string head = "| prompt length  ", sep = "| -------------- ", pre = "| prefill tok/s  ", dec = "| decode tok/s   ",
                    ttft = "| TTFT s         ";
        for (auto& [len, s] : table) {
            head += fmt::format("| {:>10} ", len);
            sep += "| ---------- ";
            pre += fmt::format("| {:>10.2f} ", s.prefill_tok_s());
            dec += fmt::format("| {:>10.2f} ", s.decode_tok_s());
            ttft += fmt::format("| {:>10.3f} ", s.ttft_s);
        }
        std::printf("%s|\n%s|\n%s|\n%s|\n%s|\n", head.c_str(), sep.c_str(), pre.c_str(), dec.c_str(), ttft.c_str());
    }
    if (!sweep.empty()) {
        std::printf("\nconcurrency sweep: prompt %d, %d tokens out, %d requests per stream\n", o.sweep_prompt, o.sweep_gen,
                    o.sweep_requests);
        std::printf("(aggregate = generated tokens / wall time, prefill included; aggregate decode = tokens "
                    "streamed while every stream was decoding / that time)\n");
        std::printf("| streams | aggregate tok/s | aggregate decode tok/s | vs 1 stream | per-stream decode tok/s | "
                    "TTFT p50 s | TTFT p99 s |\n");
        std::printf("| ------: | --------------: | ---------------------: | ----------: | ----------------------: | "
                    "---------: | ---------: |\n");
        for (const SweepRow& r : sweep)
            std::printf("| %7d | %15.2f | %22.2f | %10.2fx | %23.2f | %10.3f | %10.3f |\n", r.streams, r.aggregate,
                        r.decode_sum, r.decode_sum / sweep[0].decode_sum, r.per_stream, r.ttft_p50, r.ttft_p99);
    }
    return 0;
}

}  // namespace tandem::cli
