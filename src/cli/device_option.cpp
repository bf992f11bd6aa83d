#include "cli/device_option.h"

#include <cstdio>
#include <regex>
#include <set>

#include "backend/backend.h"
#include "core/log.h"
#include "model/cpu_device_layers.h"
#include "model/model.h"

namespace tandem::cli {

void add_device_options(CLI::App& app, DeviceOpts& o) {
    auto* dev = app.add_option("--device", o.device,
                               "Where the non-expert layers run: auto (cuda:0 when present and the weights fit, "
                               "else the cpu), cpu, cuda or cuda:N. The routed experts always run on the cpu. "
                               "cpu-split: the hybrid path with the cpu as its device (for tests: output as cpu)")
                    ->capture_default_str();
    auto* rules = app.add_option("--rules", o.rules,
                                 "Placement rules (YAML; see `tandem inspect --rules`): experts on the cpu and the "
                                 "rest on one device, or all on the cpu");
    rules->excludes(dev);
    app.add_flag("--use-cuda-graph", o.cuda_graph,
                 "With a CUDA device: decode steps (up to 16 tokens) replay each layer's device work as one "
                 "recorded CUDA graph instead of launching its ~20 kernels and copies one by one");
}

Result<PlacementOut> plan_placement(const Model& m, const std::string& rules_arg, double gpu_mem_gib) {
    PlacementOut out;
    const backend::Probe probe = backend::probe_cuda();
    for (const auto& d : probe.devices) out.gpu_bytes.push_back(d.free_bytes ? d.free_bytes : d.total_bytes);
    if (gpu_mem_gib > 0) {
        if (out.gpu_bytes.empty()) out.gpu_bytes.resize(1);
        for (auto& b : out.gpu_bytes) b = (uint64_t)(gpu_mem_gib * 1024.0 * 1024.0 * 1024.0);
    } else if (probe.devices.empty() && rules_arg == "auto") {
        std::fprintf(stderr, "tandem: note: %s; placing on the cpu\n", probe.reason.c_str());
    }
    const int n_cuda = (int)out.gpu_bytes.size();
    std::vector<placement::TensorBytes> tensors;
    for (const auto& t : m.file().tensors()) tensors.push_back({t.name, t.n_bytes});
    const Arch arch = m.hparams().arch;
    if (rules_arg == "auto") {
        out.rules = placement::default_rules(arch, n_cuda);
    } else {
        TANDEM_ASSIGN(out.rules, placement::load_rules(rules_arg, n_cuda));
    }
    TANDEM_ASSIGN(out.plan, placement::place(out.rules, tensors));
    auto fit = placement::check_fit(out.plan, out.gpu_bytes);
    if (!fit && rules_arg == "auto") {
        std::fprintf(stderr, "tandem: note: %s; auto placement falls back to the cpu\n", fit.error().message.c_str());
        out.rules = placement::default_rules(arch, 0);
        TANDEM_ASSIGN(out.plan, placement::place(out.rules, tensors));
    } else if (!fit) {
        return make_error("{}: {}", rules_arg, fit.error().message);
    }
    return out;
}

namespace {

// The CUDA device index a plan runs on (-1: the cpu alone), or why the executor cannot run it.
Result<int> executor_device(const PlacementOut& pl) {
    static const std::regex expert(R"(^blk\.\d+\.ffn_(gate|up|down)_exps\.weight$)");
    std::set<placement::Device> rest;
    for (const placement::Assignment& a : pl.plan.tensors) {
        if (std::regex_match(a.name, expert)) {
            if (a.device.kind != placement::Device::Kind::cpu)
                return make_error("{}: {} is placed on {}: the routed experts run on the cpu (experts on the GPU are "
                                  "not built yet)",
                                  pl.rules.source, a.name, a.device.str());
        } else {
            rest.insert(a.device);
        }
    }
    if (rest.size() > 1) {
        std::string names;
        for (const placement::Device& d : rest) names += (names.empty() ? "" : ", ") + d.str();
        return make_error("{}: the non-expert tensors are spread over {}: they run on one device (cpu or cuda:N)",
                          pl.rules.source, names);
    }
    if (rest.empty() || rest.begin()->kind == placement::Device::Kind::cpu) return -1;
    return rest.begin()->index;
}

}  // namespace

Result<std::unique_ptr<DeviceLayers>> open_device(const Model& m, const DeviceOpts& o, ThreadPool& pool) {
    if (o.device == "cpu-split") return make_cpu_device_layers(m, pool);
    int index = -1;
    bool fallback = false;  // auto: a device that cannot be had means the cpu
    if (!o.rules.empty()) {
        TANDEM_ASSIGN(const PlacementOut pl, plan_placement(m, o.rules, 0));
        TANDEM_ASSIGN(index, executor_device(pl));
        fallback = o.rules == "auto";
    } else if (o.device == "auto") {
        const backend::Probe probe = backend::probe_cuda();
        if (probe.devices.empty()) {
            log::debug("--device auto: {}: running on the cpu", probe.reason);  // (the usual case: quiet)
            return std::unique_ptr<DeviceLayers>();
        }
        index = 0;
        fallback = true;
    } else {
        // the syntax only (any index): whether cuda:N exists is make_cuda_layers' error, with the reason
        TANDEM_ASSIGN(const placement::Device d, placement::parse_device(o.device, 1 << 14));
        if (d.kind == placement::Device::Kind::cuda) index = d.index;
    }
    if (index < 0) return std::unique_ptr<DeviceLayers>();
    CudaLayerOptions copt;
    copt.graphs = o.cuda_graph;
    auto layers = make_cuda_layers(m, index, copt);
    if (!layers) {
        if (!fallback) return make_error("--device cuda:{}: {}", index, layers.error().message);
        std::fprintf(stderr, "tandem: note: %s; running on the cpu\n", layers.error().message.c_str());
        return std::unique_ptr<DeviceLayers>();
    }
    log::info("hybrid forward: routed experts on the cpu, the rest on {}{}", (*layers)->name(),
              copt.graphs ? " (decode steps as CUDA graphs)" : "");
    return std::move(*layers);
}

}  // namespace tandem::cli
