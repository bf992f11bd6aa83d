#include "placement/placement.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <sstream>

namespace tandem::placement {
namespace {

// "3.00 GiB", "150.2 MiB": GiB unless that would print as 0.00
std::string gib_or_mib(uint64_t b) {
    constexpr double kMiB = 1024.0 * 1024.0;
    return b >= (uint64_t)(10 * kMiB) || b == 0 ? fmt::format("{:.2f} GiB", b / (1024.0 * kMiB))
                                                  : fmt::format("{:.2f} MiB", b / kMiB);
}

// "FILE:LINE: " for a node (yaml-cpp lines are 0-based)
std::string where(const std::string& source, const YAML::Node& n) {
    return fmt::format("{}:{}", source, n.Mark().line + 1);
}

constexpr size_t kMaxPattern = 256;

// Options a rule may carry besides match/device; kept as strings for the executor.
bool is_known_option(const std::string& k) { return k == "kernel" || k == "quant"; }

Result<Rule> parse_rule(const YAML::Node& n, const std::string& source, int n_cuda) {
    const std::string at = where(source, n);
    if (!n.IsMap()) return make_error("{}: a rule must be a map with 'match' and 'device'", at);
    Rule r;
    r.line = n.Mark().line + 1;
    const YAML::Node match = n["match"];
    if (!match) return make_error("{}: rule without 'match'", at);
    if (!match.IsMap() || !match["name"] || !match["name"].IsScalar())
        return make_error("{}: 'match' must be a map with a 'name' regex", where(source, match));
    for (const auto& kv : match) {
        const std::string k = kv.first.as<std::string>();
        if (k != "name") return make_error("{}: unknown match key '{}' (only 'name')", where(source, kv.first), k);
    }
    r.pattern = match["name"].as<std::string>();
    if (r.pattern.size() > kMaxPattern)
        return make_error("{}: regex longer than {} characters", where(source, match["name"]), kMaxPattern);
    auto re = Regex::compile(r.pattern);
    if (!re) return make_error("{}: bad regex '{}': {}", where(source, match["name"]), r.pattern, re.error().message);
    r.re = std::move(*re);
    const YAML::Node dev = n["device"];
    if (!dev) return make_error("{}: rule without 'device'", at);
    if (!dev.IsScalar()) return make_error("{}: 'device' must be cpu or cuda:N", where(source, dev));
    auto d = parse_device(dev.as<std::string>(), n_cuda);
    if (!d) return make_error("{}: {}", where(source, dev), d.error().message);
    r.device = *d;
    for (const auto& kv : n) {
        const std::string k = kv.first.as<std::string>();
        if (k == "match" || k == "device") continue;
        if (!is_known_option(k))
            return make_error("{}: unknown rule key '{}' (match, device, kernel, quant)", where(source, kv.first), k);
        if (!kv.second.IsScalar()) return make_error("{}: '{}' must be a string", where(source, kv.second), k);
        r.options[k] = kv.second.as<std::string>();
    }
    return r;
}

}  // namespace

Result<Device> parse_device(const std::string& s, int n_cuda) {
    if (s == "cpu") return Device{};
    std::string idx;
    if (s == "cuda") idx = "0";
    else if (s.rfind("cuda:", 0) == 0) idx = s.substr(5);
    else return make_error("unknown device '{}' (cpu, cuda, cuda:N)", s);
    if (idx.empty() || idx.size() > 4 || idx.find_first_not_of("0123456789") != std::string::npos)
        return make_error("bad device index in '{}' (cuda:N, N = 0, 1, ...)", s);
    const int i = std::stoi(idx);
    if (i >= n_cuda) {
        if (n_cuda == 0)
            return make_error("device '{}': no CUDA device here (give --gpu-mem GiB to plan for one)", s);
        return make_error("device '{}': only {} CUDA device{} (cuda:0..cuda:{})", s, n_cuda, n_cuda > 1 ? "s" : "",
                          n_cuda - 1);
    }
    return Device{Device::Kind::cuda, i};
}

Result<RuleSet> parse_rules(const std::string& yaml, const std::string& source, int n_cuda) {
    YAML::Node root;
    try {
        root = YAML::Load(yaml);
    } catch (const YAML::Exception& e) {
        return make_error("{}:{}: YAML syntax error: {}", source, e.mark.line + 1, e.msg);
    }
    RuleSet set;
    set.source = source;
    try {
        YAML::Node list = root;
        if (root.IsMap()) {
            list = root["rules"];
            if (!list) return make_error("{}: expected a list of rules (or a map with 'rules:')", source);
        }
        if (!list.IsSequence() || list.size() == 0)
            return make_error("{}: expected a non-empty list of rules", source);
        for (const auto& n : list) {
            TANDEM_ASSIGN(Rule r, parse_rule(n, source, n_cuda));
            set.rules.push_back(std::move(r));
        }
    } catch (const YAML::Exception& e) {  // e.g. a key that is not a scalar
        return make_error("{}:{}: {}", source, e.mark.line + 1, e.msg);
    }
    return set;
}

Result<RuleSet> load_rules(const std::string& path, int n_cuda) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return make_error("{}: cannot open rules file", path);
    std::ostringstream ss;
    ss << in.rdbuf();
    return parse_rules(ss.str(), path, n_cuda);
}

RuleSet default_rules(Arch arch, int n_cuda) {
    RuleSet set;
    set.source = fmt::format("built-in defaults for {}", arch_name(arch));
    auto add = [&](const char* pattern, Device d) {
        Rule r;
        r.pattern = pattern;
        r.re = *Regex::compile(pattern);  // built-in patterns compile
        r.device = d;
        set.rules.push_back(std::move(r));
    };
    const Device rest = n_cuda > 0 ? Device{Device::Kind::cuda, 0} : Device{};
    // qwen3 (dense) has no routed experts: the first rule matches nothing and is dropped
    if (arch == Arch::qwen3moe) add(R"(^blk\.\d+\.ffn_(gate|up|down)_exps\.weight$)", Device{});
    add(".*", rest);
    return set;
}

Result<Plan> place(const RuleSet& rules, const std::vector<TensorBytes>& tensors) {
    Plan plan;
    std::vector<int64_t> hits(rules.rules.size(), 0);
    for (const auto& t : tensors) {
        int which = -1;
        for (size_t i = 0; i < rules.rules.size() && which < 0; ++i) {
            const Rule& r = rules.rules[i];
            auto hit = r.re.search(t.name);
            if (!hit) return make_error("{}:{}: {}", rules.source, r.line, hit.error().message);
            if (*hit) which = (int)i;
        }
        if (which < 0) return make_error("{}: no rule matches tensor '{}' (end the list with a '.*' rule)", rules.source, t.name);
        ++hits[(size_t)which];
        const Device d = rules.rules[(size_t)which].device;
        plan.tensors.push_back({t.name, t.bytes, d, which});
        plan.bytes[d] += t.bytes;
    }
    for (size_t i = 0; i < rules.rules.size(); ++i) {
        const Rule& r = rules.rules[i];
        if (hits[i] == 0 && r.line > 0)
            return make_error("{}:{}: rule '{}' matches no tensor{}", rules.source, r.line, r.pattern,
                              i > 0 ? " (or only tensors an earlier rule took)" : "");
    }
    return plan;
}

Status check_fit(const Plan& plan, const std::vector<uint64_t>& gpu_bytes) {
    for (const auto& [d, bytes] : plan.bytes) {
        if (d.kind != Device::Kind::cuda) continue;
        const uint64_t avail = (size_t)d.index < gpu_bytes.size() ? gpu_bytes[(size_t)d.index] : 0;
        if (bytes > avail)
            return make_error("placement does not fit {}: the weights placed there need {}, {} available", d.str(),
                              gib_or_mib(bytes), gib_or_mib(avail));
    }
    return ok_status();
}

}  // namespace tandem::placement
