// A fixed pool of worker threads running parallel_for over an index range. The calling thread
// takes part; chunks are handed out through one atomic counter. Workers spin for a short while
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
    explicit ThreadPool(int n_threads);
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
