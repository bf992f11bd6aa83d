// ThreadPool: every index exactly once, and pinned workers stay on their CPUs.
#include <gtest/gtest.h>
#include <sched.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "core/numa.h"
#include "core/thread_pool.h"

namespace tandem {
namespace {

TEST(ThreadPool, CoversEveryIndexOnce) {
    ThreadPool pool(3);
    for (int64_t n : {1, 7, 100, 12345}) {
        std::vector<std::atomic<int>> hits((size_t)n);
        pool.parallel_for(n, 3, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) hits[(size_t)i].fetch_add(1);
        });
        for (auto& h : hits) EXPECT_EQ(h.load(), 1);
    }
}

TEST(ThreadPool, WorkersArePinnedToDistinctCpus) {
    const CpuTopology& topo = cpu_topology();
    ASSERT_FALSE(topo.cpus.empty());
    EXPECT_EQ(topo.node_of.size(), topo.cpus.size());
    EXPECT_GE(topo.n_nodes, 1);
    const int n = (int)topo.cpus.size();
    if (n < 2) GTEST_SKIP() << "one CPU in this process's affinity mask: nothing to pin";
    ThreadPool pool(n);
    std::set<int> pinned;
    for (int w = 1; w < n; ++w) {
        const int cpu = pool.pinned_cpu(w);
        EXPECT_NE(cpu, -1);
        pinned.insert(cpu);
    }
    EXPECT_EQ((int)pinned.size(), n - 1);
    // the CPUs the work ran on, seen from inside: a pinned worker only ever reports its CPU
    std::mutex mu;
    std::set<int> seen;
    const std::thread::id caller = std::this_thread::get_id();
    for (int rep = 0; rep < 50; ++rep)
        pool.parallel_for(1000, 1, [&](int64_t, int64_t) {
            if (std::this_thread::get_id() == caller) return;
            const int cpu = sched_getcpu();
            std::lock_guard<std::mutex> lock(mu);
            seen.insert(cpu);
        });
    for (int cpu : seen) EXPECT_TRUE(pinned.count(cpu)) << "a worker ran on CPU " << cpu;
    ThreadPool unpinned(n, /*pin=*/false);
    EXPECT_EQ(unpinned.pinned_cpu(1), -1);
}

}  // namespace
}  // namespace tandem
