#include "model/hf_quant.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/regex.h"
#include "model/arch.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

bool ends_with(const std::string& s, const std::string& p) {
    return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// "....weight" -> "...." (the module)
std::string module_of(const std::string& weight) { return weight.substr(0, weight.size() - 7); }

bool is_float(StDType d) { return d == StDType::F32 || d == StDType::F16 || d == StDType::BF16; }

Result<json> read_json(const std::string& path) {
    std::ifstream in(path);
    if (!in) return make_error("{}: cannot open", path);
    std::stringstream ss;
    ss << in.rdbuf();
    json j = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return make_error("{}: not valid JSON", path);
    return j;
}

std::string list(const std::vector<std::string>& v, size_t n = 5) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < n; ++i) s += (i ? ", " : "") + v[i];
    if (v.size() > n) s += fmt::format(", ... ({} in all)", v.size());
    return s;
}

// Every problem of one kind, as one clause of the error line.
struct Problems {
    std::vector<std::string> clauses;
    void add(const std::vector<std::string>& items, const std::string& what) {
        if (!items.empty()) clauses.push_back(fmt::format("{} {}: {}", items.size(), what, list(items)));
    }
    Status result(const std::string& file) const {
        if (clauses.empty()) return {};
        return make_error("{}: {}", file, fmt::format("{}", fmt::join(clauses, "; ")));
    }
};

Result<HfQuant> read_msmodelslim(const std::string& path, const SafetensorsSet& st) {
    TANDEM_ASSIGN(json d, read_json(path));
    if (!d.is_object()) return make_error("{}: not a JSON object", path);
    std::vector<std::string> absent, unsupported, bad_value, no_params, not_int8, float_not_float, undescribed;
    std::set<std::string> described;
    for (auto it = d.begin(); it != d.end(); ++it) {
        const std::string& name = it.key();
        if (name.find('.') == std::string::npos) continue;  // model_quant_type, version, ...
        if (!it.value().is_string()) {
            bad_value.push_back(name);
            continue;
        }
        described.insert(name);
        const std::string scheme = it.value().get<std::string>();
        const StTensor* t = st.tensor(name);
        if (!t) {
            absent.push_back(name);
            continue;
        }
        if (scheme != "FLOAT" && scheme != "W8A8" && scheme != "W8A8_DYNAMIC") {
            unsupported.push_back(name + " (" + scheme + ")");
            continue;
        }
        if (!ends_with(name, ".weight")) continue;  // a parameter: checked with its weight
        if (scheme == "FLOAT") {
            if (!is_float(t->dtype)) float_not_float.push_back(name + " (" + std::string(st_dtype_name(t->dtype)) + ")");
            continue;
        }
        if (t->dtype != StDType::I8) not_int8.push_back(name + " (" + std::string(st_dtype_name(t->dtype)) + ")");
        const std::string m = module_of(name);
        const std::vector<const char*> need =
            scheme == "W8A8" ? std::vector<const char*>{tn::kInputScale, tn::kInputOffset, tn::kDeqScale, tn::kQuantBias}
                             : std::vector<const char*>{tn::kWeightScale};
        for (const char* p : need)
            if (!st.tensor(m + "." + p)) no_params.push_back(m + "." + p);
    }
    for (const StTensor& t : st.tensors())
        if (t.dtype == StDType::I8 && !described.count(t.name)) undescribed.push_back(t.name);
    Problems pr;
    pr.add(absent, "entries name tensors that are not in the safetensors files");
    pr.add(unsupported, "tensors use a scheme Tandem does not run (FLOAT, W8A8 and W8A8_DYNAMIC are supported)");
    pr.add(bad_value, "entries are not strings");
    pr.add(no_params, "quantization parameters are missing");
    pr.add(not_int8, "W8A8 weights are not int8");
    pr.add(float_not_float, "FLOAT tensors are not F32/F16/BF16");
    pr.add(undescribed, "int8 tensors have no entry");
    TANDEM_TRY(pr.result(path));
    return HfQuant{HfQuantFormat::msmodelslim, path};
}

// A compressed-tensors `ignore` entry: a module name, or "re:" + a regex over module names.
struct IgnoreList {
    std::vector<std::string> names;
    std::vector<Regex> patterns;
    Result<bool> matches(const std::string& module) const {
        if (std::find(names.begin(), names.end(), module) != names.end()) return true;
        for (const auto& r : patterns) {
            TANDEM_ASSIGN(const bool hit, r.full_match(module));
            if (hit) return true;
        }
        return false;
    }
};

void check_int8_args(const json& a, const std::string& what, bool activations, std::vector<std::string>& bad) {
    auto get = [&](const char* k) { return a.contains(k) ? a[k] : json(); };
    if (get("num_bits") != json(8)) bad.push_back(what + ".num_bits is not 8");
    if (get("type") != json("int")) bad.push_back(what + ".type is not \"int\"");
    if (activations) {
        if (get("dynamic") != json(true)) bad.push_back(what + ": static activation scales (only dynamic per-token runs)");
        if (get("strategy") != json("token")) bad.push_back(what + ".strategy is not \"token\"");
        if (a.contains("symmetric") && get("symmetric") != json(true)) bad.push_back(what + " is not symmetric");
    } else if (get("strategy") != json("channel")) {
        bad.push_back(what + ".strategy is not \"channel\"");
    }
}

Result<HfQuant> read_compressed_tensors(const std::string& path, const json& q, const SafetensorsSet& st) {
    std::vector<std::string> bad;
    const std::string method = q.value("quant_method", std::string());
    if (method != "compressed-tensors")
        return make_error("{}: quantization_config.quant_method \"{}\" is not supported (W8A8 checkpoints load from "
                          "compressed-tensors int-quantized or msModelSlim folders)",
                          path, method);
    const std::string format = q.value("format", std::string());
    if (format != "int-quantized")
        bad.push_back("format \"" + format + "\" (only \"int-quantized\" runs)");
    if (!q.contains("config_groups") || !q["config_groups"].is_object() || q["config_groups"].empty()) {
        bad.push_back("no config_groups");
    } else {
        for (auto it = q["config_groups"].begin(); it != q["config_groups"].end(); ++it) {
            const json& g = it.value();
            const std::string gn = "config_groups." + it.key();
            if (!g.is_object() || !g.contains("weights") || !g["weights"].is_object()) {
                bad.push_back(gn + " has no weights");
                continue;
            }
            check_int8_args(g["weights"], gn + ".weights", false, bad);
            if (!g.contains("input_activations") || !g["input_activations"].is_object())
                bad.push_back(gn + ": weight-only quantization (no input_activations)");
            else
                check_int8_args(g["input_activations"], gn + ".input_activations", true, bad);
        }
    }
    IgnoreList ignore;
    if (q.contains("ignore") && q["ignore"].is_array())
        for (const json& e : q["ignore"]) {
            if (!e.is_string()) continue;
            const std::string s = e.get<std::string>();
            if (s.rfind("re:", 0) != 0) {
                ignore.names.push_back(s);
                continue;
            }
            const std::string re = s.substr(3);
            if (re.size() > 256) {
                bad.push_back("ignore pattern longer than 256 characters");
                continue;
            }
            auto compiled = Regex::compile(re);
            if (compiled) ignore.patterns.push_back(std::move(*compiled));
            else bad.push_back("ignore pattern \"" + re + "\" is not a valid regex: " + compiled.error().message);
        }
    std::vector<std::string> ignored_int8, no_scale;
    for (const StTensor& t : st.tensors()) {
        if (t.dtype != StDType::I8 || !ends_with(t.name, ".weight")) continue;
        const std::string m = module_of(t.name);
        auto ignored = ignore.matches(m);
        if (!ignored) return make_error("{}: quantization_config.ignore: {}", path, ignored.error().message);
        if (*ignored) ignored_int8.push_back(t.name);
        if (!st.tensor(m + "." + tn::kWeightScale)) no_scale.push_back(m + "." + tn::kWeightScale);
    }
    Problems pr;
    pr.add(bad, "unsupported settings in quantization_config");
    pr.add(ignored_int8, "int8 weights are in the ignore list");
    pr.add(no_scale, "weight scales are missing");
    TANDEM_TRY(pr.result(path));
    return HfQuant{HfQuantFormat::compressed_tensors, path};
}

}  // namespace

const char* hf_quant_format_name(HfQuantFormat f) {
    switch (f) {
        case HfQuantFormat::msmodelslim: return "msModelSlim W8A8";
        case HfQuantFormat::compressed_tensors: return "compressed-tensors int8";
        default: return "none";
    }
}

Result<HfQuant> read_hf_quantization(const std::string& dir, const SafetensorsSet& st) {
    // W8A8 parameters only ever stand beside an int8 weight
    std::vector<std::string> orphans;
    for (const StTensor& t : st.tensors()) {
        const size_t dot = t.name.rfind('.');
        if (dot == std::string::npos) continue;
        const std::string part = t.name.substr(dot + 1);
        if (std::none_of(std::begin(tn::kQuantParts), std::end(tn::kQuantParts), [&](const char* p) { return part == p; }))
            continue;
        const StTensor* w = st.tensor(t.name.substr(0, dot) + ".weight");
        if (!w || w->dtype != StDType::I8) orphans.push_back(t.name + " (" + std::string(st_dtype_name(t.dtype)) + ")");
    }
    if (!orphans.empty())
        return make_error("{}: {} W8A8 parameter tensor(s) beside a weight that is not int8: {}", dir, orphans.size(),
                          list(orphans));
    std::vector<std::string> descriptions;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        const std::string n = e.path().filename().string();
        if (n.rfind("quant_model_description", 0) == 0 && ends_with(n, ".json")) descriptions.push_back(e.path().string());
    }
    std::sort(descriptions.begin(), descriptions.end());
    if (descriptions.size() > 1)
        return make_error("{}: {} msModelSlim description files ({}): keep one", dir, descriptions.size(), list(descriptions));
    const std::string cfg_path = (fs::path(dir) / "config.json").string();
    TANDEM_ASSIGN(json cfg, read_json(cfg_path));
    const bool has_qc = cfg.is_object() && cfg.contains("quantization_config") && !cfg["quantization_config"].is_null();
    if (!descriptions.empty()) {
        if (has_qc)
            return make_error("{}: both a quantization_config and {}: one quantization description only", cfg_path,
                              fs::path(descriptions[0]).filename().string());
        return read_msmodelslim(descriptions[0], st);
    }
    if (has_qc) {
        if (!cfg["quantization_config"].is_object()) return make_error("{}: quantization_config is not an object", cfg_path);
        return read_compressed_tensors(cfg_path, cfg["quantization_config"], st);
    }
    std::vector<std::string> int8;
    for (const StTensor& t : st.tensors())
        if (t.dtype == StDType::I8) int8.push_back(t.name);
    if (!int8.empty())
        return make_error("{}: {} int8 tensor(s) ({}) but no quant_model_description*.json nor quantization_config", dir,
                          int8.size(), list(int8));
    return HfQuant{};
}

}  // namespace tandem
