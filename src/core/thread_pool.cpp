#include "core/thread_pool.h"

#include <algorithm>
#include <chrono>

#include "core/numa.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define TANDEM_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define TANDEM_PAUSE() __asm__ volatile("yield")
#else
#define TANDEM_PAUSE() ((void)0)
#endif

namespace tandem {
namespace {
// How long an idle worker spins before sleeping. Tuned on a 2-core AVX-512 VM: decode steps
// issue a parallel region every few tens of microseconds.
constexpr auto kSpin = std::chrono::microseconds(200);
}  // namespace

ThreadPool::ThreadPool(int n_threads, bool pin) {
    const std::vector<int>& cpus = cpu_topology().cpus;
    for (int i = 1; i < std::max(1, n_threads); ++i) {
        // the caller usually runs on the first CPU: workers take the next ones
        const int cpu = pin && (size_t)n_threads <= cpus.size() ? cpus[(size_t)i % cpus.size()] : -1;
        pinned_.push_back(cpu);
        workers_.emplace_back([this, cpu] {
            if (cpu >= 0) pin_current_thread(cpu);
            worker_loop();
        });
    }
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_.store(true);
        generation_.fetch_add(1);
    }
    cv_start_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::run_chunks() {
    // guided: each claim takes a share of what is left (at least chunk_, in multiples of it),
    // so the chunks shrink towards the end and uneven items even out across the threads
    const int64_t share = 2 * (int64_t)n_threads();
    for (;;) {
        int64_t b = next_.load(std::memory_order_relaxed), size;
        do {
            if (b >= n_) return;
            size = std::max(chunk_, ((n_ - b) / share + chunk_ - 1) / chunk_ * chunk_);
        } while (!next_.compare_exchange_weak(b, b + size, std::memory_order_relaxed));
        (*fn_)(b, std::min(n_, b + size));
    }
}

void ThreadPool::worker_loop() {
    uint64_t seen = 0;
    for (;;) {
        // spin, then sleep, until a new job (or stop) is published
        auto spin_until = std::chrono::steady_clock::now() + kSpin;
        int k = 0;
        while (generation_.load(std::memory_order_acquire) == seen) {
            TANDEM_PAUSE();
            if (++k % 256 == 0 && std::chrono::steady_clock::now() > spin_until) {
                std::unique_lock<std::mutex> lk(mu_);
                sleeping_.fetch_add(1);
                cv_start_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
                sleeping_.fetch_sub(1);
                break;
            }
        }
        if (stop_.load()) return;
        seen = generation_.load(std::memory_order_acquire);
        run_chunks();
        busy_.fetch_sub(1, std::memory_order_acq_rel);
    }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    grain = std::max<int64_t>(1, grain);
    const int nt = n_threads();
    if (nt == 1 || n <= grain) {
        fn(0, n);
        return;
    }
    fn_ = &fn;
    n_ = n;
    chunk_ = grain;  // the smallest claim (run_chunks)
    next_.store(0, std::memory_order_relaxed);
    busy_.store((int)workers_.size(), std::memory_order_relaxed);
    {
        std::lock_guard<std::mutex> lk(mu_);  // pairs with the sleepers' predicate check
        generation_.fetch_add(1, std::memory_order_release);
    }
    if (sleeping_.load() > 0) cv_start_.notify_all();
    run_chunks();
    while (busy_.load(std::memory_order_acquire) != 0) TANDEM_PAUSE();
    fn_ = nullptr;
}

}  // namespace tandem
