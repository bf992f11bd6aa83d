// Hugging Face folders as GGUF-named views: the name table, expert stacks (in place and
// gathered), tied embeddings, and clear errors for folders that do not fit their config.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "core/fp16.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "model/hf_checkpoint.h"
#include "model/model.h"
#include "test_util.h"

namespace tandem {
namespace {

constexpr int64_t kD = 64, kHd = 32, kHeads = 2, kKv = 1, kF = 32, kE = 4, kVocab = 50;

HfConfig tiny_config() {
    HfConfig c;
    c.architecture = "Qwen3MoeForCausalLM";
    c.hidden_size = kD;
    c.num_hidden_layers = 1;
    c.num_attention_heads = kHeads;
    c.num_key_value_heads = kKv;
    c.head_dim = kHd;
    c.intermediate_size = kF * 2;
    c.moe_intermediate_size = kF;
    c.num_experts = kE;
    c.num_experts_per_tok = 2;
    c.max_position_embeddings = 128;
    c.vocab_size = kVocab;
    c.tie_word_embeddings = true;
    return c;
}

// BF16 values that tell tensors and elements apart
SafetensorsWriter::Producer values(uint32_t tag) {
    return [tag](uint8_t* dst, size_t n) -> Status {
        for (size_t i = 0; i < n / 2; ++i) {
            const uint16_t v = fp32_to_bf16((float)((tag * 7919 + i) % 1000) / 1000.0f);
            std::memcpy(dst + 2 * i, &v, 2);
        }
        return {};
    };
}

struct Folder {
    HfConfig config = tiny_config();
    bool experts_in_place = true;  // experts of a stack back to back; else interleaved like transformers
    std::function<bool(const std::string&)> skip = [](const std::string&) { return false; };
    std::vector<std::pair<std::string, std::vector<int64_t>>> extra;  // extra BF16 tensors
    StDType dtype = StDType::BF16;
    int shards = 1;  // one: a stack cut by a shard boundary would not be in place

    Status write(const std::string& dir) const {
        std::filesystem::create_directories(dir);
        std::ofstream(dir + "/config.json") << config.to_json();
        SafetensorsWriter w;
        auto add = [&](const std::string& name, std::vector<int64_t> shape) -> Status {
            if (skip(name)) return {};
            return w.add_tensor(name, dtype, std::move(shape), values((uint32_t)std::hash<std::string>{}(name)));
        };
        TANDEM_TRY(add("model.embed_tokens.weight", {kVocab, kD}));
        TANDEM_TRY(add("model.norm.weight", {kD}));
        TANDEM_TRY(add(hf::layer(0, "input_layernorm"), {kD}));
        TANDEM_TRY(add(hf::layer(0, "post_attention_layernorm"), {kD}));
        TANDEM_TRY(add(hf::layer(0, "self_attn.q_proj"), {kHeads * kHd, kD}));
        TANDEM_TRY(add(hf::layer(0, "self_attn.k_proj"), {kKv * kHd, kD}));
        TANDEM_TRY(add(hf::layer(0, "self_attn.v_proj"), {kKv * kHd, kD}));
        TANDEM_TRY(add(hf::layer(0, "self_attn.o_proj"), {kD, kHeads * kHd}));
        TANDEM_TRY(add(hf::layer(0, "self_attn.q_norm"), {kHd}));
        TANDEM_TRY(add(hf::layer(0, "self_attn.k_norm"), {kHd}));
        TANDEM_TRY(add(hf::layer(0, "mlp.gate"), {kE, kD}));
        const char* kinds[] = {"gate_proj", "up_proj", "down_proj"};
        auto shape = [](int k) { return k == 2 ? std::vector<int64_t>{kD, kF} : std::vector<int64_t>{kF, kD}; };
        if (experts_in_place) {
            for (int k = 0; k < 3; ++k)
                for (int e = 0; e < kE; ++e) TANDEM_TRY(add(hf::expert(0, e, kinds[k]), shape(k)));
        } else {
            for (int e = 0; e < kE; ++e)
                for (int k = 0; k < 3; ++k) TANDEM_TRY(add(hf::expert(0, e, kinds[k]), shape(k)));
        }
        for (const auto& [name, s] : extra) TANDEM_TRY(add(name, s));
        return w.write_shards(dir, shards);
    }
};

std::string load_error(const std::string& dir, bool for_inspect = false) {
    auto m = Model::load(dir, for_inspect ? LoadOptions::inspect() : LoadOptions());
    return m.ok() ? "" : m.error().message;
}

TEST(HfNames, TableMapsBothWays) {
    const std::pair<const char*, const char*> cases[] = {
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"model.norm.weight", "output_norm.weight"},
        {"lm_head.weight", "output.weight"},
        {"model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight"},
        {"model.layers.12.self_attn.k_norm.weight", "blk.12.attn_k_norm.weight"},
        {"model.layers.3.self_attn.o_proj.weight", "blk.3.attn_output.weight"},
        {"model.layers.3.input_layernorm.weight", "blk.3.attn_norm.weight"},
        {"model.layers.3.post_attention_layernorm.weight", "blk.3.ffn_norm.weight"},
        {"model.layers.93.mlp.gate.weight", "blk.93.ffn_gate_inp.weight"},
        {"model.layers.5.mlp.up_proj.weight", "blk.5.ffn_up.weight"},
    };
    for (const auto& [hf_name, gguf] : cases) {
        auto m = map_hf_name(hf_name);
        ASSERT_TRUE(m.has_value()) << hf_name;
        EXPECT_EQ(m->gguf, gguf);
        EXPECT_EQ(m->expert, -1);
        EXPECT_EQ(hf_name_of(gguf), hf_name);
    }
    auto e = map_hf_name("model.layers.7.mlp.experts.127.down_proj.weight");
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->gguf, "blk.7.ffn_down_exps.weight");
    EXPECT_EQ(e->layer, 7);
    EXPECT_EQ(e->expert, 127);
    EXPECT_EQ(hf_name_of("blk.7.ffn_down_exps.weight", 127), "model.layers.7.mlp.experts.127.down_proj.weight");
    // W8A8 parameters of linears and the bias of norms map beside their weight
    auto q = map_hf_name("model.layers.1.mlp.experts.2.gate_proj.weight_scale");
    ASSERT_TRUE(q.has_value());
    EXPECT_EQ(q->gguf, "blk.1.ffn_gate_exps.weight_scale");
    EXPECT_EQ(q->expert, 2);
    EXPECT_EQ(q->part, "weight_scale");
    EXPECT_EQ(hf_name_of("blk.1.ffn_gate_exps.weight_scale", 2), "model.layers.1.mlp.experts.2.gate_proj.weight_scale");
    for (const char* part : {"input_scale", "input_offset", "deq_scale", "quant_bias", "weight_scale", "weight_offset"}) {
        const std::string hf = std::string("model.layers.3.self_attn.o_proj.") + part;
        auto m = map_hf_name(hf);
        ASSERT_TRUE(m.has_value()) << hf;
        EXPECT_EQ(m->gguf, std::string("blk.3.attn_output.") + part);
        EXPECT_EQ(hf_name_of(m->gguf), hf);
    }
    auto nb = map_hf_name("model.layers.0.input_layernorm.bias");
    ASSERT_TRUE(nb.has_value());
    EXPECT_EQ(nb->gguf, "blk.0.attn_norm.bias");
    for (const char* bad : {"model.layers.x.mlp.gate.weight", "model.layers.1.mlp.gate.bias", "model.layers..mlp.gate.weight",
                            "model.layers.1.input_layernorm.weight_scale", "model.layers.1.self_attn.q_norm.bias",
                            "model.layers.1.self_attn.q_proj.scales", "model.layers.-1.mlp.gate.weight",
                            "model.layers.1.mlp.experts.a.up_proj.weight", "transformer.h.0.attn.weight"})
        EXPECT_FALSE(map_hf_name(bad).has_value()) << bad;
}

TEST(HfCheckpoint, ExpertsInPlaceOrGatheredGiveTheSameModel) {
    TempDir tmp;
    Folder in_place, gathered;
    gathered.experts_in_place = false;
    ASSERT_TRUE(in_place.write(tmp.path("a")).ok());
    ASSERT_TRUE(gathered.write(tmp.path("b")).ok());
    auto a = Model::load(tmp.path("a"));
    ASSERT_TRUE(a.ok()) << a.error().message;
    auto b = Model::load(tmp.path("b"));
    ASSERT_TRUE(b.ok()) << b.error().message;
    const HParams& h = (*a)->hparams();
    EXPECT_EQ(h.arch, Arch::qwen3moe);
    EXPECT_EQ(h.n_embd, kD);
    EXPECT_EQ(h.n_expert, kE);
    EXPECT_EQ(h.n_ff_exp, kF);
    EXPECT_EQ(h.n_vocab, kVocab);
    EXPECT_EQ((*a)->file().n_files(), 1);
    EXPECT_EQ((*a)->file().version(), 0u);  // a view, not a GGUF file

    // in place: the stacks point into the mapped shard (gate, up and down back to back);
    // gathered: owned copies with the same bytes
    const LayerWeights& la = (*a)->layer(0);
    EXPECT_EQ(la.ffn_up_exps.data, la.ffn_gate_exps.data + la.ffn_gate_exps.n_bytes());
    EXPECT_EQ(la.ffn_down_exps.data, la.ffn_up_exps.data + la.ffn_up_exps.n_bytes());
    auto st = SafetensorsSet::open(tmp.path("b"));
    ASSERT_TRUE(st.ok());
    for (const char* kind : {"gate_proj", "up_proj", "down_proj"}) {
        const Tensor* ta = nullptr;
        const Tensor* tb = nullptr;
        const LayerWeights& lb = (*b)->layer(0);
        if (!std::strcmp(kind, "gate_proj")) ta = &la.ffn_gate_exps, tb = &lb.ffn_gate_exps;
        if (!std::strcmp(kind, "up_proj")) ta = &la.ffn_up_exps, tb = &lb.ffn_up_exps;
        if (!std::strcmp(kind, "down_proj")) ta = &la.ffn_down_exps, tb = &lb.ffn_down_exps;
        EXPECT_EQ(ta->type, DType::BF16);
        EXPECT_EQ(ta->ne[2], kE);
        ASSERT_EQ(ta->n_bytes(), tb->n_bytes());
        EXPECT_EQ(0, std::memcmp(ta->data, tb->data, ta->n_bytes())) << kind;
        for (int e = 0; e < kE; ++e) {
            const StTensor* t = st->tensor(hf::expert(0, e, kind));
            EXPECT_EQ(0, std::memcmp(tb->row(e * ta->ne[1]), t->data, t->n_bytes)) << kind << " expert " << e;
        }
    }
    // tied embeddings: the output is the embedding
    EXPECT_EQ((*a)->output().data, (*a)->token_embd().data);
    // norms read from BF16
    const uint32_t tag = (uint32_t)std::hash<std::string>{}("model.norm.weight");
    EXPECT_FLOAT_EQ((*a)->output_norm()[1], bf16_to_fp32(fp32_to_bf16((float)((tag * 7919 + 1) % 1000) / 1000.0f)));
}

TEST(HfCheckpoint, FolderAndConfigMismatchesAreClearErrors) {
    TempDir tmp;
    int n = 0;
    auto expect = [&](const Folder& f, std::vector<std::string> words, bool for_inspect = false) {
        const std::string dir = tmp.path("m" + std::to_string(n++));
        ASSERT_TRUE(f.write(dir).ok());
        const std::string err = load_error(dir, for_inspect);
        ASSERT_FALSE(err.empty()) << words[0];
        EXPECT_EQ(err.find('\n'), std::string::npos);
        for (const auto& w : words) EXPECT_NE(err.find(w), std::string::npos) << err;
    };
    Folder f;
    f.shards = 3;
    f.skip = [](const std::string& s) { return s == hf::expert(0, 2, "up_proj"); };
    expect(f, {"missing expert tensors", "model.layers.0.mlp.experts.2.up_proj.weight"});
    f = {};
    f.skip = [](const std::string& s) { return s == hf::layer(0, "self_attn.k_norm"); };
    expect(f, {"missing tensor", "model.layers.0.self_attn.k_norm.weight"});
    f = {};
    f.extra = {{"model.layers.0.self_attn.q_proj.bias", {kHeads * kHd}}, {"model.layers.0.mlp.shared_expert.weight", {4}}};
    expect(f, {"2 tensor(s) with no GGUF counterpart", "q_proj.bias"});
    f = {};
    f.extra = {{hf::layer(1, "input_layernorm"), {kD}}};
    expect(f, {"model.layers.1.input_layernorm.weight", "num_hidden_layers = 1"});
    f = {};
    f.extra = {{hf::expert(0, 4, "up_proj"), {kF, kD}}};
    expect(f, {"expert 4", "num_experts = 4"});
    f = {};
    f.config.moe_intermediate_size = 48;  // the tensors say 32
    expect(f, {"model.layers.0.mlp.experts.0.gate_proj.weight", "has shape [4, 32, 64]", "config.json implies [4, 48, 64]"});
    f = {};
    f.config.vocab_size = 60;
    expect(f, {"model.embed_tokens.weight", "vocab_size = 60"});
    f = {};
    f.dtype = StDType::F8_E4M3;
    expect(f, {"dtype F8_E4M3", "F32, F16 and BF16", "FP8"});
    f = {};
    f.dtype = StDType::I8;  // int8 without a quantization description
    expect(f, {"int8 tensor", "quant_model_description", "quantization_config"});
    f = {};
    f.config.tie_word_embeddings = false;
    expect(f, {"missing tensor", "lm_head.weight"});
    // RoPE scaling: YaRN runs; kinds the forward lacks are stored and shown, and refused for running
    f = {};
    f.config.rope_scaling = {"dynamic", 2.0, 4096};
    expect(f, {"RoPE scaling 'dynamic'", "not supported"});
    const std::string dir = tmp.path("m" + std::to_string(n - 1));
    auto m = Model::load(dir, LoadOptions::inspect());
    ASSERT_TRUE(m.ok()) << m.error().message;
    EXPECT_EQ((*m)->hparams().rope_scaling, "dynamic");
    EXPECT_FLOAT_EQ((*m)->hparams().rope_scaling_factor, 2.0f);
    EXPECT_EQ((*m)->hparams().rope_scaling_orig_ctx, 4096);
    f = {};
    f.config.rope_scaling = {"yarn", 4.0, 32768};
    ASSERT_TRUE(f.write(tmp.path("yarn")).ok());
    auto yarn = Model::load(tmp.path("yarn"));
    ASSERT_TRUE(yarn.ok()) << yarn.error().message;
    EXPECT_EQ((*yarn)->hparams().rope_freqs().freq_scale, 0.25f);
    EXPECT_EQ((*yarn)->hparams().rope_freqs().ext_factor, 1.0f);
    f = {};
    f.config.norm_topk_prob = false;
    expect(f, {"norm_topk_prob = false"});
    f = {};
    f.config.mlp_only_layers = {0};
    expect(f, {"mlp_only_layers"});
    // no config.json
    const std::string nc = tmp.path("noconfig");
    ASSERT_TRUE(Folder{}.write(nc).ok());
    std::filesystem::remove(nc + "/config.json");
    EXPECT_NE(load_error(nc).find("config.json: cannot open"), std::string::npos) << load_error(nc);
}

TEST(HfConfig, ParsesQwen3FieldsAndRejectsBadOnes) {
    const std::string qwen3_30b = R"({
      "architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 2048, "num_hidden_layers": 48,
      "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128, "intermediate_size": 6144,
      "moe_intermediate_size": 768, "num_experts": 128, "num_experts_per_tok": 8, "norm_topk_prob": true,
      "rope_theta": 1000000.0, "rope_scaling": {"rope_type": "yarn", "factor": 4.0,
      "original_max_position_embeddings": 32768}, "max_position_embeddings": 40960, "rms_norm_eps": 1e-06,
      "tie_word_embeddings": false, "vocab_size": 151936, "decoder_sparse_step": 1, "mlp_only_layers": [],
      "torch_dtype": "bfloat16"})";
    auto c = HfConfig::parse(qwen3_30b, "config.json");
    ASSERT_TRUE(c.ok()) << c.error().message;
    EXPECT_TRUE(c->is_moe());
    EXPECT_EQ(c->num_experts, 128);
    EXPECT_EQ(c->moe_intermediate_size, 768);
    EXPECT_EQ(c->rope_scaling.type, "yarn");
    EXPECT_EQ(c->rope_scaling.original_context, 32768);
    EXPECT_DOUBLE_EQ(c->rope_theta, 1e6);
    // round trip through to_json
    auto back = HfConfig::parse(c->to_json(), "x");
    ASSERT_TRUE(back.ok()) << back.error().message;
    EXPECT_EQ(back->to_json(), c->to_json());
    // dense Qwen3 with defaults (head_dim from hidden / heads, kv heads = heads)
    auto d = HfConfig::parse(R"({"architectures": ["Qwen3ForCausalLM"], "hidden_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 512, "max_position_embeddings": 64, "vocab_size": 100,
        "rope_scaling": null})", "c");
    ASSERT_TRUE(d.ok()) << d.error().message;
    EXPECT_EQ(d->head_dim, 64);
    EXPECT_EQ(d->num_key_value_heads, 4);
    EXPECT_TRUE(d->rope_scaling.type.empty());
    const std::pair<const char*, const char*> bad[] = {
        {"{", "invalid JSON"},
        {R"({"architectures": ["LlamaForCausalLM"]})", "'LlamaForCausalLM' is not supported"},
        {R"({"hidden_size": 3})", "architectures"},
        {R"({"architectures": ["Qwen3ForCausalLM"], "hidden_size": -3})", "'hidden_size' must be a positive integer"},
        {R"({"architectures": ["Qwen3ForCausalLM"], "hidden_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 4, "intermediate_size": 8, "max_position_embeddings": 8})", "missing field 'vocab_size'"},
        {R"({"architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 4, "max_position_embeddings": 8, "vocab_size": 8, "moe_intermediate_size": 8,
            "num_experts": 2, "num_experts_per_tok": 3})", "exceeds num_experts"},
        {R"({"architectures": ["Qwen3ForCausalLM"], "hidden_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 4, "intermediate_size": 8, "max_position_embeddings": 8, "vocab_size": 8,
            "rope_scaling": {"factor": 2}})", "rope_type"},
        {R"({"architectures": ["Qwen3ForCausalLM"], "hidden_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 4, "intermediate_size": 8, "max_position_embeddings": 8, "vocab_size": 8,
            "tie_word_embeddings": "yes"})", "true or false"},
    };
    for (const auto& [text, what] : bad) {
        auto r = HfConfig::parse(text, "config.json");
        ASSERT_FALSE(r.ok()) << text;
        EXPECT_NE(r.error().message.find(what), std::string::npos) << r.error().message;
    }
}

}  // namespace
}  // namespace tandem
