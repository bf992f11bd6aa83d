#include "model/merge.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/log.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "model/arch.h"
#include "model/hf_quant.h"
#include "model/hparams.h"
#include "model/quant_mix.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kManifestFormat = "tandem-merged-checkpoint";
constexpr uint64_t kShardBytes = 5ull << 30;  // dense safetensors shard size, as transformers' default

bool is_expert_stack(const std::string& gguf_name) {
    int64_t il = 0;
    const auto role = tensor_role(gguf_name, il);
    return role && (gguf_name.find("_exps.") != std::string::npos);
}

// An expert stack or one of its companions (W8A8 parameters): "blk.N.ffn_{gate,up,down}_exps.*"
bool is_expert_part(const std::string& gguf_name) {
    return gguf_name.rfind("blk.", 0) == 0 && gguf_name.find("_exps.") != std::string::npos;
}

bool is_hf_expert(const std::string& hf_name) {
    return hf_name.rfind(hf::kLayerPrefix, 0) == 0 && hf_name.find(std::string(".") + hf::kExpertsInfix) != std::string::npos;
}

// "a, b, c, ... (N in all)"
std::string list_names(const std::vector<std::string>& v, size_t n = 8) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < n; ++i) s += (i ? ", " : "") + v[i];
    if (v.size() > n) s += fmt::format(", ... ({} in all)", v.size());
    return s;
}

std::string shape_str(const std::vector<int64_t>& numpy_shape) { return fmt::format("[{}]", fmt::join(numpy_shape, ", ")); }

// The ggml shape (ne) of a GGUF tensor as the numpy shape safetensors uses.
std::vector<int64_t> numpy_shape(const GgufTensorInfo& t) {
    std::vector<int64_t> ne = t.ne;
    while (ne.size() > 1 && ne.back() == 1) ne.pop_back();
    return {ne.rbegin(), ne.rend()};
}

// Every way the two checkpoints disagree.
std::vector<std::string> find_disagreements(const HfConfig& cfg, const SafetensorsSet& st, const GgufFile& g,
                                            const std::string& gguf_path) {
    std::vector<std::string> out;
    if (!cfg.is_moe()) out.push_back("config.json is not a MoE model (no num_experts): nothing to take from the GGUF");
    auto hp = HParams::from_gguf(g);
    if (!hp) {
        out.push_back(hp.error().message);
        return out;
    }
    const auto check = [&](const char* what, int64_t st_v, int64_t gguf_v) {
        if (st_v != gguf_v) out.push_back(fmt::format("{}: safetensors {} vs GGUF {}", what, st_v, gguf_v));
    };
    check("layer count", cfg.num_hidden_layers, hp->n_layer);
    check("expert count", cfg.num_experts, hp->n_expert);
    check("experts per token", cfg.num_experts_per_tok, hp->n_expert_used);
    check("hidden size", cfg.hidden_size, hp->n_embd);
    check("attention heads", cfg.num_attention_heads, hp->n_head);
    check("key/value heads", cfg.num_key_value_heads, hp->n_head_kv);
    check("head dim", cfg.head_dim, hp->head_dim);
    if (hp->n_ff_exp > 0) check("expert FFN width", cfg.moe_intermediate_size, hp->n_ff_exp);

    // the expert stacks the GGUF must hold, in the shapes config.json implies
    const int64_t D = cfg.hidden_size, F = cfg.moe_intermediate_size, E = cfg.num_experts;
    std::vector<std::string> missing_gguf;
    for (int il = 0; il < (int)cfg.num_hidden_layers && cfg.is_moe(); ++il)
        for (const auto& p : hf::kExpert) {
            const std::string name = tn::layer(il, p.gguf);
            const GgufTensorInfo* t = g.tensor(name);
            if (!t) {
                missing_gguf.push_back(name);
                continue;
            }
            const std::vector<int64_t> want = std::strcmp(p.gguf, tn::kFfnDownExps) == 0 ? std::vector<int64_t>{E, D, F}
                                                                                           : std::vector<int64_t>{E, F, D};
            if (numpy_shape(*t) != want)
                out.push_back(fmt::format("GGUF tensor '{}' has shape {}, config.json implies {}", name,
                                          shape_str(numpy_shape(*t)), shape_str(want)));
        }
    if (!missing_gguf.empty())
        out.push_back(fmt::format("{} lacks {} expert tensor(s): {}", gguf_path, missing_gguf.size(), list_names(missing_gguf)));

    // the non-expert tensors the safetensors checkpoint must hold
    std::vector<std::string> missing_st;
    auto need = [&](const std::string& hf_name) {
        if (!st.tensor(hf_name)) missing_st.push_back(hf_name);
    };
    need(hf::kEmbedTokens);
    need("model.norm.weight");
    if (!cfg.tie_word_embeddings) need(hf::kLmHead);
    for (int il = 0; il < (int)cfg.num_hidden_layers; ++il)
        for (const auto& p : hf::kLayer) {
            const std::string_view g_name = p.gguf;
            if (g_name == tn::kFfnGate || g_name == tn::kFfnUp || g_name == tn::kFfnDown) continue;  // dense FFN
            need(hf::layer(il, p.hf));
        }
    if (!missing_st.empty())
        out.push_back(fmt::format("safetensors checkpoint lacks {} tensor(s): {}", missing_st.size(), list_names(missing_st)));

    // the tensors both hold must have the same shapes (the same model)
    for (const StTensor& t : st.tensors()) {
        const auto m = map_hf_name(t.name);
        if (!m || m->expert >= 0) continue;
        const GgufTensorInfo* gt = g.tensor(m->gguf);
        if (gt && numpy_shape(*gt) != t.shape)
            out.push_back(fmt::format("'{}' has shape {} in the safetensors checkpoint, but its GGUF counterpart '{}' has {}",
                                      t.name, shape_str(t.shape), m->gguf, shape_str(numpy_shape(*gt))));
    }
    return out;
}

Status write_text(const fs::path& p, const std::string& text) {
    std::ofstream out(p);
    out << text;
    if (!out) return make_error("{}: write failed", p.string());
    return {};
}

Result<std::string> read_text(const fs::path& p) {
    std::ifstream in(p);
    if (!in) return make_error("{}: cannot open", p.string());
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace

Status merge_checkpoints(const std::string& st_dir, const std::string& gguf_path, const std::string& out_dir,
                         const std::function<void(size_t, size_t)>& progress) {
    const fs::path src(st_dir), out(out_dir);
    std::error_code ec;
    if (!fs::is_directory(src, ec)) return make_error("{}: not a folder (--safetensors wants a checkpoint folder)", st_dir);
    TANDEM_ASSIGN(HfConfig cfg, HfConfig::load((src / "config.json").string()));
    TANDEM_ASSIGN(SafetensorsSet st, SafetensorsSet::open(st_dir));
    TANDEM_ASSIGN(GgufFile g, GgufFile::open(gguf_path));

    std::vector<std::string> bad = find_disagreements(cfg, st, g, gguf_path);
    // dense parts the loader cannot take yet: refuse now rather than after copying the experts
    std::vector<std::string> unloadable;
    for (const StTensor& t : st.tensors()) {
        if (is_hf_expert(t.name) || t.name.ends_with(hf::kIgnoredSuffix)) continue;
        if (!map_hf_name(t.name) || !st_to_dtype(t.dtype))
            unloadable.push_back(fmt::format("{} ({})", t.name, st_dtype_name(t.dtype)));
    }
    if (!unloadable.empty())
        bad.push_back(fmt::format("{} dense tensor(s) that Tandem cannot load: {}", unloadable.size(),
                                  list_names(unloadable)));
    if (auto q = read_hf_quantization(st_dir, st); !q) bad.push_back(q.error().message);
    if (!bad.empty())
        return make_error("cannot merge {} and {}: {} disagreement(s): {}", st_dir, gguf_path, bad.size(),
                          fmt::join(bad, "; "));

    if (fs::exists(out / kMergeManifest, ec) || fs::exists(out / "config.json", ec))
        return make_error("{}: already holds a model; choose an empty or new folder", out_dir);
    fs::create_directories(out, ec);
    if (!fs::is_directory(out, ec)) return make_error("{}: cannot create folder", out_dir);

    // config, tokenizer and the other small files: as they are (the safetensors index is rewritten)
    for (const auto& entry : fs::directory_iterator(src, ec)) {
        const std::string name = entry.path().filename().string();
        if (!entry.is_regular_file() || name.ends_with(".safetensors") || name.ends_with(".safetensors.index.json")) continue;
        if (name.rfind("quant_model_description", 0) == 0 && name.ends_with(".json")) {
            // msModelSlim: the experts now come from the GGUF, so their entries go
            TANDEM_ASSIGN(std::string text, read_text(entry.path()));
            json d = json::parse(text, nullptr, false);
            if (!d.is_object()) return make_error("{}: not a JSON object", entry.path().string());
            for (auto it = d.begin(); it != d.end();)
                it = is_hf_expert(it.key()) ? d.erase(it) : std::next(it);
            TANDEM_TRY(write_text(out / name, d.dump(2) + "\n"));
            continue;
        }
        fs::copy_file(entry.path(), out / name, fs::copy_options::overwrite_existing, ec);
        if (ec) return make_error("{}: cannot copy to {}: {}", entry.path().string(), out_dir, ec.message());
    }

    // dense parts: every non-expert tensor of the safetensors checkpoint, bytes as they are
    SafetensorsWriter sw;
    sw.set_metadata("format", "pt");
    uint64_t dense_bytes = 0;
    json tensors = json::object();
    std::map<std::string, std::string> st_origin;  // HF name -> "shard: name" in the source
    for (const StTensor& t : st.tensors()) {
        if (is_hf_expert(t.name)) continue;
        const StTensor* tp = &t;
        TANDEM_TRY(sw.add_tensor(t.name, t.dtype, t.shape, [tp](uint8_t* dst, size_t n) -> Status {
            std::memcpy(dst, tp->data, n);
            return {};
        }));
        dense_bytes += t.n_bytes;
        st_origin[t.name] = fmt::format("{}: {}", st.files()[(size_t)t.file_index], t.name);
    }
    // experts: the GGUF's stacks, raw blocks
    GgufWriter gw;
    for (const auto& [k, v] : g.metadata())
        if (k.rfind("tokenizer.", 0) != 0 && k.rfind("split.", 0) != 0 && k != key::kAlignment) gw.set(k, v);
    size_t n_experts = 0;
    for (const GgufTensorInfo& t : g.tensors()) {
        if (!is_expert_stack(t.name)) continue;
        const GgufTensorInfo* tp = &t;
        TANDEM_TRY(gw.add_tensor(t.name, t.type, t.ne, [tp](uint8_t* dst, size_t n) -> Status {
            std::memcpy(dst, tp->data, n);
            return {};
        }));
        tensors[t.name] = {{"file", kMergeExpertsFile},
                           {"type", std::string(dtype_name(t.type))},
                           {"from", fmt::format("{}: {}", gguf_path, t.name)}};
        ++n_experts;
    }

    const size_t n_dense = sw.n_tensors(), total = n_dense + n_experts;
    const int n_shards = (int)std::max<uint64_t>(1, (dense_bytes + kShardBytes - 1) / kShardBytes);
    TANDEM_TRY(sw.write_shards(out_dir, n_shards, [&](size_t done, size_t) {
        if (progress) progress(done, total);
    }));
    TANDEM_TRY(gw.write((out / kMergeExpertsFile).string(), 1, [&](size_t done, size_t) {
        if (progress) progress(n_dense + done, total);
    }));

    // the manifest: where each tensor lives now, and where it came from
    TANDEM_ASSIGN(SafetensorsSet written, SafetensorsSet::open(out_dir));
    for (const StTensor& t : written.tensors()) {
        const auto m = map_hf_name(t.name);
        tensors[m ? m->gguf : t.name] = {{"file", fs::path(written.files()[(size_t)t.file_index]).filename().string()},
                                         {"name", t.name},
                                         {"type", std::string(st_dtype_name(t.dtype))},
                                         {"from", st_origin[t.name]}};
    }
    const json manifest = {{"format", kManifestFormat},
                           {"version", 1},
                           {"sources", {{"safetensors", fs::absolute(src).string()}, {"gguf", fs::absolute(gguf_path).string()}}},
                           {"experts_gguf", kMergeExpertsFile},
                           {"tensors", tensors}};
    TANDEM_TRY(write_text(out / kMergeManifest, manifest.dump(1) + "\n"));

    // the result must load
    auto check = open_merged_folder(out_dir, ViewFor::layout);
    if (!check) return make_error("{}: written, but it does not load: {}", out_dir, check.error().message);
    return {};
}

bool is_merged_folder(const std::string& dir) {
    std::error_code ec;
    return fs::is_regular_file(fs::path(dir) / kMergeManifest, ec);
}

Result<GgufFile> open_merged_folder(const std::string& dir, ViewFor purpose) {
    const fs::path d(dir);
    const std::string mpath = (d / kMergeManifest).string();
    TANDEM_ASSIGN(std::string text, read_text(mpath));
    const json m = json::parse(text, nullptr, false);
    if (m.is_discarded() || !m.is_object()) return make_error("{}: not valid JSON", mpath);
    if (m.value("format", "") != kManifestFormat) return make_error("{}: format is not '{}'", mpath, kManifestFormat);
    if (!m.contains("experts_gguf") || !m["experts_gguf"].is_string()) return make_error("{}: 'experts_gguf' must be a string", mpath);
    const std::string experts = m["experts_gguf"].get<std::string>();
    if (experts.empty() || experts.find('/') != std::string::npos || experts == "..")
        return make_error("{}: 'experts_gguf' must name a file in the folder", mpath);

    TANDEM_ASSIGN(GgufFile view, open_hf_checkpoint(dir, purpose));
    if (purpose == ViewFor::tokenizer) return view;
    for (const GgufTensorInfo& t : view.tensors())
        if (is_expert_part(t.name)) return make_error("{}: tensor '{}' is also in the safetensors files", dir, t.name);
    return join_gguf_experts(std::move(view), (d / experts).string(), "merged folder: safetensors + GGUF experts");
}

Result<GgufFile> join_gguf_experts(GgufFile dense, const std::string& experts_path, const std::string& kind) {
    TANDEM_ASSIGN(GgufFile g, GgufFile::open(experts_path));
    std::vector<GgufTensorInfo> tensors;
    for (const GgufTensorInfo& t : dense.tensors())
        if (!is_expert_part(t.name)) tensors.push_back(t);  // its own experts (and their W8A8 scales) give way
    size_t n = 0;
    const std::string file = fs::path(experts_path).filename().string();
    for (const GgufTensorInfo& t : g.tensors()) {
        if (!is_expert_stack(t.name)) continue;  // a whole GGUF model: only its experts are taken
        GgufTensorInfo e = t;
        e.source = fmt::format("{}: tensor '{}'", file, t.name);
        e.file_index += dense.n_files();
        tensors.push_back(std::move(e));
        ++n;
    }
    if (n == 0) return make_error("{}: no routed-expert stacks (blk.N.ffn_{{gate,up,down}}_exps)", experts_path);
    GgufMetadata kv = dense.metadata();
    const int n_files = dense.n_files() + g.n_files();
    const std::string path = dense.path();
    std::vector<std::shared_ptr<const void>> keep = {std::make_shared<GgufFile>(std::move(dense)),
                                                     std::make_shared<GgufFile>(std::move(g))};
    log::debug("{}: {} tensors, experts from {}", path, tensors.size(), experts_path);
    return GgufFile::from_parts(path, kind, std::move(kv), std::move(tensors), std::move(keep), n_files);
}

}  // namespace tandem
