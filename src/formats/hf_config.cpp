#include "formats/hf_config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace tandem {
namespace {

using json = nlohmann::json;

class Reader {
public:
    Reader(const json& j, const std::string& name) : j_(j), name_(name) {}

    // A positive integer field; absent: `def` (0 = required).
    Status positive(const char* key, int64_t& out, int64_t def = 0) {
        const auto it = j_.find(key);
        if (it == j_.end() || it->is_null()) {
            if (def > 0) {
                out = def;
                return {};
            }
            return make_error("{}: missing field '{}'", name_, key);
        }
        if (!it->is_number_integer() || it->get<int64_t>() < 1)
            return make_error("{}: field '{}' must be a positive integer, found {}", name_, key, it->dump());
        out = it->get<int64_t>();
        return {};
    }
    Status number(const char* key, double& out) {
        const auto it = j_.find(key);
        if (it == j_.end() || it->is_null()) return {};
        if (!it->is_number() || !(it->get<double>() > 0))
            return make_error("{}: field '{}' must be a positive number, found {}", name_, key, it->dump());
        out = it->get<double>();
        return {};
    }
    Status boolean(const char* key, bool& out) {
        const auto it = j_.find(key);
        if (it == j_.end() || it->is_null()) return {};
        if (!it->is_boolean()) return make_error("{}: field '{}' must be true or false, found {}", name_, key, it->dump());
        out = it->get<bool>();
        return {};
    }

private:
    const json& j_;
    const std::string& name_;
};

}  // namespace

Result<HfConfig> HfConfig::load(const std::string& path) {
    std::ifstream in(path);
    if (!in) return make_error("{}: cannot open (a Hugging Face model folder needs config.json)", path);
    std::stringstream ss;
    ss << in.rdbuf();
    return parse(ss.str(), path);
}

Result<HfConfig> HfConfig::parse(const std::string& text, const std::string& name) {
    const json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return make_error("{}: invalid JSON", name);
    HfConfig c;
    const auto archs = j.find("architectures");
    if (archs == j.end() || !archs->is_array() || archs->empty() || !(*archs)[0].is_string())
        return make_error("{}: missing field 'architectures'", name);
    c.architecture = (*archs)[0].get<std::string>();
    if (c.architecture != "Qwen3MoeForCausalLM" && c.architecture != "Qwen3ForCausalLM")
        return make_error("{}: architecture '{}' is not supported (supported: Qwen3MoeForCausalLM, Qwen3ForCausalLM)",
                          name, c.architecture);

    Reader r(j, name);
    TANDEM_TRY(r.positive("hidden_size", c.hidden_size));
    TANDEM_TRY(r.positive("num_hidden_layers", c.num_hidden_layers));
    TANDEM_TRY(r.positive("num_attention_heads", c.num_attention_heads));
    TANDEM_TRY(r.positive("num_key_value_heads", c.num_key_value_heads, c.num_attention_heads));
    TANDEM_TRY(r.positive("head_dim", c.head_dim, std::max<int64_t>(1, c.hidden_size / c.num_attention_heads)));
    TANDEM_TRY(r.positive("max_position_embeddings", c.max_position_embeddings));
    TANDEM_TRY(r.positive("vocab_size", c.vocab_size));
    TANDEM_TRY(r.number("rope_theta", c.rope_theta));
    TANDEM_TRY(r.number("rms_norm_eps", c.rms_norm_eps));
    TANDEM_TRY(r.boolean("tie_word_embeddings", c.tie_word_embeddings));
    if (c.is_moe()) {
        TANDEM_TRY(r.positive("moe_intermediate_size", c.moe_intermediate_size));
        TANDEM_TRY(r.positive("num_experts", c.num_experts));
        TANDEM_TRY(r.positive("num_experts_per_tok", c.num_experts_per_tok));
        TANDEM_TRY(r.boolean("norm_topk_prob", c.norm_topk_prob));
        TANDEM_TRY(r.positive("decoder_sparse_step", c.decoder_sparse_step, 1));
        if (const auto it = j.find("mlp_only_layers"); it != j.end() && !it->is_null()) {
            if (!it->is_array()) return make_error("{}: field 'mlp_only_layers' must be a list of layer indices", name);
            for (const json& v : *it) {
                if (!v.is_number_integer()) return make_error("{}: field 'mlp_only_layers' must be a list of layer indices", name);
                c.mlp_only_layers.push_back(v.get<int64_t>());
            }
        }
        if (c.num_experts_per_tok > c.num_experts)
            return make_error("{}: num_experts_per_tok ({}) exceeds num_experts ({})", name, c.num_experts_per_tok,
                              c.num_experts);
        // intermediate_size is the width of dense layers, which the forward does not mix in
        if (const auto it = j.find("intermediate_size"); it != j.end() && it->is_number_integer())
            c.intermediate_size = it->get<int64_t>();
    } else {
        TANDEM_TRY(r.positive("intermediate_size", c.intermediate_size));
    }

    if (const auto it = j.find("rope_scaling"); it != j.end() && !it->is_null()) {
        if (!it->is_object()) return make_error("{}: field 'rope_scaling' must be an object or null", name);
        const json& rs = *it;
        const char* type_key = rs.contains("rope_type") ? "rope_type" : "type";
        if (!rs.contains(type_key) || !rs[type_key].is_string())
            return make_error("{}: rope_scaling has no 'rope_type'", name);
        c.rope_scaling.type = rs[type_key].get<std::string>();
        Reader rr(rs, name);
        TANDEM_TRY(rr.number("factor", c.rope_scaling.factor));
        if (rs.contains("original_max_position_embeddings"))
            TANDEM_TRY(rr.positive("original_max_position_embeddings", c.rope_scaling.original_context));
        if (c.rope_scaling.type == "default") c.rope_scaling = {};
    }
    if (c.hidden_size % c.num_attention_heads != 0 && !j.contains("head_dim"))
        return make_error("{}: hidden_size is not a multiple of num_attention_heads and head_dim is not given", name);
    return c;
}

std::string HfConfig::to_json() const {
    json j;
    j["architectures"] = {architecture};
    j["model_type"] = is_moe() ? "qwen3_moe" : "qwen3";
    j["hidden_size"] = hidden_size;
    j["num_hidden_layers"] = num_hidden_layers;
    j["num_attention_heads"] = num_attention_heads;
    j["num_key_value_heads"] = num_key_value_heads;
    j["head_dim"] = head_dim;
    j["intermediate_size"] = intermediate_size;
    if (is_moe()) {
        j["moe_intermediate_size"] = moe_intermediate_size;
        j["num_experts"] = num_experts;
        j["num_experts_per_tok"] = num_experts_per_tok;
        j["norm_topk_prob"] = norm_topk_prob;
        j["decoder_sparse_step"] = decoder_sparse_step;
        j["mlp_only_layers"] = mlp_only_layers;
    }
    j["max_position_embeddings"] = max_position_embeddings;
    j["vocab_size"] = vocab_size;
    j["rope_theta"] = rope_theta;
    j["rms_norm_eps"] = rms_norm_eps;
    j["tie_word_embeddings"] = tie_word_embeddings;
    if (rope_scaling.type.empty()) {
        j["rope_scaling"] = nullptr;
    } else {
        j["rope_scaling"] = {{"rope_type", rope_scaling.type}, {"factor", rope_scaling.factor}};
        if (rope_scaling.original_context > 0)
            j["rope_scaling"]["original_max_position_embeddings"] = rope_scaling.original_context;
    }
    j["hidden_act"] = "silu";
    j["torch_dtype"] = "bfloat16";
    return j.dump(2) + "\n";
}

}  // namespace tandem
