#include "serve/metrics.h"

#include <fmt/format.h>

namespace tandem {

void Histogram::observe(double v) {
    size_t b = 0;
    while (b < bounds_.size() && v > bounds_[b]) ++b;
    ++counts_[b];
    sum_ += v;
    ++n_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
    out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t b = 0; b < bounds_.size(); ++b) {
        cum += counts_[b];
        out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[b], cum);
    }
    cum += counts_.back();
    out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, cum, name, sum_, name, n_);
}

Metrics::Metrics()
    : ttft_({0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      itl_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}) {}

std::string Metrics::render(const std::string& model_name) const {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out;
    auto gauge = [&](const char* name, const char* help, int64_t v) {
        out += fmt::format("# HELP tandem_{} {}\n# TYPE tandem_{} gauge\ntandem_{} {}\n", name, help, name, name, v);
    };
    auto counter = [&](const char* name, const char* help, int64_t v) {
        out += fmt::format("# HELP tandem_{} {}\n# TYPE tandem_{} counter\ntandem_{} {}\n", name, help, name, name, v);
    };
    out += fmt::format("# HELP tandem_info Served model.\n# TYPE tandem_info gauge\ntandem_info{{model=\"{}\"}} 1\n",
                       model_name);
    gauge("requests_running", "Requests in the running batch.", v_.running);
    gauge("requests_waiting", "Requests waiting to be scheduled.", v_.waiting);
    gauge("kv_pages_used", "KV cache pages referenced by requests.", v_.pages_used);
    gauge("kv_pages_cached", "Unreferenced KV pages kept for prefix reuse.", v_.pages_cached);
    gauge("kv_pages_total", "KV cache pages in the pool.", v_.pages_total);
    gauge("kv_page_size", "Token positions per KV page.", v_.page_size);
    counter("requests_finished_total", "Requests finished (any reason).", v_.requests_finished);
    out += "# HELP tandem_requests_finish_total Requests finished, by reason.\n"
           "# TYPE tandem_requests_finish_total counter\n";
    out += fmt::format("tandem_requests_finish_total{{reason=\"stop\"}} {}\n", v_.requests_stop);
    out += fmt::format("tandem_requests_finish_total{{reason=\"length\"}} {}\n", v_.requests_length);
    out += fmt::format("tandem_requests_finish_total{{reason=\"cancelled\"}} {}\n", v_.requests_cancelled);
    out += fmt::format("tandem_requests_finish_total{{reason=\"error\"}} {}\n", v_.requests_error);
    counter("requests_rejected_total", "Requests refused at submission (queue full, too long).", v_.requests_rejected);
    counter("prompt_tokens_total", "Prompt tokens of admitted requests.", v_.prompt_tokens);
    counter("generation_tokens_total", "Generated tokens.", v_.generated_tokens);
    counter("prefix_cache_hit_tokens_total", "Prompt tokens taken from the prefix cache.", v_.prefix_hit_tokens);
    counter("preemptions_total", "Sequences preempted for lack of KV pages.", v_.preemptions);
    counter("steps_total", "Forward steps run.", v_.steps);
    ttft_.render(out, "tandem_time_to_first_token_seconds", "Time from submission to the first generated token.");
    itl_.render(out, "tandem_inter_token_latency_seconds", "Time between consecutive generated tokens.");
    return out;
}

}  // namespace tandem
