// Server metrics in the Prometheus text format: counters, gauges and latency histograms,
// updated by the engine thread and read by /metrics.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace tandem {

class Histogram {
public:
    explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}
    void observe(double v);
    void render(std::string& out, const std::string& name, const std::string& help) const;

private:
    std::vector<double> bounds_;
    std::vector<uint64_t> counts_;  // per bucket (not cumulative); the last is +Inf
    double sum_ = 0;
    uint64_t n_ = 0;
};

struct MetricValues {
    int64_t running = 0, waiting = 0;
    int64_t pages_used = 0, pages_cached = 0, pages_total = 0, page_size = 0;
    int64_t requests_finished = 0, requests_stop = 0, requests_length = 0, requests_cancelled = 0,
            requests_error = 0, requests_rejected = 0;
    int64_t prompt_tokens = 0, generated_tokens = 0, prefix_hit_tokens = 0, preemptions = 0, steps = 0;
};

class Metrics {
public:
    Metrics();
    // All updates and reads take the lock; the engine updates once per step.
    template <typename F>
    void update(F&& f) {
        std::lock_guard<std::mutex> lock(mu_);
        f(v_, ttft_, itl_);
    }
    MetricValues values() const {
        std::lock_guard<std::mutex> lock(mu_);
        return v_;
    }
    std::string render(const std::string& model_name) const;

private:
    mutable std::mutex mu_;
    MetricValues v_;
    Histogram ttft_, itl_;
};

}  // namespace tandem
