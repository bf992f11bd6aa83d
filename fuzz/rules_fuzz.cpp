// Fuzz target: placement rule files (YAML) must be accepted or rejected with an error, never
// crash; accepted rules are applied to a small Qwen3-MoE tensor list (regex search over names).
#include <cstddef>
#include <cstdint>
#include <string>

#include "placement/placement.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 16 * 1024) return 0;  // rule files are small
    const std::string text(reinterpret_cast<const char*>(data), size);
    auto rules = tandem::placement::parse_rules(text, "fuzz.yaml", 2);
    if (!rules.ok()) return 0;
    static const std::vector<tandem::placement::TensorBytes> tensors = {
        {"token_embd.weight", 1000}, {"blk.0.attn_q.weight", 100}, {"blk.0.ffn_gate_exps.weight", 5000},
        {"blk.11.ffn_down_exps.weight", 5000}, {"output_norm.weight", 4}, {"output.weight", 1000}};
    auto plan = tandem::placement::place(*rules, tensors);
    if (plan.ok()) (void)tandem::placement::check_fit(*plan, {4096, 1 << 20});
    return 0;
}
