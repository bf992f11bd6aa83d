#include "model/hparams.h"

#include <algorithm>
#include <cmath>

#include "formats/gguf.h"

namespace tandem {

std::string_view arch_name(Arch a) { return a == Arch::qwen3moe ? "qwen3moe" : "qwen3"; }

namespace {

Result<int64_t> get_int(const GgufFile& f, const std::string& k, bool required, int64_t def) {
    const GgufValue* v = f.find(k);
    if (!v) {
        if (required) return make_error("{}: missing metadata '{}'", f.path(), k);
        return def;
    }
    if (!v->is_integer())
        return make_error("{}: metadata '{}' must be an integer, found {}", f.path(), k, gguf_type_name(v->type));
    if (v->as_int() < 0) return make_error("{}: metadata '{}' is negative ({})", f.path(), k, v->as_int());
    return v->as_int();
}

Result<float> get_float(const GgufFile& f, const std::string& k, bool required, float def) {
    const GgufValue* v = f.find(k);
    if (!v) {
        if (required) return make_error("{}: missing metadata '{}'", f.path(), k);
        return def;
    }
    if (!v->is_float() && !v->is_integer())
        return make_error("{}: metadata '{}' must be a number, found {}", f.path(), k, gguf_type_name(v->type));
    return (float)v->as_double();
}

}  // namespace

Result<HParams> HParams::from_gguf(const GgufFile& f) {
    HParams h;
    const GgufValue* a = f.find(key::kArchitecture);
    if (!a || a->type != GgufType::STRING) return make_error("{}: missing metadata '{}'", f.path(), key::kArchitecture);
    if (a->str == "qwen3moe") h.arch = Arch::qwen3moe;
    else if (a->str == "qwen3") h.arch = Arch::qwen3;
    else return make_error("{}: architecture '{}' is not supported (supported: qwen3moe, qwen3)", f.path(), a->str);
    const std::string arch = a->str;
    auto k = [&](const char* suffix) { return key::arch_key(arch, suffix); };

    TANDEM_ASSIGN(h.n_ctx_train, get_int(f, k(key::kContextLength), true, 0));
    TANDEM_ASSIGN(h.n_embd, get_int(f, k(key::kEmbeddingLength), true, 0));
    TANDEM_ASSIGN(h.n_layer, get_int(f, k(key::kBlockCount), true, 0));
    TANDEM_ASSIGN(h.n_head, get_int(f, k(key::kHeadCount), true, 0));
    TANDEM_ASSIGN(h.n_head_kv, get_int(f, k(key::kHeadCountKv), false, h.n_head));
    const int64_t default_hd = h.n_head > 0 ? h.n_embd / h.n_head : 0;
    TANDEM_ASSIGN(h.head_dim, get_int(f, k(key::kKeyLength), false, default_hd));
    TANDEM_ASSIGN(const int64_t v_dim, get_int(f, k(key::kValueLength), false, h.head_dim));
    TANDEM_ASSIGN(h.rms_eps, get_float(f, k(key::kRmsEps), true, 0));
    TANDEM_ASSIGN(h.rope_base, get_float(f, k(key::kRopeFreqBase), false, 10000.0f));
    if (h.arch == Arch::qwen3moe) {
        TANDEM_ASSIGN(h.n_expert, get_int(f, k(key::kExpertCount), true, 0));
        TANDEM_ASSIGN(h.n_expert_used, get_int(f, k(key::kExpertUsedCount), true, 0));
        TANDEM_ASSIGN(h.n_ff_exp, get_int(f, k(key::kExpertFeedForwardLength), false, 0));
        if (const GgufValue* v = f.find(k(key::kExpertWeightsNorm))) {
            if (v->type != GgufType::BOOL)
                return make_error("{}: metadata '{}' must be a bool", f.path(), k(key::kExpertWeightsNorm));
            h.expert_weights_norm = v->u != 0;
        }
    } else {
        TANDEM_ASSIGN(h.n_ff, get_int(f, k(key::kFeedForwardLength), true, 0));
    }

    if (const GgufValue* v = f.find(k(key::kRopeScalingType))) {
        if (v->type != GgufType::STRING)
            return make_error("{}: metadata '{}' must be a string", f.path(), k(key::kRopeScalingType));
        if (v->str != "none") h.rope_scaling = v->str;
        TANDEM_ASSIGN(h.rope_scaling_factor, get_float(f, k(key::kRopeScalingFactor), false, 1.0f));
        TANDEM_ASSIGN(h.rope_scaling_orig_ctx, get_int(f, k(key::kRopeScalingOrigCtx), false, 0));
    }

    auto bad = [&](const char* what) { return make_error("{}: invalid hyper-parameters: {}", f.path(), what); };
    if (h.n_ctx_train < 1) return bad("context_length must be > 0");
    if (h.n_embd < 1 || h.n_layer < 1 || h.n_head < 1 || h.n_head_kv < 1 || h.head_dim < 1)
        return bad("embedding_length, block_count, head counts and key_length must be > 0");
    if (h.n_head % h.n_head_kv != 0) return bad("head_count must be a multiple of head_count_kv");
    if (v_dim != h.head_dim) return bad("value_length must equal key_length");
    if (h.head_dim % 2 != 0) return bad("key_length must be even for RoPE");
    if (!(h.rms_eps > 0.0f) || !(h.rope_base > 0.0f)) return bad("rms epsilon and rope base must be > 0");
    if (h.arch == Arch::qwen3moe) {
        if (h.n_expert < 1 || h.n_expert_used < 1) return bad("expert_count and expert_used_count must be > 0");
        if (h.n_expert_used > h.n_expert) return bad("expert_used_count exceeds expert_count");
    }
    return h;
}

Status HParams::check_forward_support(const std::string& path) const {
    if (!rope_scaling.empty()) {
        if (rope_scaling != "yarn" && rope_scaling != "linear")
            return make_error("{}: RoPE scaling '{}' is not supported (yarn and linear are; without rope_scaling in "
                              "config.json the model runs unscaled)",
                              path, rope_scaling);
        if (!(rope_scaling_factor >= 1.0f) || !std::isfinite(rope_scaling_factor))
            return make_error("{}: RoPE scaling factor {} (must be >= 1)", path, rope_scaling_factor);
    }
    if (arch == Arch::qwen3moe && !expert_weights_norm)
        return make_error("{}: routers without top-k renormalisation (norm_topk_prob = false) are not supported yet", path);
    return {};
}

int64_t HParams::max_context() const {
    if (rope_scaling != "yarn" && rope_scaling != "linear") return n_ctx_train;
    const int64_t orig = rope_scaling_orig_ctx > 0 ? rope_scaling_orig_ctx : n_ctx_train;
    return std::max(n_ctx_train, (int64_t)((double)rope_scaling_factor * (double)orig));
}

ref::RopeFreqs HParams::rope_freqs() const {
    if (rope_scaling == "yarn")
        return ref::RopeFreqs::yarn(head_dim, rope_base, rope_scaling_factor,
                                    rope_scaling_orig_ctx > 0 ? rope_scaling_orig_ctx : n_ctx_train);
    if (rope_scaling == "linear") return ref::RopeFreqs::linear(rope_base, rope_scaling_factor);
    return ref::RopeFreqs::plain(rope_base);
}

}  // namespace tandem
