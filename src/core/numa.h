// CPU topology and NUMA placement: the CPUs this process may run on, their NUMA nodes, thread
// pinning, and spreading a mapping's pages over the nodes. Everything is a no-op where it does
// not apply (one node, or a kernel without NUMA support).
#pragma once

#include <cstddef>
#include <vector>

namespace tandem {

struct CpuTopology {
    std::vector<int> cpus;      // CPUs in this process's affinity mask, ascending
    std::vector<int> node_of;   // NUMA node of cpus[i]
    int n_nodes = 1;            // NUMA nodes with at least one of those CPUs
};

const CpuTopology& cpu_topology();

// Pins the calling thread to one CPU; false if the kernel refused.
bool pin_current_thread(int cpu);

// Spreads the pages of [addr, addr + len) round-robin over the NUMA nodes (weights read by
// threads on every node), when there is more than one node. Returns whether it did.
bool interleave_memory(void* addr, size_t len);

}  // namespace tandem
