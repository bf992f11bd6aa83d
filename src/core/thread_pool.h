// A fixed pool of worker threads running parallel_for over an index range. The calling thread
// takes part; chunks are claimed from one atomic counter, guided (each a share of what is left,
// so they shrink towards the end and uneven items even out). Workers spin for a short while
// after each job before sleeping, so the many small parallel regions of a decode step start in
// well under a microsecond instead of waiting for a futex wake-up.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tandem {

class ThreadPool {
public:
    // pin: worker i runs only on CPU i of the process's affinity mask (cpu_topology()), so
    // workers neither migrate nor share a core while others idle; the calling thread is not
    // pinned. Workers are spread over NUMA nodes in the mask's order.
    explicit ThreadPool(int n_threads, bool pin = true);
    // The CPU worker i (1-based; 0 is the caller) is pinned to, or -1.
    int pinned_cpu(int worker) const { return worker > 0 && worker <= (int)pinned_.size() ? pinned_[(size_t)worker - 1] : -1; }
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int n_threads() const { return (int)workers_.size() + 1; }

    // Calls fn(begin, end) over [0, n) split in chunks of at least `grain` items. Not reentrant:
    // fn must not call parallel_for on the same pool.
    void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

private:
    void worker_loop();
    void run_chunks();

    std::vector<std::thread> workers_;
    std::vector<int> pinned_;
    std::mutex mu_;
    std::condition_variable cv_start_;
    std::atomic<uint64_t> generation_{0};  // bumped for each job; workers wait for a new value
    std::atomic<int> busy_{0};             // workers still running the current job
    std::atomic<int> sleeping_{0};         // workers blocked on cv_start_
    std::atomic<bool> stop_{false};

    // the current job (written before generation_ is bumped, read after it is seen)
    const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
    int64_t n_ = 0;
    int64_t chunk_ = 1;
    std::atomic<int64_t> next_{0};
};

}  // namespace tandem
