#include "core/numa.h"

#include <numa.h>
#include <pthread.h>
#include <sched.h>

#include <set>

namespace tandem {

const CpuTopology& cpu_topology() {
    static const CpuTopology topo = [] {
        CpuTopology t;
        cpu_set_t set;
        CPU_ZERO(&set);
        if (sched_getaffinity(0, sizeof set, &set) == 0) {
            for (int c = 0; c < CPU_SETSIZE; ++c)
                if (CPU_ISSET(c, &set)) t.cpus.push_back(c);
        }
        if (t.cpus.empty()) t.cpus.push_back(0);
        const bool numa = numa_available() >= 0;
        std::set<int> nodes;
        for (int c : t.cpus) {
            const int n = numa ? std::max(0, numa_node_of_cpu(c)) : 0;
            t.node_of.push_back(n);
            nodes.insert(n);
        }
        t.n_nodes = (int)nodes.size();
        return t;
    }();
    return topo;
}

bool pin_current_thread(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

bool interleave_memory(void* addr, size_t len) {
    if (len == 0 || cpu_topology().n_nodes < 2 || numa_available() < 0) return false;
    numa_interleave_memory(addr, len, numa_all_nodes_ptr);
    return true;
}

}  // namespace tandem
