// Placement rules: which device holds (and computes with) each weight tensor.
//
// A rule file (YAML, the seed's --optimize_config_path) is an ordered list of rules; the first
// rule whose regex matches a tensor's GGUF name decides its device:
//
//   - match: {name: '^blk\.\d+\.ffn_(gate|up|down)_exps\.weight$'}
//     device: cpu
//   - match: {name: '.*'}
//     device: cuda:0
//     kernel: auto          # options: free-form strings kept for the executor (kernel, quant)
//
// The regex is Perl-compatible (PCRE2, core/regex.h: bounded matching, so a catastrophic pattern is
// an error and never a hang) and searched anywhere in the name: anchor it with ^ and $.
// Pure logic, no GPU: the device count and memory come from the caller.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/regex.h"
#include "core/status.h"
#include "model/arch.h"

namespace tandem::placement {

struct Device {
    enum class Kind { cpu, cuda };
    Kind kind = Kind::cpu;
    int index = 0;  // cuda:N; 0 for the cpu

    std::string str() const { return kind == Kind::cpu ? "cpu" : "cuda:" + std::to_string(index); }
    bool operator==(const Device&) const = default;
    auto operator<=>(const Device&) const = default;
};

// "cpu" | "cuda" (= cuda:0) | "cuda:N"; n_cuda = devices that exist (or are planned for).
Result<Device> parse_device(const std::string& s, int n_cuda);

struct Rule {
    std::string pattern;
    Regex re;
    Device device;
    std::map<std::string, std::string> options;  // kernel, quant
    int line = 0;                                 // 1-based line of the rule in its file; 0 built in
};

struct RuleSet {
    std::string source;  // file name, or "built-in defaults for ARCH"
    std::vector<Rule> rules;
};

// Parses rules from YAML text (a list of rules, or a map with a `rules:` list). `source` names
// the file in error messages ("FILE:LINE: ..."). Devices are checked against n_cuda.
Result<RuleSet> parse_rules(const std::string& yaml, const std::string& source, int n_cuda);
Result<RuleSet> load_rules(const std::string& path, int n_cuda);

// Built-in defaults: routed experts on the cpu, everything else on cuda:0 when n_cuda > 0, else cpu.
RuleSet default_rules(Arch arch, int n_cuda);

struct TensorBytes {
    std::string name;
    uint64_t bytes = 0;
};

struct Assignment {
    std::string name;
    uint64_t bytes = 0;
    Device device;
    int rule = -1;  // index into RuleSet::rules
};

struct Plan {
    std::vector<Assignment> tensors;          // in the order given
    std::map<Device, uint64_t> bytes;         // per device, every device that holds a tensor
};

// Applies the rules (first match wins). Errors: a rule that matches no tensor, a tensor that no
// rule matches.
Result<Plan> place(const RuleSet& rules, const std::vector<TensorBytes>& tensors);

// Errors when the weights placed on a CUDA device exceed its memory: gpu_bytes[i] is the memory
// available on cuda:i.
Status check_fit(const Plan& plan, const std::vector<uint64_t>& gpu_bytes);

}  // namespace tandem::placement
