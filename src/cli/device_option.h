// --device and --rules (run, chat, bench, serve): where the forward runs, and the placement plan
// behind it (shared with `tandem inspect --rules`).
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "model/device_layers.h"
#include "placement/placement.h"

namespace tandem {
class Model;
}

namespace tandem::cli {

struct DeviceOpts {
    std::string device = "auto";
    std::string rules;
    bool cuda_graph = false;  // --use-cuda-graph: decode steps replay recorded CUDA graphs
    std::string gpu_experts;  // --gpu-experts N|auto: the most routed experts of each layer on the GPU
    int64_t gpu_prefill = 0;  // --gpu-prefill N: batches of N+ tokens run every routed expert on the GPU
};
void add_device_options(CLI::App& app, DeviceOpts& o);

// The device half of the hybrid forward the options ask for, or null for the CPU alone. `auto`
// (the default): cuda:0 when there is one and the non-expert weights fit, else the CPU with a note
// on stderr saying why. An explicit --device cuda[:N] or rule file that cannot be had is an error.
// The executor takes two placements: everything on the cpu, or the routed experts on the cpu and
// everything else on one CUDA device; other rule files are an error naming the tensors.
// `cpu-split` runs the hybrid path with the CPU as its device half (cpu_device_layers.h): the
// same output as `cpu`, for testing the hybrid plumbing where there is no GPU. `pool`: its threads.
Result<std::unique_ptr<DeviceLayers>> open_device(const Model& m, const DeviceOpts& o, ThreadPool& pool);

// open_device, then the CPU's packed weights (unless no_repack; only the experts when a GPU
// holds the rest), then --gpu-experts: the N (auto: as many as fit next to a KV cache of
// kv_tokens positions) most routed experts of every layer, counted over a built-in calibration
// prompt run through the hybrid forward, are copied to the GPU; a note says how many and what
// share of the calibration's routed pairs they took. --gpu-prefill N (before --gpu-experts, whose
// auto sizing counts its two layers of staging memory) enables expert streaming on the device.
Result<std::unique_ptr<DeviceLayers>> open_device_for(Model& m, const DeviceOpts& o, ThreadPool& pool, bool no_repack,
                                                      int64_t kv_tokens);

struct PlacementOut {
    placement::RuleSet rules;
    placement::Plan plan;
    std::vector<uint64_t> gpu_bytes;  // available on cuda:i
};
// --rules FILE|auto [--gpu-mem GiB]: the device of every tensor. An explicit file that does not
// fit is an error; `auto` falls back to the cpu with a note. gpu_mem_gib > 0: plan for that much
// memory per device (a device is assumed when there is none).
Result<PlacementOut> plan_placement(const Model& m, const std::string& rules_arg, double gpu_mem_gib);

}  // namespace tandem::cli
