// Synthetic W8A8 checkpoint folders: the BF16 folder's weights (same seed, same values), the
// linear layers int8-quantized per output channel as the quantization tools do, written in the
// two layouts Tandem reads (model/hf_quant.h):
//  - msModelSlim (the seed's recipe for Qwen3-MoE): attention q/k/v/o static W8A8, their input
//    ranges calibrated by running the BF16 model on random prompts (per tensor, asymmetric: the
//    range maps onto -128..127); the routed experts (and a dense FFN) W8A8_DYNAMIC; router, norms,
//    embeddings and LM head FLOAT. Like anti-outlier smoothing, input_layernorm gets a bias whose
//    effect on q/k/v is taken back through their quant_bias. deq_scale is int64 (float bits) in
//    layer 0 and float32 elsewhere: MindIE writes both, so one folder exercises both readers.
//  - compressed-tensors (llm-compressor "W8A8" int8 scheme): every Linear but lm_head and the
//    router int8 with a BF16 weight_scale [out, 1], dynamic per-token activations.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

#include <nlohmann/json.hpp>

#include "core/fp16.h"
#include "core/log.h"
#include "core/rng.h"
#include "formats/safetensors.h"
#include "kernels/reference/int8.h"
#include "model/arch.h"
#include "model/forward.h"
#include "model/hf_checkpoint.h"
#include "model/model.h"
#include "model/synthetic_internal.h"

namespace tandem::synthetic {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

bool is_attention(TensorRole r) {
    return r == TensorRole::attn_q || r == TensorRole::attn_k || r == TensorRole::attn_v || r == TensorRole::attn_out;
}
bool is_linear(TensorRole r) {
    return is_attention(r) || r == TensorRole::ffn_gate || r == TensorRole::ffn_up || r == TensorRole::ffn_down;
}
bool takes_norm_bias(TensorRole r) {
    return r == TensorRole::attn_q || r == TensorRole::attn_k || r == TensorRole::attn_v;
}

// The anti-outlier bias of layer il's input_layernorm (msModelSlim only): small, seeded.
std::vector<float> norm_bias(const SyntheticSpec& s, int64_t il) {
    Rng rng(hash_name(tn::layer((int)il, tn::kAttnNorm) + ".bias", s.seed));
    std::vector<float> b((size_t)s.n_embd);
    for (auto& v : b) v = bf16_to_fp32(fp32_to_bf16(0.05f * rng.normal()));
    return b;
}

struct Range {
    float lo = INFINITY, hi = -INFINITY;
};

// Input ranges of the attention linears of the BF16 model with the same weights, over random
// prompts, the norm bias included for q/k/v.
Result<std::map<std::string, Range>> calibrate(const SyntheticSpec& s, const std::string& tokenizer_dir,
                                               const std::string& dir, int n_threads) {
    SyntheticSpec f = s;
    f.format = ModelFormat::hf;
    f.n_split = 1;
    const std::string tmp = dir + ".calibration";
    std::error_code ec;
    fs::remove_all(tmp, ec);
    TANDEM_TRY(write_hf(f, tokenizer_dir, tmp, n_threads, {}));
    std::map<std::string, Range> ranges;
    {
        TANDEM_ASSIGN(auto model, Model::load(tmp));
        ThreadPool pool(n_threads);
        Forward fwd(*model, pool);
        std::map<std::string, std::pair<TensorRole, int64_t>> roles;  // GGUF weight name -> (role, layer)
        for (const Planned& p : make_plan(s)) roles[p.name] = {p.role, p.il};
        std::vector<std::vector<float>> biases;
        for (int64_t il = 0; il < s.n_layer; ++il) biases.push_back(norm_bias(s, il));
        fwd.set_input_observer([&](const Tensor& w, const float* x, int64_t n) {
            const auto it = roles.find(w.name);
            if (it == roles.end() || !is_attention(it->second.first)) return;
            const float* b = takes_norm_bias(it->second.first) ? biases[(size_t)it->second.second].data() : nullptr;
            Range& r = ranges[w.name];
            for (int64_t i = 0; i < n * w.ne[0]; ++i) {
                const float v = x[i] + (b ? b[i % w.ne[0]] : 0.0f);
                r.lo = std::min(r.lo, v);
                r.hi = std::max(r.hi, v);
            }
        });
        Rng rng(s.seed ^ 0xca11b7a7e);
        for (int seq = 0; seq < 4; ++seq) {
            KvCache kv = fwd.make_cache(128);
            std::vector<int32_t> tokens(128);
            for (auto& t : tokens) t = (int32_t)(rng.next() % (uint64_t)std::min<int64_t>(s.n_vocab, 151643));
            std::vector<float> logits;
            TANDEM_TRY(fwd.eval(kv, tokens.data(), (int64_t)tokens.size(), logits));
        }
    }
    fs::remove_all(tmp, ec);
    return ranges;
}

// One int8 linear: weight rows quantized per channel, and the scheme's parameters.
struct I8Tensor {
    std::vector<int8_t> q;         // [rows][in]
    std::vector<float> scale;      // weight_scale (rows)
    // static W8A8 only
    float input_scale = 0, input_offset = 0;
    std::vector<float> deq;        // (rows)
    std::vector<int32_t> bias;     // (rows)
};

I8Tensor quantize(const Planned& p, int64_t r0, int64_t r1, uint64_t seed, ThreadPool& pool) {
    const int64_t in = p.ne[0], rows = r1 - r0;
    std::vector<float> w((size_t)(rows * in));
    float_rows(p, DType::BF16, seed, r0, r1, w.data(), pool);  // the BF16 folder's values
    I8Tensor t;
    t.q.resize(w.size());
    t.scale.resize((size_t)rows);
    for (int64_t r = 0; r < rows; ++r) t.scale[(size_t)r] = ref::quantize_weight_row_i8(w.data() + r * in, t.q.data() + r * in, in);
    return t;
}

// Static parameters from the calibrated range [lo, hi] of the input (lo -> -128, hi -> 127);
// quant_bias takes back the offset (-input_offset * sum_k W[r][k]) and, for q/k/v, the norm bias
// (-sum_k W[r][k] * b[k] / deq_scale).
void make_static(I8Tensor& t, int64_t in, Range r, const float* norm_b) {
    r.lo = std::min(r.lo, 0.0f);
    r.hi = std::max(r.hi, r.lo + 1e-3f);
    t.input_scale = (r.hi - r.lo) / 255.0f;
    t.input_offset = std::nearbyint(-128.0f - r.lo / t.input_scale);
    const int64_t rows = (int64_t)t.scale.size();
    t.deq.resize((size_t)rows);
    t.bias.resize((size_t)rows);
    for (int64_t i = 0; i < rows; ++i) {
        const int8_t* q = t.q.data() + i * in;
        t.deq[(size_t)i] = t.input_scale * t.scale[(size_t)i];
        int64_t sum = 0;
        double wb = 0;
        for (int64_t k = 0; k < in; ++k) {
            sum += q[k];
            if (norm_b) wb += (double)q[k] * t.scale[(size_t)i] * norm_b[k];
        }
        t.bias[(size_t)i] = (int32_t)(-(int64_t)t.input_offset * sum - std::llround(wb / t.deq[(size_t)i]));
    }
}

// Writes a vector as [n] or [n, 1] in `dtype`.
Status add_values(SafetensorsWriter& w, const std::string& name, StDType dtype, const std::vector<float>& v,
                  std::vector<int64_t> shape) {
    auto data = std::make_shared<std::vector<float>>(v);
    return w.add_tensor(name, dtype, std::move(shape), [data, dtype](uint8_t* dst, size_t) -> Status {
        for (size_t i = 0; i < data->size(); ++i) {
            const float x = (*data)[i];
            if (dtype == StDType::F32) std::memcpy(dst + 4 * i, &x, 4);
            else if (dtype == StDType::BF16) { const uint16_t h = fp32_to_bf16(x); std::memcpy(dst + 2 * i, &h, 2); }
            else if (dtype == StDType::I8) dst[i] = (uint8_t)(int8_t)x;
            else if (dtype == StDType::I64) {  // MindIE: a float32's bits in an int64
                uint32_t bits;
                std::memcpy(&bits, &x, 4);
                const int64_t v64 = bits;
                std::memcpy(dst + 8 * i, &v64, 8);
            }
        }
        return {};
    });
}

}  // namespace

Status write_w8a8(const SyntheticSpec& s, const std::string& tokenizer_dir, const std::string& dir, int n_threads,
                  const std::function<void(size_t, size_t)>& progress) {
    const bool mss = s.format == ModelFormat::hf_w8a8_msmodelslim;
    std::map<std::string, Range> ranges;
    if (mss) {
        log::info("calibrating the static W8A8 ranges on the BF16 model...");
        TANDEM_ASSIGN(ranges, calibrate(s, tokenizer_dir, dir, n_threads));
    }
    TANDEM_TRY(make_folder_with_tokenizer(dir, tokenizer_dir));
    json config = json::parse(hf_config_of(s).to_json());
    if (mss) {
        config["quantize"] = "w8a8";  // what MindIE's scripts add
    } else {
        const json int8_args = {{"num_bits", 8}, {"type", "int"}, {"symmetric", true}, {"group_size", nullptr},
                                {"block_structure", nullptr}, {"observer", "minmax"}};
        json weights = int8_args, acts = int8_args;
        weights["strategy"] = "channel";
        weights["dynamic"] = false;
        acts["strategy"] = "token";
        acts["dynamic"] = true;
        acts["observer"] = nullptr;
        config["quantization_config"] = {
            {"quant_method", "compressed-tensors"},
            {"format", "int-quantized"},
            {"quantization_status", "compressed"},
            {"config_groups", {{"group_0", {{"targets", {"Linear"}}, {"weights", weights}, {"input_activations", acts}}}}},
            {"ignore", {"lm_head", "re:.*mlp.gate$"}},
        };
    }
    {
        std::ofstream out(fs::path(dir) / "config.json");
        out << config.dump(2) << "\n";
        if (!out) return make_error("{}/config.json: write failed", dir);
    }

    ThreadPool pool(n_threads);
    SafetensorsWriter w;
    w.set_metadata("format", "pt");
    json description = json::object();
    if (mss) {
        description["model_quant_type"] = "W8A8_DYNAMIC";
        description["version"] = "1.0.0";
    }
    const uint64_t seed = s.seed;
    auto describe = [&](const std::string& name, const char* scheme) {
        if (mss) description[name] = scheme;
    };
    // one int8 linear (rows [r0, r1) of p) under the Hugging Face module name `hf_w` (its weight)
    auto add_int8 = [&](const Planned& p, int64_t r0, int64_t r1, const std::string& hf_w) -> Status {
        const int64_t in = p.ne[0], rows = r1 - r0;
        auto t = std::make_shared<I8Tensor>(quantize(p, r0, r1, seed, pool));
        const std::string base = hf_w.substr(0, hf_w.size() - 7);  // "....weight" -> the module
        const bool stat = mss && is_attention(p.role);
        const char* scheme = stat ? "W8A8" : "W8A8_DYNAMIC";
        TANDEM_TRY(w.add_tensor(hf_w, StDType::I8, {rows, in}, [t](uint8_t* dst, size_t n) -> Status {
            std::memcpy(dst, t->q.data(), n);
            return {};
        }));
        describe(hf_w, scheme);
        const StDType scale_t = mss ? StDType::F32 : StDType::BF16;
        TANDEM_TRY(add_values(w, base + "." + tn::kWeightScale, scale_t, t->scale, {rows, 1}));
        describe(base + "." + tn::kWeightScale, scheme);
        if (!mss) return {};
        TANDEM_TRY(add_values(w, base + "." + tn::kWeightOffset, StDType::F32, std::vector<float>((size_t)rows, 0.0f), {rows, 1}));
        describe(base + "." + tn::kWeightOffset, scheme);
        if (!stat) return {};
        const auto it = ranges.find(p.name);
        if (it == ranges.end()) return make_error("calibration saw no input for {}", p.name);
        const std::vector<float> nb = takes_norm_bias(p.role) ? norm_bias(s, p.il) : std::vector<float>();
        make_static(*t, in, it->second, nb.empty() ? nullptr : nb.data());
        TANDEM_TRY(add_values(w, base + "." + tn::kInputScale, StDType::F32, {t->input_scale}, {1}));
        TANDEM_TRY(add_values(w, base + "." + tn::kInputOffset, StDType::I8, {t->input_offset}, {1}));
        TANDEM_TRY(add_values(w, base + "." + tn::kDeqScale, p.il == 0 ? StDType::I64 : StDType::F32, t->deq, {rows}));
        auto bias = std::make_shared<std::vector<int32_t>>(t->bias);
        TANDEM_TRY(w.add_tensor(base + "." + tn::kQuantBias, StDType::I32, {rows}, [bias](uint8_t* dst, size_t n) -> Status {
            std::memcpy(dst, bias->data(), n);
            return {};
        }));
        for (const char* part : {tn::kInputScale, tn::kInputOffset, tn::kDeqScale, tn::kQuantBias}) describe(base + "." + part, scheme);
        return {};
    };
    // float tensors in the types of the BF16 folder (norms and router F32, the rest BF16)
    auto add_float = [&](const Planned& p, int64_t r0, int64_t r1, const std::string& hf_name, std::vector<int64_t> shape) -> Status {
        const DType type = choose_type(s, p.role, p.il, p.ne[0]);
        TANDEM_TRY(w.add_tensor(hf_name, *st_from_dtype(type), std::move(shape), [p, r0, r1, seed, type, &pool](uint8_t* dst, size_t) {
            return fill_rows(p, type, seed, r0, r1, dst, pool);
        }));
        describe(hf_name, "FLOAT");
        return {};
    };

    // transformers' state_dict order, experts interleaved (as the BF16 writer does)
    for (const Planned& p : make_plan(s)) {
        const TensorRole r = p.role;
        if (p.ne.size() == 3) {  // an expert stack: expert e's rows [e * F, (e + 1) * F)
            const int64_t rows = p.ne[1];
            for (int64_t e = 0; e < p.ne[2]; ++e) TANDEM_TRY(add_int8(p, e * rows, (e + 1) * rows, hf_name_of(p.name, (int)e)));
            continue;
        }
        const std::vector<int64_t> shape(p.ne.rbegin(), p.ne.rend());
        if (is_linear(r)) TANDEM_TRY(add_int8(p, 0, p.n_rows(), hf_name_of(p.name)));
        else TANDEM_TRY(add_float(p, 0, p.n_rows(), hf_name_of(p.name), shape));
        if (mss && p.name == tn::layer((int)p.il, tn::kAttnNorm)) {
            const std::string bn = hf::layer((int)p.il, "input_layernorm", tn::kBias);
            TANDEM_TRY(add_values(w, bn, StDType::BF16, norm_bias(s, p.il), {s.n_embd}));
            describe(bn, "FLOAT");
        }
    }
    if (mss) {
        std::ofstream out(fs::path(dir) / "quant_model_description.json");
        out << description.dump(2) << "\n";
        if (!out) return make_error("{}/quant_model_description.json: write failed", dir);
    }
    return w.write_shards(dir, s.n_split, progress);
}

}  // namespace tandem::synthetic
