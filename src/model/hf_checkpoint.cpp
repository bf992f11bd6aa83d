#include "model/hf_checkpoint.h"

#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/log.h"
#include "formats/safetensors.h"
#include "model/arch.h"
#include "model/hf_quant.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) { return s.size() >= p.size() && s.substr(s.size() - p.size()) == p; }

// "12.rest" -> 12, s = "rest"; false unless plain decimal digits followed by '.'
bool take_index(std::string_view& s, int& out) {
    const size_t dot = s.find('.');
    if (dot == 0 || dot == std::string_view::npos || dot > 6) return false;
    for (size_t i = 0; i < dot; ++i)
        if (s[i] < '0' || s[i] > '9') return false;
    std::from_chars(s.data(), s.data() + dot, out);
    s.remove_prefix(dot + 1);
    return true;
}

std::string list_some(const std::vector<std::string>& v, size_t n = 4) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < n; ++i) s += (i ? ", " : "") + v[i];
    if (v.size() > n) s += fmt::format(", ... ({} in all)", v.size());
    return s;
}

class ViewBuilder {
public:
    ViewBuilder(const SafetensorsSet& st, bool copy_stacks) : st_(st), copy_stacks_(copy_stacks) {}

    std::string source(const StTensor& t) const {
        return fmt::format("{}: tensor '{}'", fs::path(st_.files()[(size_t)t.file_index]).filename().string(), t.name);
    }

    Result<DType> weight_type(const StTensor& t) const {
        const auto d = st_to_dtype(t.dtype);
        if (!d)
            return make_error("{} has dtype {}: Tandem loads F32, F16 and BF16 tensors, and int8 W8A8 ones with their "
                              "parameters (FP8 checkpoints are not supported)",
                              source(t), st_dtype_name(t.dtype));
        return *d;
    }

    // One tensor as is (ggml order: the shape reversed).
    Result<GgufTensorInfo> single(const StTensor& t, const std::string& gguf_name) {
        GgufTensorInfo g;
        g.name = gguf_name;
        TANDEM_ASSIGN(g.type, weight_type(t));
        if (t.shape.empty() || t.shape.size() > 3) return make_error("{} has {} dimensions", source(t), t.shape.size());
        g.ne.assign(t.shape.rbegin(), t.shape.rend());
        g.n_bytes = t.n_bytes;
        g.file_index = t.file_index;
        g.source = source(t);
        g.data = t.data;
        if ((uintptr_t)t.data % st_dtype_size(t.dtype) != 0) g.data = copy({&t}, t.n_bytes);  // misaligned: copy
        return g;
    }

    // Per-expert 2-D tensors [out, in] as one stack (ggml ne = [in, out, n_expert]).
    Result<GgufTensorInfo> stack(const std::vector<const StTensor*>& experts, const std::string& gguf_name) {
        const StTensor& e0 = *experts[0];
        TANDEM_ASSIGN(GgufTensorInfo g, single(e0, gguf_name));
        // weights [out, in]; their W8A8 parameters [out, 1] or [out]
        if (e0.shape.size() != 2 && e0.shape.size() != 1)
            return make_error("{} must be 2-D, has shape [{}]", source(e0), fmt::join(e0.shape, ", "));
        bool in_place = g.data == e0.data;
        for (size_t e = 1; e < experts.size(); ++e) {
            const StTensor& t = *experts[e];
            if (t.dtype != e0.dtype || t.shape != e0.shape)
                return make_error("{} is {} [{}], but expert 0 is {} [{}]", source(t), st_dtype_name(t.dtype),
                                  fmt::join(t.shape, ", "), st_dtype_name(e0.dtype), fmt::join(e0.shape, ", "));
            in_place = in_place && t.file_index == e0.file_index && t.data == e0.data + e * e0.n_bytes;
        }
        g.ne.push_back((int64_t)experts.size());
        g.n_bytes = e0.n_bytes * experts.size();
        g.source = fmt::format("{} (expert 0 of {})", source(e0), experts.size());
        if (!in_place) g.data = copy_stacks_ ? copy(experts, e0.n_bytes) : nullptr;
        return g;
    }

    std::vector<std::shared_ptr<const void>> take_owned() { return std::move(owned_); }

private:
    const uint8_t* copy(const std::vector<const StTensor*>& parts, uint64_t part_bytes) {
        std::shared_ptr<uint8_t[]> buf(new uint8_t[part_bytes * parts.size()]);
        for (size_t i = 0; i < parts.size(); ++i) std::memcpy(buf.get() + i * part_bytes, parts[i]->data, part_bytes);
        owned_.push_back(buf);
        return buf.get();
    }

    const SafetensorsSet& st_;
    bool copy_stacks_;
    std::vector<std::shared_ptr<const void>> owned_;  // stacks and realigned tensors
};

Result<std::string> read_text(const std::string& path) {
    std::ifstream in(path);
    if (!in) return make_error("{}: cannot open", path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace

namespace {
bool is_quant_part(std::string_view part) {
    for (const char* q : tn::kQuantParts)
        if (part == q) return true;
    return false;
}
// The parts a module may have besides "weight": linears their W8A8 parameters, norms a bias.
bool part_allowed(std::string_view gguf_suffix, std::string_view part) {
    if (part == "weight") return true;
    const bool norm = gguf_suffix == tn::kAttnNorm || gguf_suffix == tn::kFfnNorm;
    const bool linear = !norm && gguf_suffix != tn::kAttnQNorm && gguf_suffix != tn::kAttnKNorm;
    return (norm && part == tn::kBias) || (linear && is_quant_part(part));
}
}  // namespace

std::optional<HfNameMapping> map_hf_name(std::string_view s) {
    for (const auto& p : hf::kGlobal)
        if (s == p.hf) return HfNameMapping{p.gguf};
    if (!starts_with(s, hf::kLayerPrefix)) return std::nullopt;
    const size_t dot = s.rfind('.');
    if (dot == std::string_view::npos) return std::nullopt;
    HfNameMapping m;
    m.part = std::string(s.substr(dot + 1));
    s = s.substr(std::strlen(hf::kLayerPrefix), dot - std::strlen(hf::kLayerPrefix));
    if (!take_index(s, m.layer)) return std::nullopt;
    auto set = [&](const char* gguf_suffix) {
        if (!part_allowed(gguf_suffix, m.part)) return false;
        m.gguf = m.part == "weight" ? tn::layer(m.layer, gguf_suffix) : tn::layer_part(m.layer, gguf_suffix, m.part);
        return true;
    };
    if (starts_with(s, hf::kExpertsInfix)) {
        s.remove_prefix(std::strlen(hf::kExpertsInfix));
        if (!take_index(s, m.expert)) return std::nullopt;
        for (const auto& p : hf::kExpert)
            if (s == p.hf) return set(p.gguf) ? std::optional(m) : std::nullopt;
        return std::nullopt;
    }
    for (const auto& p : hf::kLayer)
        if (s == p.hf) return set(p.gguf) ? std::optional(m) : std::nullopt;
    return std::nullopt;
}

std::string hf_name_of(std::string_view g, int expert) {
    for (const auto& p : hf::kGlobal)
        if (g == p.gguf) return expert < 0 ? p.hf : "";
    std::string_view s = g;
    int il = 0;
    if (!starts_with(s, "blk.")) return {};
    s.remove_prefix(4);
    if (!take_index(s, il)) return {};
    const size_t dot = s.rfind('.');
    if (dot == std::string_view::npos) return {};
    const std::string_view part = s.substr(dot + 1);
    s = s.substr(0, dot);
    if (expert >= 0) {
        for (const auto& p : hf::kExpert)
            if (s == p.gguf && part_allowed(p.gguf, part)) return hf::expert(il, expert, p.hf, part);
        return {};
    }
    for (const auto& p : hf::kLayer)
        if (s == p.gguf && part_allowed(p.gguf, part)) return hf::layer(il, p.hf, part);
    return {};
}

GgufMetadata hf_config_metadata(const HfConfig& c, const std::string& name) {
    const std::string arch = c.is_moe() ? "qwen3moe" : "qwen3";
    auto ak = [&](const char* k) { return key::arch_key(arch, k); };
    GgufMetadata kv;
    kv.emplace_back(key::kArchitecture, GgufValue::of_string(arch));
    kv.emplace_back(key::kName, GgufValue::of_string(name));
    kv.emplace_back(ak(key::kContextLength), GgufValue::of_u32((uint32_t)c.max_position_embeddings));
    kv.emplace_back(ak(key::kEmbeddingLength), GgufValue::of_u32((uint32_t)c.hidden_size));
    kv.emplace_back(ak(key::kBlockCount), GgufValue::of_u32((uint32_t)c.num_hidden_layers));
    if (c.intermediate_size > 0)
        kv.emplace_back(ak(key::kFeedForwardLength), GgufValue::of_u32((uint32_t)c.intermediate_size));
    kv.emplace_back(ak(key::kHeadCount), GgufValue::of_u32((uint32_t)c.num_attention_heads));
    kv.emplace_back(ak(key::kHeadCountKv), GgufValue::of_u32((uint32_t)c.num_key_value_heads));
    kv.emplace_back(ak(key::kKeyLength), GgufValue::of_u32((uint32_t)c.head_dim));
    kv.emplace_back(ak(key::kValueLength), GgufValue::of_u32((uint32_t)c.head_dim));
    kv.emplace_back(ak(key::kRmsEps), GgufValue::of_f32((float)c.rms_norm_eps));
    kv.emplace_back(ak(key::kRopeFreqBase), GgufValue::of_f32((float)c.rope_theta));
    if (c.is_moe()) {
        kv.emplace_back(ak(key::kExpertCount), GgufValue::of_u32((uint32_t)c.num_experts));
        kv.emplace_back(ak(key::kExpertUsedCount), GgufValue::of_u32((uint32_t)c.num_experts_per_tok));
        kv.emplace_back(ak(key::kExpertFeedForwardLength), GgufValue::of_u32((uint32_t)c.moe_intermediate_size));
        kv.emplace_back(ak(key::kExpertWeightsNorm), GgufValue::of_bool(c.norm_topk_prob));
    }
    if (!c.rope_scaling.type.empty()) {
        kv.emplace_back(ak(key::kRopeScalingType), GgufValue::of_string(c.rope_scaling.type));
        kv.emplace_back(ak(key::kRopeScalingFactor), GgufValue::of_f32((float)c.rope_scaling.factor));
        if (c.rope_scaling.original_context > 0)
            kv.emplace_back(ak(key::kRopeScalingOrigCtx), GgufValue::of_u32((uint32_t)c.rope_scaling.original_context));
    }
    return kv;
}

GgufMetadata tokenizer_metadata(const HfTokenizer& tok) {
    GgufMetadata kv;
    kv.emplace_back(key::kTokModel, GgufValue::of_string("gpt2"));
    kv.emplace_back(key::kTokPre, GgufValue::of_string(tok.pre));
    kv.emplace_back(key::kTokTokens, GgufValue::of_strings(tok.tokens));
    kv.emplace_back(key::kTokTypes, GgufValue::of_i32_array(tok.types));
    kv.emplace_back(key::kTokMerges, GgufValue::of_strings(tok.merges));
    kv.emplace_back(key::kTokEos, GgufValue::of_u32((uint32_t)tok.eos_id));
    kv.emplace_back(key::kTokPad, GgufValue::of_u32((uint32_t)tok.pad_id));
    kv.emplace_back(key::kTokBos, GgufValue::of_u32((uint32_t)tok.bos_id));
    kv.emplace_back(key::kTokAddBos, GgufValue::of_bool(tok.add_bos));
    if (!tok.chat_template.empty()) kv.emplace_back(key::kChatTemplate, GgufValue::of_string(tok.chat_template));
    return kv;
}

Result<GgufFile> open_hf_checkpoint(const std::string& dir, ViewFor purpose) {
    const fs::path d(dir);
    const std::string cfg_path = (d / "config.json").string();
    TANDEM_ASSIGN(HfConfig cfg, HfConfig::load(cfg_path));
    if (cfg.is_moe() && (cfg.decoder_sparse_step != 1 || !cfg.mlp_only_layers.empty()))
        return make_error("{}: dense layers inside a MoE model (decoder_sparse_step, mlp_only_layers) are not supported",
                          cfg_path);
    const std::string name = d.filename().empty() ? d.parent_path().filename().string() : d.filename().string();
    GgufMetadata kv = hf_config_metadata(cfg, name);
    std::error_code ec;
    if (fs::exists(d / "tokenizer.json", ec) || fs::exists(d / "tokenizer_config.json", ec)) {
        TANDEM_ASSIGN(HfTokenizer tok, HfTokenizer::load(dir));
        if (tok.chat_template.empty() && fs::exists(d / "chat_template.jinja", ec)) {
            TANDEM_ASSIGN(tok.chat_template, read_text((d / "chat_template.jinja").string()));
        }
        if (Status s = tok.pad_to(cfg.vocab_size); !s)
            return make_error("{}: {} (vocab_size = {} in config.json)", dir, s.error().message, cfg.vocab_size);
        for (auto& p : tokenizer_metadata(tok)) kv.push_back(std::move(p));
    } else if (purpose != ViewFor::layout) {
        log::warn("{}: no tokenizer.json: token ids only", dir);
    }
    if (purpose == ViewFor::tokenizer) return GgufFile::from_parts(dir, "Hugging Face safetensors", std::move(kv), {}, {}, 0);
    TANDEM_ASSIGN(SafetensorsSet st, SafetensorsSet::open(dir));
    TANDEM_ASSIGN(const HfQuant quant, read_hf_quantization(dir, st));
    if (quant.format != HfQuantFormat::none)
        kv.emplace_back(key::kTandemQuantization, GgufValue::of_string(hf_quant_format_name(quant.format)));

    // map every tensor; per-expert ones are gathered by stack
    ViewBuilder vb(st, purpose == ViewFor::compute);
    std::vector<GgufTensorInfo> tensors;
    std::map<std::string, std::vector<const StTensor*>> stacks;  // GGUF stack name -> expert e at [e]
    std::vector<std::string> unknown;
    const StTensor* embd = nullptr;
    for (const StTensor& t : st.tensors()) {
        const auto m = map_hf_name(t.name);
        if (!m || (m->expert >= 0 && !cfg.is_moe())) {
            if (!ends_with(t.name, hf::kIgnoredSuffix)) unknown.push_back(t.name);
            continue;
        }
        if (m->layer >= cfg.num_hidden_layers)
            return make_error("{} is for layer {}, but {} has num_hidden_layers = {}", vb.source(t), m->layer, cfg_path,
                              cfg.num_hidden_layers);
        if (m->gguf == tn::kOutput && cfg.tie_word_embeddings) continue;  // tied: the embedding is the output
        if (m->gguf == tn::kTokenEmbd) embd = &t;
        if (m->expert >= 0) {
            if (m->expert >= cfg.num_experts)
                return make_error("{} is for expert {}, but {} has num_experts = {}", vb.source(t), m->expert, cfg_path,
                                  cfg.num_experts);
            auto& s = stacks[m->gguf];
            s.resize((size_t)cfg.num_experts, nullptr);
            s[(size_t)m->expert] = &t;
            continue;
        }
        TANDEM_ASSIGN(GgufTensorInfo g, vb.single(t, m->gguf));
        tensors.push_back(std::move(g));
    }
    if (!unknown.empty())
        return make_error("{}: {} tensor(s) with no GGUF counterpart (not a plain Qwen3 checkpoint?): {}", dir,
                          unknown.size(), list_some(unknown));
    std::vector<std::string> missing;
    for (auto& [name, experts] : stacks) {
        for (size_t e = 0; e < experts.size(); ++e)
            if (!experts[e]) missing.push_back(hf_name_of(name, (int)e));
        if (!missing.empty()) continue;
        TANDEM_ASSIGN(GgufTensorInfo g, vb.stack(experts, name));
        tensors.push_back(std::move(g));
    }
    if (!missing.empty()) return make_error("{}: missing expert tensors: {}", dir, list_some(missing));
    if (!embd) return make_error("{}: missing tensor '{}'", dir, hf::kEmbedTokens);
    if (!cfg.tie_word_embeddings && !st.tensor(hf::kLmHead))
        return make_error("{}: missing tensor '{}' (config.json has tie_word_embeddings = false)", dir, hf::kLmHead);
    if (embd->shape.size() != 2 || embd->shape[0] != cfg.vocab_size)
        return make_error("{} has shape [{}], but {} has vocab_size = {}", vb.source(*embd), fmt::join(embd->shape, ", "),
                          cfg_path, cfg.vocab_size);

    std::vector<std::shared_ptr<const void>> keep = vb.take_owned();
    for (const auto& m : st.mappings()) keep.push_back(m);
    log::debug("{}: {} safetensors file(s), {} tensors", dir, st.files().size(), tensors.size());
    return GgufFile::from_parts(dir, "Hugging Face safetensors", std::move(kv), std::move(tensors), std::move(keep),
                                (int)st.files().size());
}

}  // namespace tandem
