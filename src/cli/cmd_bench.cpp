// tandem bench: the seed's table (prompt lengths as columns; prefill and decode tok/s), one
// request at a time, with achieved GB/s against a bandwidth this command measures itself and
// the time per stage.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/bench_batch.h"
#include "cli/bench_server.h"
#include "cli/commands.h"
#include "cli/device_option.h"
#include "core/bandwidth.h"
#include "core/log.h"
#include "core/rng.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/kernels.h"
#include "model/forward.h"
#include "model/model_stats.h"
#include "runtime/sampler.h"

namespace tandem::cli {
namespace {

using Clock = std::chrono::steady_clock;
double secs(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Row {
    double prefill_tok_s = 0, decode_tok_s = 0;
    StageTimes prefill_stages, decode_stages;
    int64_t n_decoded = 0;
};

}  // namespace

Runner add_bench(CLI::App& app) {
    struct Opts {
        DeviceOpts dev;
        std::string model, prompt_lens = "1024,2048,4096", experts;
        int gen = 1024, reps = 1, project_layers = 0;
        int threads = (int)std::max(1u, std::thread::hardware_concurrency());
        uint64_t seed = 1;
        bool json = false, no_bandwidth = false, no_repack = false;
        std::string server, api_key, concurrency = "1,2,4,8";
        int sweep_prompt = 256, sweep_gen = 128, sweep_requests = 2;
        double temperature = 0;
        std::string batch;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("-m,--model", o->model, "Model .gguf (first split) or Hugging Face folder (or --server)");
    add_experts_option(app, o->experts);
    app.add_option("--server", o->server, "Measure a running `tandem serve` (or any OpenAI-compatible server) at URL");
    app.add_option("--api-key", o->api_key, "With --server: its API key (default: $TANDEM_API_KEY)");
    app.add_option("--concurrency", o->concurrency, "With --server: concurrent streams of the sweep ('' for none)")
        ->capture_default_str();
    app.add_option("--sweep-prompt", o->sweep_prompt, "With --server: prompt length in the sweep")->capture_default_str();
    app.add_option("--sweep-gen", o->sweep_gen, "With --server: tokens generated per request in the sweep")
        ->capture_default_str();
    app.add_option("--sweep-requests", o->sweep_requests, "With --server: requests per stream in the sweep")
        ->capture_default_str();
    app.add_option("--temperature", o->temperature, "With --server: sampling temperature of the requests (0: greedy)")
        ->capture_default_str();
    app.add_option("--batch", o->batch,
                   "Also decode N sequences at once in process (e.g. 1,4): aggregate decode tok/s, prompts of the "
                   "first --prompt-lens length");
    app.add_option("--prompt-lens", o->prompt_lens,
                   "Prompt lengths (columns), comma-separated (with --server, '': no table, only the sweep)")
        ->capture_default_str();
    app.add_option("--gen", o->gen, "Tokens generated after each prompt")->capture_default_str();
    app.add_option("-t,--threads,--cpu-infer", o->threads, "CPU threads")->capture_default_str();
    add_no_repack_flag(app, o->no_repack);
    add_device_options(app, o->dev);
    app.add_option("--project-layers", o->project_layers,
                   "Also project the figures to a model of N layers of this shape (a slice of a bigger model: e.g. "
                   "94 for Qwen3-235B-A22B)");
    app.add_option("--reps", o->reps, "Repetitions per prompt length (best is reported)")->capture_default_str();
    app.add_option("--seed", o->seed, "Seed of the random prompt tokens")->capture_default_str();
    app.add_flag("--json", o->json, "Print one JSON object");
    app.add_flag("--no-bandwidth", o->no_bandwidth, "Skip the memory bandwidth measurement");

    return [o]() -> int {
        std::vector<int32_t> lens;
        std::string err;
        // with --server an empty list skips the table (only the --concurrency sweep runs)
        if ((o->server.empty() || !o->prompt_lens.empty()) && !parse_counts(o->prompt_lens, lens, err))
            return fail("--prompt-lens: " + err);
        for (int32_t l : lens)
            if (l < 1) return fail("--prompt-lens: lengths must be >= 1");
        if (o->gen < 1) return fail("--gen must be >= 1");
        if (o->reps < 1) return fail("--reps must be >= 1");
        if (o->project_layers < 0) return fail("--project-layers must be >= 0");
        if (!o->server.empty()) {
            BenchServerOptions so;
            so.url = o->server;
            so.api_key = o->api_key;
            if (so.api_key.empty())
                if (const char* env = std::getenv("TANDEM_API_KEY")) so.api_key = env;
            so.prompt_lens = lens;
            so.gen = o->gen;
            if (!o->concurrency.empty() && !parse_counts(o->concurrency, so.concurrency, err))
                return fail("--concurrency: " + err);
            for (int32_t c : so.concurrency)
                if (c < 1) return fail("--concurrency: stream counts must be >= 1");
            if (lens.empty() && so.concurrency.empty())
                return fail("--prompt-lens '' and --concurrency '': nothing to measure");
            if (o->sweep_prompt < 1 || o->sweep_gen < 1 || o->sweep_requests < 1)
                return fail("--sweep-prompt, --sweep-gen and --sweep-requests must be >= 1");
            so.sweep_prompt = o->sweep_prompt;
            so.sweep_gen = o->sweep_gen;
            so.sweep_requests = o->sweep_requests;
            if (!(o->temperature >= 0 && o->temperature <= 2)) return fail("--temperature must be in [0, 2]");
            so.temperature = o->temperature;
            so.seed = o->seed;
            so.json = o->json;
            return run_bench_server(so);
        }
        if (o->model.empty()) return fail("give a model (-m FILE) or a server (--server URL)");
        std::vector<int32_t> batch_counts;  // checked before anything slow runs
        if (!o->batch.empty() && !parse_counts(o->batch, batch_counts, err)) return fail("--batch: " + err);
        for (int32_t nseq : batch_counts)
            if (nseq < 1) return fail("--batch: sequence counts must be >= 1");
        const int n_cores = cpu::cpu_features().n_cores;
        if (o->threads < 1) return fail("--threads/--cpu-infer must be >= 1");
        if (o->threads > n_cores)
            return fail(fmt::format("--threads/--cpu-infer {} is more than the {} cores this process may use",
                                    o->threads, n_cores));

        auto loaded = Model::load(o->model, LoadOptions::with_experts(o->experts));
        if (!loaded) return fail(loaded.error().message);
        Model& model = **loaded;
        const HParams& h = model.hparams();
        const int64_t max_len = *std::max_element(lens.begin(), lens.end());
        if (max_len + o->gen > h.max_context())
            return fail(fmt::format("prompt {} + gen {} exceeds the model's context {}", max_len, o->gen, h.max_context()));
        const ModelStats stats = model_stats(model);
        const cpu::KernelTable& k = cpu::kernels();
        const cpu::KernelTable& generic = cpu::kernels_for(cpu::Isa::generic);
        auto fast = [&](DType type) {  // an ISA kernel on the GGUF blocks, or on the packed layout
            const bool packed = !o->no_repack && k.packed_gemm[(int)type] && k.packed_gemm[(int)type] != generic.packed_gemm[(int)type];
            return k.fast[(int)type] || packed || type == DType::I8;
        };
        for (const auto& t : model.file().tensors())
            if (t.ne.size() >= 2 && !fast(t.type) && t.name.ends_with(".weight")) {
                log::warn("no {} kernel for {} ({}): it runs on the reference path", cpu::isa_name(k.isa),
                          std::string(dtype_name(t.type)), t.name);
                break;
            }

        ThreadPool pool(o->threads);
        auto device = open_device_for(model, o->dev, pool, o->no_repack, (int64_t)*std::max_element(lens.begin(), lens.end()) + o->gen);
        if (!device) return fail(device.error().message);
        double bw = 0;
        if (!o->no_bandwidth) {
            std::fprintf(stderr, "bench: measuring memory bandwidth (%d threads)...\n", o->threads);
            bw = measure_read_bandwidth(pool);
        }
        Forward fwd(model, pool, device->get());
        const std::string where = *device ? (*device)->name() + " (routed experts on the cpu)" : "cpu";
        // what the CPU reads per generated token: every weight, or the routed experts (hybrid)
        const bool gpu_half = *device && !(*device)->on_host();
        const double cpu_bytes = gpu_half ? stats.active_expert_bytes : stats.active_bytes;
        KvCache kv = fwd.make_cache(max_len + o->gen);
        std::vector<float> logits;

        std::map<int32_t, Row> rows;
        for (int32_t len : lens) {
            Row best;
            for (int rep = 0; rep < o->reps; ++rep) {
                Rng rng(o->seed + (uint64_t)len * 1000 + (uint64_t)rep);
                std::vector<int32_t> prompt((size_t)len);
                for (auto& id : prompt) id = (int32_t)(rng.next() % (uint64_t)std::min<int64_t>(h.n_vocab, 150000));
                kv.n_past = 0;
                fwd.stage_times() = {};
                std::fprintf(stderr, "\rbench: prompt %d (rep %d/%d): prefill...          ", len, rep + 1, o->reps);
                const auto t0 = Clock::now();
                if (Status st = fwd.eval(kv, prompt.data(), len, logits); !st) return fail(st.error().message);
                Row r;
                r.prefill_tok_s = len / secs(t0);
                r.prefill_stages = fwd.stage_times();
                fwd.stage_times() = {};
                int32_t tok = argmax(logits.data(), h.n_vocab);
                const auto t1 = Clock::now();
                for (int i = 0; i < o->gen; ++i) {
                    if (Status st = fwd.eval(kv, &tok, 1, logits); !st) return fail(st.error().message);
                    tok = argmax(logits.data(), h.n_vocab);
                    if (i % 16 == 0 || i + 1 == o->gen)
                        std::fprintf(stderr, "\rbench: prompt %d (rep %d/%d): decode %d/%d   ", len, rep + 1, o->reps,
                                     i + 1, o->gen);
                }
                r.decode_tok_s = o->gen / secs(t1);
                r.decode_stages = fwd.stage_times();
                r.n_decoded = o->gen;
                if (r.prefill_tok_s > best.prefill_tok_s) {
                    best.prefill_tok_s = r.prefill_tok_s;
                    best.prefill_stages = r.prefill_stages;
                }
                if (r.decode_tok_s > best.decode_tok_s) {
                    best.decode_tok_s = r.decode_tok_s;
                    best.decode_stages = r.decode_stages;
                    best.n_decoded = r.n_decoded;
                }
            }
            rows[len] = best;
        }
        // N sequences' tokens per byte read, the CPU's bytes only: the shared weights once per step, and
        // of each layer's E routed experts the ones at least one of N uniform top-k routings picks,
        // E (1 - (1 - k/E)^N) of them on average (k for one token)
        auto bytes_bound = [&](int n) {
            const double E = (double)h.n_expert, k = (double)h.n_expert_used;
            const double picked = h.is_moe() ? E * (1.0 - std::pow(1.0 - k / E, n)) / k : 0.0;
            return n / (cpu_bytes - stats.active_expert_bytes + stats.active_expert_bytes * picked);
        };
        std::vector<BatchDecodeResult> batched;
        if (!batch_counts.empty()) {
            std::fprintf(stderr, "\rbench: %s sequences decoding together, taking turns...          ", o->batch.c_str());
            auto r = bench_batched_decode(fwd, h, batch_counts, lens[0], o->gen, o->seed + 77);
            if (!r) return fail(r.error().message);
            batched = std::move(*r);
        }
        std::fprintf(stderr, "\r%60s\r", "");

        // seconds in one layer (everything but the LM head, over the layers), and the whole pass
        // projected to --project-layers layers of the same shape
        auto per_layer = [&](const StageTimes& s) { return (s.total() - s.lm_head) / (double)h.n_layer; };
        auto project = [&](const StageTimes& s) { return per_layer(s) * o->project_layers + s.lm_head; };
        auto stage_json = [](const StageTimes& s, double per) {
            return nlohmann::json{{"attention", s.attention * per}, {"router", s.router * per},
                                  {"experts", s.experts * per},     {"dense_ffn", s.dense_ffn * per},
                                  {"lm_head", s.lm_head * per},     {"other", s.other * per}};
        };
        if (o->json) {
            nlohmann::json j;
            j["model"] = o->model;
            j["threads"] = o->threads;
            j["isa"] = cpu::isa_name(k.isa);
#if defined(__x86_64__)
            j["prefetch"] = cpu::prefetch_target_name();
            j["vbmi"] = k.vbmi;
#endif
            j["device"] = where;
            j["bandwidth_gb_s"] = bw;
            j["bytes_per_token"] = stats.active_bytes;
            j["cpu_bytes_per_token"] = cpu_bytes;
            for (const auto& [len, r] : rows) {
                const std::string key = std::to_string(len);
                j["prefill_tok_s"][key] = r.prefill_tok_s;
                j["decode_tok_s"][key] = r.decode_tok_s;
                j["decode_gb_s"][key] = r.decode_tok_s * cpu_bytes / 1e9;
                j["decode_ms_per_token"][key] = stage_json(r.decode_stages, 1e3 / (double)r.n_decoded);
                j["prefill_ms_per_token"][key] = stage_json(r.prefill_stages, 1e3 / (double)len);
                j["decode_ms_per_layer"][key] = per_layer(r.decode_stages) * 1e3 / (double)r.n_decoded;
                j["prefill_ms_per_layer"][key] = per_layer(r.prefill_stages) * 1e3 / (double)len;
                if (o->project_layers > 0) {
                    j["projected"][key] = {{"layers", o->project_layers},
                                           {"decode_tok_s", (double)r.n_decoded / project(r.decode_stages)},
                                           {"prefill_tok_s", (double)len / project(r.prefill_stages)}};
                }
            }
            for (const BatchDecodeResult& r : batched) {
                j["batch_decode_tok_s"][std::to_string(r.n_seq)] = r.aggregate_tok_s;
                j["batch_bytes_bound_ratio"][std::to_string(r.n_seq)] = bytes_bound(r.n_seq) / bytes_bound(batched[0].n_seq);
            }
            std::printf("%s\n", j.dump().c_str());
            return 0;
        }
#if defined(__x86_64__)
        const std::string kernels = fmt::format("{} kernels ({}weights prefetched into {})", cpu::isa_name(k.isa),
                                                k.vbmi ? "VBMI; " : "", cpu::prefetch_target_name());
#else
        const std::string kernels = fmt::format("{} kernels", cpu::isa_name(k.isa));
#endif
        std::printf("model %s: %.2f GB, %.0f MB read per generated token; %d threads, %s; on %s\n", o->model.c_str(),
                    stats.total_bytes / 1e9, stats.active_bytes / 1e6, o->threads, kernels.c_str(), where.c_str());
        if (gpu_half) std::printf("the cpu reads %.0f MB per generated token (the routed experts)\n", cpu_bytes / 1e6);
        if (bw > 0) std::printf("memory read bandwidth (measured): %.1f GB/s -> decode roofline %.1f tok/s%s\n", bw,
                                bw * 1e9 / cpu_bytes, gpu_half ? " (the cpu's experts alone)" : "");
        std::string head = "| prompt length  ", sep = "| -------------- ", pre = "| prefill tok/s  ",
                    dec = "| decode tok/s   ", gbs = "| decode GB/s    ";
        for (const auto& [len, r] : rows) {
            head += fmt::format("| {:>14} ", len);
            sep += "| -------------- ";
            pre += fmt::format("| {:>14.2f} ", r.prefill_tok_s);
            dec += fmt::format("| {:>14.2f} ", r.decode_tok_s);
            const double g = r.decode_tok_s * cpu_bytes / 1e9;
            gbs += bw > 0 ? fmt::format("| {:>6.1f} ({:>3.0f}%) ", g, 100.0 * g / bw) : fmt::format("| {:>14.1f} ", g);
        }
        std::printf("%s|\n%s|\n%s|\n%s|\n%s|\n", head.c_str(), sep.c_str(), pre.c_str(), dec.c_str(), gbs.c_str());
        std::printf("\ndecode time per token by stage (ms), and prefill per prompt token (ms):\n");
        for (const auto& [len, r] : rows) {
            const double pd = 1e3 / (double)r.n_decoded, pp = 1e3 / (double)len;
            const StageTimes& d = r.decode_stages;
            const StageTimes& p = r.prefill_stages;
            std::printf("  prompt %-6d decode: attention %.3f router %.3f experts %.3f dense %.3f lm_head %.3f other %.3f\n",
                        len, d.attention * pd, d.router * pd, d.experts * pd, d.dense_ffn * pd, d.lm_head * pd, d.other * pd);
            std::printf("  %-13s prefill: attention %.3f router %.3f experts %.3f dense %.3f lm_head %.3f other %.3f\n",
                        "", p.attention * pp, p.router * pp, p.experts * pp, p.dense_ffn * pp, p.lm_head * pp, p.other * pp);
            std::printf("  %-13s one layer (of %lld): decode %.3f, prefill %.4f\n", "", (long long)h.n_layer,
                        per_layer(d) * pd, per_layer(p) * pp);
            if (o->project_layers > 0)
                std::printf("  %-13s projected to %d layers: decode %.2f tok/s, prefill %.2f tok/s\n", "",
                            o->project_layers, (double)r.n_decoded / project(d), (double)len / project(p));
        }
        if (!batched.empty()) {
            std::printf("\nbatched decode (prompt %d each, %d steps, the counts taking turns step by step; weights "
                        "read once per step for all):\n", lens[0], o->gen);
            for (const BatchDecodeResult& r : batched) {
                const StageTimes& d = r.per_step;
                std::printf("  %2d sequences: %8.2f tok/s aggregate (%.2fx of %d; bytes allow %.2fx), step %.1f ms: "
                            "attention %.1f router %.1f experts %.1f lm_head %.1f other %.1f\n",
                            r.n_seq, r.aggregate_tok_s, r.aggregate_tok_s / batched[0].aggregate_tok_s, batched[0].n_seq,
                            bytes_bound(r.n_seq) / bytes_bound(batched[0].n_seq), r.step_ms, d.attention * 1e3,
                            d.router * 1e3, (d.experts + d.dense_ffn) * 1e3, d.lm_head * 1e3, d.other * 1e3);
            }
            std::printf("  (bytes allow: the aggregate if a step took only the time to read its bytes once: the "
                        "shared weights once, the routed experts of every sequence, each expert once, routings "
                        "uniformly random)\n");
        }
        return 0;
    };
}

}  // namespace tandem::cli
