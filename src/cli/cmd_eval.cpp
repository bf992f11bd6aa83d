// tandem eval: how close a model's next-token distributions are to a reference model's (a W8A8
// or Q4_K_M checkpoint against the BF16 one): teacher-forced over the same token sequences, per
// position the KL divergence KL(p_ref || p) and whether the top-1 tokens agree.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/rng.h"
#include "core/thread_pool.h"
#include "kernels/cpu/cpu_features.h"
#include "model/forward.h"

namespace tandem::cli {
namespace {

// log-softmax of n logits into out (double sums)
void log_softmax(const float* x, int64_t n, std::vector<double>& out) {
    out.resize((size_t)n);
    double mx = -INFINITY;
    for (int64_t i = 0; i < n; ++i) mx = std::max(mx, (double)x[i]);
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += std::exp((double)x[i] - mx);
    const double lse = mx + std::log(s);
    for (int64_t i = 0; i < n; ++i) out[(size_t)i] = (double)x[i] - lse;
}

int64_t argmax(const float* x, int64_t n) { return std::max_element(x, x + n) - x; }

}  // namespace

Runner add_eval(CLI::App& app) {
    struct Opts {
        std::string ref, model, experts;
        int64_t positions = 1024, seq_len = 256;
        uint64_t seed = 1;
        int threads = (int)std::max(1u, std::thread::hardware_concurrency());
        bool json = false;
    };
    auto o = std::make_shared<Opts>();
    app.add_option("--ref", o->ref, "Reference model (e.g. the BF16 checkpoint)")->required();
    app.add_option("-m,--model", o->model, "Model to compare with it (e.g. its W8A8 or Q4_K_M version)")->required();
    add_experts_option(app, o->experts);
    app.add_option("--positions", o->positions, "Positions to compare (at least)")->capture_default_str();
    app.add_option("--seq-len", o->seq_len, "Tokens per sequence (random ids, the same for both models)")
        ->capture_default_str();
    app.add_option("--seed", o->seed, "Seed of the token sequences")->capture_default_str();
    app.add_option("-t,--threads", o->threads, "CPU threads")->capture_default_str();
    app.add_flag("--json", o->json, "Print one JSON object");

    return [o]() -> int {
        if (o->positions < 1 || o->seq_len < 2) return fail("--positions must be >= 1 and --seq-len >= 2");
        if (o->threads < 1 || o->threads > cpu::cpu_features().n_cores)
            return fail(fmt::format("--threads must be between 1 and the {} cores this process may use",
                                    cpu::cpu_features().n_cores));
        auto ref = Model::load(o->ref);
        if (!ref) return fail(ref.error().message);
        auto mod = Model::load(o->model, LoadOptions::with_experts(o->experts));
        if (!mod) return fail(mod.error().message);
        const HParams &hr = (*ref)->hparams(), &hm = (*mod)->hparams();
        if (hr.n_vocab != hm.n_vocab || hr.n_layer != hm.n_layer || hr.n_embd != hm.n_embd)
            return fail(fmt::format("the models differ: vocab {} vs {}, layers {} vs {}, hidden {} vs {}", hr.n_vocab,
                                    hm.n_vocab, hr.n_layer, hm.n_layer, hr.n_embd, hm.n_embd));
        const int64_t seq_len = std::min<int64_t>(o->seq_len, std::min(hr.n_ctx_train, hm.n_ctx_train));
        ThreadPool pool(o->threads);
        for (Model* m : {ref->get(), mod->get()})
            if (Status st = m->pack_for_cpu(pool); !st) return fail(st.error().message);
        Forward fr(**ref, pool), fm(**mod, pool);

        const int64_t V = hr.n_vocab, n_seq = (o->positions + seq_len - 1) / seq_len;
        const uint64_t id_range = (uint64_t)std::min<int64_t>(V, 151643);  // Qwen3's regular tokens
        Rng rng(o->seed);
        std::vector<double> kls;
        int64_t agree = 0;
        double top_diff = 0;
        std::vector<float> lr, lm;
        std::vector<double> pr, pm;
        const auto t0 = std::chrono::steady_clock::now();
        for (int64_t s = 0; s < n_seq; ++s) {
            std::vector<int32_t> tokens((size_t)seq_len);
            for (auto& t : tokens) t = (int32_t)(rng.next() % id_range);
            KvCache kr = fr.make_cache(seq_len), km = fm.make_cache(seq_len);
            if (Status st = fr.eval(kr, tokens.data(), seq_len, lr, /*all_logits=*/true); !st) return fail(st.error().message);
            if (Status st = fm.eval(km, tokens.data(), seq_len, lm, true); !st) return fail(st.error().message);
            for (int64_t p = 0; p < seq_len; ++p) {
                const float* a = lr.data() + p * V;
                const float* b = lm.data() + p * V;
                log_softmax(a, V, pr);
                log_softmax(b, V, pm);
                double kl = 0;
                for (int64_t i = 0; i < V; ++i) kl += std::exp(pr[(size_t)i]) * (pr[(size_t)i] - pm[(size_t)i]);
                kls.push_back(std::max(kl, 0.0));
                const int64_t ta = argmax(a, V), tb = argmax(b, V);
                agree += ta == tb;
                top_diff += std::fabs((double)a[ta] - (double)b[ta]);
            }
            std::fprintf(stderr, "\reval: %lld/%lld positions", (long long)kls.size(), (long long)(n_seq * seq_len));
        }
        std::fprintf(stderr, "\n");
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double n = (double)kls.size();
        double mean = 0;
        for (double k : kls) mean += k;
        mean /= n;
        std::vector<double> sorted = kls;
        std::sort(sorted.begin(), sorted.end());
        const double p99 = sorted[(size_t)std::min<double>(n - 1, std::floor(0.99 * n))], mx = sorted.back();
        const double top1 = (double)agree / n;
        if (o->json) {
            nlohmann::json j = {{"ref", o->ref},          {"model", o->model},       {"positions", (int64_t)n},
                                {"top1_agreement", top1}, {"mean_kl", mean},         {"p99_kl", p99},
                                {"max_kl", mx},           {"mean_top_logit_diff", top_diff / n}, {"seconds", secs}};
            std::printf("%s\n", j.dump().c_str());
            return 0;
        }
        std::printf("%s vs %s (reference), %lld positions (%lld sequences of %lld random tokens, seed %llu):\n",
                    o->model.c_str(), o->ref.c_str(), (long long)n, (long long)n_seq, (long long)seq_len,
                    (unsigned long long)o->seed);
        std::printf("  top-1 agreement  %.2f%%\n  KL(ref || model) mean %.5f, p99 %.5f, max %.5f nats\n"
                    "  |top logit diff| mean %.4f\n",
                    100.0 * top1, mean, p99, mx, top_diff / n);
        return 0;
    };
}

}  // namespace tandem::cli
