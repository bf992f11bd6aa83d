// DeviceLayers (device_layers.h) computed by the CPU forward's own building blocks: the device
// half of the hybrid forward with no device. It exists to hold the hybrid driver
// (Forward::run_hybrid) and anything built on it (the engine, bench) to the CPU forward bit for
// bit where there is no GPU, and as the template for a new backend's DeviceLayers: same calls,
// same results.
#pragma once

#include <memory>

#include "core/thread_pool.h"
#include "model/device_layers.h"

namespace tandem {

std::unique_ptr<DeviceLayers> make_cpu_device_layers(const Model& model, ThreadPool& pool);

}  // namespace tandem
