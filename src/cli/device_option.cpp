#include "cli/device_option.h"

#include <cstdio>
#include <regex>
#include <set>

#include "backend/backend.h"
#include "core/log.h"
#include "model/cpu_device_layers.h"
#include "model/forward.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

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
    app.add_option("--gpu-experts", o.gpu_experts,
                   "With a CUDA device: N (or auto: as many as fit) of each layer's routed experts on the GPU as "
                   "well, the most routed ones over a calibration prompt; their share of the routing runs there, "
                   "the rest on the CPU at the same time");
    app.add_option("--gpu-prefill", o.gpu_prefill,
                   "With a CUDA device: batches (prefill chunks) of at least N tokens run every routed expert on "
                   "the GPU, each layer's experts uploaded as the batch reaches it while the GPU computes the layer "
                   "before (two layers of device memory). Pays when the upload (the experts' bytes over the bus) "
                   "takes less than the CPU would for those tokens: long prompts, a large --chunk-size. 0: never")
        ->check(CLI::Validator(
            [](std::string& v) {
                return !v.empty() && v[0] == '-' ? std::string("a number of tokens >= 0 (0: never)") : std::string();
            },
            "N>=0"));
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

namespace {

// What --gpu-experts counts routing over: prose, code, numbers and a little Chinese, as a
// model's traffic might hold them (written for this purpose).
constexpr const char* kCalibrationText = R"(The committee met on a rainy Tuesday to review the budget for the coming year. Most of the
discussion turned on two questions: whether the new library wing could open before the autumn
term, and how much the city would have to borrow to pay for it. Several members pointed out that
interest rates had risen twice since March.
def merge_intervals(intervals):
    intervals.sort(key=lambda iv: iv[0])
    out = []
    for start, end in intervals:
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return out
SELECT region, SUM(amount) AS total FROM orders WHERE year = 2024 GROUP BY region ORDER BY total DESC;
In 1969 the first message sent over the network was "lo": the system crashed after two letters.
The train left at 07:45 and covered 312 km in 2 h 51 min, an average of about 109 km/h.
今天的天气很好，我们去公园散步吧。机器学习模型需要大量的数据来训练。
Question: what is the derivative of x^3 * sin(x)? Answer: 3x^2 sin(x) + x^3 cos(x), by the product rule.
She opened the letter slowly, read the first line twice, and then set it down on the table without a word.)";

// the calibration prompt's tokens: the text through the model's tokenizer (token ids spread over
// the vocabulary when the model has none)
std::vector<int32_t> calibration_tokens(const Model& m) {
    std::vector<int32_t> ids;
    if (auto tok = Tokenizer::from_gguf(m.file()))
        if (auto e = tok->encode(kCalibrationText, false)) ids = std::move(*e);
    if (ids.empty())
        for (int i = 0; i < 256; ++i) ids.push_back((int32_t)(((int64_t)i * 7919 + 13) % m.hparams().n_vocab));
    const int64_t max_len = std::min<int64_t>(m.hparams().n_ctx_train, 1024);
    if ((int64_t)ids.size() > max_len) ids.resize((size_t)max_len);
    return ids;
}

Status place_gpu_experts(const Model& m, DeviceLayers& dev, ThreadPool& pool, const std::string& arg, int64_t kv_tokens) {
    const HParams& h = m.hparams();
    if (!h.is_moe()) return make_error("--gpu-experts: {} has no routed experts", arch_name(h.arch));
    const uint64_t per_expert = dev.expert_bytes();
    if (per_expert == 0) return make_error("--gpu-experts: {} holds no routed experts", dev.name());
    int64_t n = 0;
    if (arg == "auto") {
        const uint64_t kv = (uint64_t)(h.n_layer * 2 * h.n_kv() * std::max<int64_t>(kv_tokens, 0)) * 2;
        const uint64_t free_b = dev.free_bytes();
        n = free_b > kv ? (int64_t)((free_b - kv) / (per_expert * (uint64_t)h.n_layer)) : 0;
    } else {
        try {
            size_t used = 0;
            n = std::stoll(arg, &used);
            if (used != arg.size() || n < 0) throw std::invalid_argument(arg);
        } catch (const std::exception&) {
            return make_error("--gpu-experts '{}': a number of experts per layer, or auto", arg);
        }
    }
    n = std::min(n, h.n_expert);
    if (n == 0) {
        std::fprintf(stderr, "tandem: note: --gpu-experts %s: no room for routed experts on %s\n", arg.c_str(),
                     dev.name().c_str());
        return {};
    }
    // routing counts over the calibration prompt, through the hybrid forward itself
    const std::vector<int32_t> ids = calibration_tokens(m);
    Forward f(m, pool, &dev);
    f.count_experts(true);
    KvCache kv = f.make_cache((int64_t)ids.size());
    std::vector<float> logits;
    TANDEM_TRY(f.eval(kv, ids.data(), (int64_t)ids.size(), logits));
    const std::vector<int64_t>& c = f.expert_counts();
    std::vector<std::vector<int32_t>> chosen((size_t)h.n_layer);
    int64_t covered = 0, total = 0;
    for (int64_t il = 0; il < h.n_layer; ++il) {
        std::vector<int32_t> order((size_t)h.n_expert);
        for (int32_t e = 0; e < h.n_expert; ++e) order[(size_t)e] = e;
        const int64_t* ci = c.data() + il * h.n_expert;
        std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return ci[a] > ci[b]; });
        order.resize((size_t)n);
        std::sort(order.begin(), order.end());
        for (int32_t e : order) covered += ci[e];
        for (int64_t e = 0; e < h.n_expert; ++e) total += ci[e];
        chosen[(size_t)il] = std::move(order);
    }
    TANDEM_TRY(dev.place_experts(chosen));
    const double mib = (double)per_expert * (double)(n * h.n_layer) / (1 << 20);
    const std::string size = mib >= 1024 ? fmt::format("{:.2f} GiB", mib / 1024) : fmt::format("{:.1f} MiB", mib);
    std::fprintf(stderr,
                 "tandem: note: --gpu-experts: %lld of %lld routed experts per layer on %s (%s), the most routed over a "
                 "%zu-token calibration prompt: %.0f%% of its routed pairs\n",
                 (long long)n, (long long)h.n_expert, dev.name().c_str(), size.c_str(), ids.size(),
                 total ? 100.0 * (double)covered / (double)total : 0.0);
    return {};
}

}  // namespace

Result<std::unique_ptr<DeviceLayers>> open_device_for(Model& m, const DeviceOpts& o, ThreadPool& pool, bool no_repack,
                                                      int64_t kv_tokens) {
    TANDEM_ASSIGN(std::unique_ptr<DeviceLayers> dev, open_device(m, o, pool));
    if (!no_repack) TANDEM_TRY(m.pack_for_cpu(pool, /*experts_only=*/dev && !dev->on_host()));
    if (o.gpu_prefill > 0) {
        if (!dev) return make_error("--gpu-prefill {}: no device holds the layers (--device cpu)", o.gpu_prefill);
        if (!m.hparams().is_moe()) return make_error("--gpu-prefill: {} has no routed experts", arch_name(m.hparams().arch));
        TANDEM_TRY(dev->enable_expert_streaming(o.gpu_prefill));
    }
    if (!o.gpu_experts.empty()) {
        if (!dev) return make_error("--gpu-experts {}: no device holds the layers (--device cpu)", o.gpu_experts);
        TANDEM_TRY(place_gpu_experts(m, *dev, pool, o.gpu_experts, kv_tokens));
    }
    return dev;
}

}  // namespace tandem::cli
