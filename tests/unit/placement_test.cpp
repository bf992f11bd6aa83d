#include <gtest/gtest.h>

#include "backend/backend.h"
#include "placement/placement.h"

namespace tandem::placement {
namespace {

constexpr uint64_t kGiB = 1024ull * 1024 * 1024;

std::vector<TensorBytes> model_tensors() {
    std::vector<TensorBytes> t = {{"token_embd.weight", 100}, {"output_norm.weight", 4}, {"output.weight", 100}};
    for (int il = 0; il < 12; ++il) {
        const std::string p = "blk." + std::to_string(il) + ".";
        for (const char* n : {"attn_q.weight", "attn_k.weight", "attn_norm.weight", "ffn_gate_inp.weight"})
            t.push_back({p + n, 10});
        for (const char* n : {"ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"})
            t.push_back({p + n, 1000});
    }
    return t;
}

TEST(Placement, ParsesDevices) {
    EXPECT_EQ(parse_device("cpu", 0)->str(), "cpu");
    EXPECT_EQ(parse_device("cuda", 1)->str(), "cuda:0");
    EXPECT_EQ(parse_device("cuda:1", 2)->str(), "cuda:1");
    EXPECT_NE(parse_device("gpu", 1).error().message.find("unknown device 'gpu'"), std::string::npos);
    EXPECT_NE(parse_device("cuda:x", 1).error().message.find("bad device index"), std::string::npos);
    EXPECT_NE(parse_device("cuda:-1", 1).error().message.find("bad device index"), std::string::npos);
    EXPECT_NE(parse_device("cuda:", 1).error().message.find("bad device index"), std::string::npos);
    EXPECT_NE(parse_device("cuda:2", 2).error().message.find("only 2 CUDA devices"), std::string::npos);
    EXPECT_NE(parse_device("cuda:0", 0).error().message.find("no CUDA device"), std::string::npos);
}

TEST(Placement, DefaultsPutExpertsOnCpuAndTheRestOnTheGpu) {
    auto plan = place(default_rules(Arch::qwen3moe, 1), model_tensors());
    ASSERT_TRUE(plan.ok()) << plan.error().message;
    for (const auto& a : plan->tensors) {
        const bool expert = a.name.find("_exps") != std::string::npos;
        EXPECT_EQ(a.device.str(), expert ? "cpu" : "cuda:0") << a.name;
    }
    EXPECT_EQ(plan->bytes.at(Device{}), 36000u);
    EXPECT_EQ(plan->bytes.at((Device{Device::Kind::cuda, 0})), 204u + 12 * 40);

    auto cpu_only = place(default_rules(Arch::qwen3moe, 0), model_tensors());
    ASSERT_TRUE(cpu_only.ok());
    EXPECT_EQ(cpu_only->bytes.size(), 1u);
    // a dense model has no experts: the expert rule is built in and may match nothing
    auto dense = place(default_rules(Arch::qwen3, 1), {{"token_embd.weight", 8}});
    ASSERT_TRUE(dense.ok()) << dense.error().message;
}

TEST(Placement, FirstMatchWinsAndOptionsAreKept) {
    const char* yaml = R"(# layers 0-1 entirely on the GPU, other experts on the cpu
- match: {name: '^blk\.[01]\.'}
  device: cuda:0
- match:
    name: '_exps\.weight$'
  device: cpu
  kernel: avx512
- match: {name: '.*'}
  device: cuda:0
  quant: q8_0
)";
    auto rules = parse_rules(yaml, "r.yaml", 1);
    ASSERT_TRUE(rules.ok()) << rules.error().message;
    ASSERT_EQ(rules->rules.size(), 3u);
    EXPECT_EQ(rules->rules[0].line, 2);
    EXPECT_EQ(rules->rules[1].options.at("kernel"), "avx512");
    EXPECT_EQ(rules->rules[2].options.at("quant"), "q8_0");
    auto plan = place(*rules, model_tensors());
    ASSERT_TRUE(plan.ok()) << plan.error().message;
    for (const auto& a : plan->tensors) {
        if (a.name == "blk.1.ffn_up_exps.weight") {
            EXPECT_EQ(a.device.str(), "cuda:0");
        } else if (a.name == "blk.10.ffn_up_exps.weight") {
            EXPECT_EQ(a.device.str(), "cpu");
        } else if (a.name == "blk.10.attn_q.weight") {
            EXPECT_EQ(a.rule, 2);
        }
    }
    EXPECT_EQ(plan->bytes.at((Device{Device::Kind::cuda, 0})), 204u + 12 * 40 + 2 * 3000);
    // the same rules as a map with `rules:`
    auto mapped = parse_rules("rules:\n  - match: {name: x}\n    device: cpu\n", "m.yaml", 0);
    ASSERT_TRUE(mapped.ok()) << mapped.error().message;
}

std::string error_of(const char* yaml, int n_cuda = 1) {
    auto r = parse_rules(yaml, "r.yaml", n_cuda);
    if (!r) return r.error().message;
    auto p = place(*r, model_tensors());
    return p ? "" : p.error().message;
}

TEST(Placement, ErrorsNameTheFileLineAndCause) {
    EXPECT_EQ(error_of("- match: {name: '.*'}\n  device: cpu\n"), "");
    EXPECT_EQ(error_of("- match: {name: '.*'}\n  device: cpu\n- match: {name: nothing_like_this}\n  device: cpu\n"),
              "r.yaml:3: rule 'nothing_like_this' matches no tensor (or only tensors an earlier rule took)");
    EXPECT_EQ(error_of("- match: {name: '.*'}\n  device: tpu\n"), "r.yaml:2: unknown device 'tpu' (cpu, cuda, cuda:N)");
    EXPECT_NE(error_of("- match: {name: '.*'}\n  device: cuda:3\n").find("r.yaml:2: device 'cuda:3': only 1 CUDA device"),
              std::string::npos);
    EXPECT_NE(error_of("- match: {name: '.*'}\n  device: cuda:0\n", 0).find("no CUDA device"), std::string::npos);
    EXPECT_NE(error_of("- match: {name: 'blk.(['}\n  device: cpu\n").find("r.yaml:1: bad regex 'blk.(['"),
              std::string::npos);
    const std::string syn = error_of("- match: {name: '.*'\n  device: cpu\n");
    EXPECT_EQ(syn.rfind("r.yaml:", 0), 0u) << syn;
    EXPECT_NE(syn.find("YAML syntax error"), std::string::npos) << syn;
    EXPECT_NE(error_of("- match: {name: '.*'}\n  device: cpu\n  colour: red\n").find("unknown rule key 'colour'"),
              std::string::npos);
    EXPECT_NE(error_of("- match: {name: '.*'}\n").find("rule without 'device'"), std::string::npos);
    EXPECT_NE(error_of("- device: cpu\n").find("rule without 'match'"), std::string::npos);
    EXPECT_NE(error_of("[]").find("non-empty list"), std::string::npos);
    EXPECT_NE(error_of("- match: {name: attn}\n  device: cpu\n").find("no rule matches tensor 'token_embd.weight'"),
              std::string::npos);
    EXPECT_NE(error_of("- 3\n").find("a rule must be a map"), std::string::npos);
    const std::string long_rule = "- match: {name: '" + std::string(300, '(') + "'}\n  device: cpu\n";
    EXPECT_NE(error_of(long_rule.c_str()).find("regex longer than 256 characters"), std::string::npos);
    // a pattern that backtracks exponentially on a tensor name: an error naming the rule, not a hang
    const std::string slow = error_of("- match: {name: '^(\\w|\\.|\\w\\.?|[a-z])*_$'}\n  device: cpu\n");
    EXPECT_EQ(slow.rfind("r.yaml:1: regex '^(\\w|\\.|\\w\\.?|[a-z])*_$' needs too many backtracking steps on '", 0), 0u)
        << slow;
}

TEST(Placement, FitCheckGivesNeededAndAvailable) {
    auto plan = place(default_rules(Arch::qwen3moe, 1), {{"blk.0.attn_q.weight", 3 * kGiB}});
    ASSERT_TRUE(plan.ok());
    EXPECT_TRUE(check_fit(*plan, {4 * kGiB}).ok());
    auto st = check_fit(*plan, {2 * kGiB});
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().message, "placement does not fit cuda:0: the weights placed there need 3.00 GiB, 2.00 GiB available");
}

TEST(Backend, ProbeNeverFailsAndSaysWhyThereIsNoDevice) {
    const backend::Probe p = backend::probe_cuda();
    if (p.devices.empty()) {
        EXPECT_FALSE(p.reason.empty());
        EXPECT_FALSE(backend::make_cuda_backend(0).ok());
    } else {
        for (const auto& d : p.devices) EXPECT_GT(d.total_bytes, 0u) << d.name;
    }
}

}  // namespace
}  // namespace tandem::placement
