// Measures the machine's memory read bandwidth (what decode speed is bounded by).
#pragma once

#include <cstddef>

namespace tandem {

class ThreadPool;

// Best of `reps` passes summing a `bytes`-sized buffer with every thread of the pool; GB/s.
double measure_read_bandwidth(ThreadPool& pool, size_t bytes = size_t(1) << 30, int reps = 3);

}  // namespace tandem
