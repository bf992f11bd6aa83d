#include "core/bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/thread_pool.h"

namespace tandem {

double measure_read_bandwidth(ThreadPool& pool, size_t bytes, int reps) {
    const int64_t n = (int64_t)(bytes / sizeof(uint64_t));
    std::unique_ptr<uint64_t[]> buf(new uint64_t[(size_t)n]);
    pool.parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {  // first touch by the threads that read
        for (int64_t i = b; i < e; ++i) buf[(size_t)i] = (uint64_t)i;
    });
    const int nt = pool.n_threads();
    std::vector<uint64_t> sink((size_t)nt * 8, 0);
    double best = 0;
    for (int r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        // one contiguous slice per thread, four independent accumulators
        pool.parallel_for(nt, 1, [&](int64_t b, int64_t e) {
            for (int64_t part = b; part < e; ++part) {
                const int64_t lo = n * part / nt, hi = n * (part + 1) / nt;
                uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                int64_t i = lo;
                for (; i + 4 <= hi; i += 4) {
                    // prefetch 8 KB ahead as the decode kernels do: the hardware prefetchers alone
                    // leave a core well below what it can stream
                    if ((i & 7) == 0) __builtin_prefetch(&buf[(size_t)i] + 1024);
                    a0 += buf[(size_t)i];
                    a1 += buf[(size_t)i + 1];
                    a2 += buf[(size_t)i + 2];
                    a3 += buf[(size_t)i + 3];
                }
                for (; i < hi; ++i) a0 += buf[(size_t)i];
                sink[(size_t)part * 8] += a0 + a1 + a2 + a3;
            }
        });
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        best = std::max(best, (double)bytes / s / 1e9);
    }
    volatile uint64_t keep = sink[0];
    (void)keep;
    return best;
}

}  // namespace tandem
