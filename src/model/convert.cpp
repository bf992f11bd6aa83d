#include "model/convert.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "core/thread_pool.h"
#include "formats/gguf.h"
#include "kernels/reference/quants.h"
#include "model/arch.h"
#include "model/hparams.h"
#include "model/model.h"

namespace tandem {
namespace {

bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

// Rows of `src` (type `from`) as rows of type `to` at dst.
void requantize(const GgufTensorInfo& src, DType to, uint8_t* dst, ThreadPool& pool) {
    const int64_t n_row = src.ne[0];
    const size_t src_rb = row_bytes(src.type, n_row), dst_rb = row_bytes(to, n_row);
    pool.parallel_for(src.n_rows(), 16, [&](int64_t a, int64_t b) {
        std::vector<float> row((size_t)n_row);
        for (int64_t r = a; r < b; ++r) {
            ref::dequantize_row(src.type, src.data + (size_t)r * src_rb, row.data(), n_row);
            ref::quantize_row(to, row.data(), dst + (size_t)r * dst_rb, n_row);
        }
    });
}

// Row r of an int8 (W8A8) matrix as floats: the weight the int8 path multiplies by.
void int8_row(const Tensor& w, int64_t r, float* out) {
    const Int8Linear& q = *w.int8;
    const auto* row = reinterpret_cast<const int8_t*>(w.row(r));
    // static: deq_scale = input_scale * weight_scale; dynamic: weight_scale, zero point
    const float scale = q.static_act ? q.scale[(size_t)r] / q.input_scale : q.scale[(size_t)r];
    const float zero = q.zero.empty() ? 0.0f : q.zero[(size_t)r];
    for (int64_t k = 0; k < w.ne[0]; ++k) out[k] = ((float)row[k] - zero) * scale;
}

// A static W8A8 linear's output offset, (quant_bias + input_offset * sum_k W_q) * deq_scale, plus
// what the bias of the norm before it adds (W . norm_bias): zero when the checkpoint only shifted
// the activations (anti-outlier smoothing taken back in quant_bias) — the float model then is W x.
// Returns the largest offset left, in units of the row's deq_scale.
double residual_bias(const Tensor& w, const std::vector<float>& norm_bias) {
    const Int8Linear& q = *w.int8;
    double worst = 0;
    std::vector<float> row((size_t)w.ne[0]);
    for (int64_t r = 0; r < w.n_rows(); ++r) {
        const auto* qr = reinterpret_cast<const int8_t*>(w.row(r));
        int64_t sum = 0;
        for (int64_t k = 0; k < w.ne[0]; ++k) sum += qr[k];
        const double deq = q.scale[(size_t)r];
        double bias = q.static_act ? ((double)q.bias[(size_t)r] + (double)q.input_offset * (double)sum) * deq : 0.0;
        if (!norm_bias.empty()) {
            int8_row(w, r, row.data());
            for (int64_t k = 0; k < w.ne[0]; ++k) bias += (double)row[(size_t)k] * norm_bias[(size_t)k];
        }
        worst = std::max(worst, std::fabs(bias) / (q.static_act ? deq : 1e-6));
    }
    return worst;
}

// The W8A8 parameters and norm biases a GGUF cannot hold must amount to nothing: checked here,
// then left out of the file (the int8 weights are written dequantized).
Status check_w8a8_for_gguf(const Model& m, const std::string& in) {
    std::vector<std::string> bad;
    for (int il = 0; il < (int)m.hparams().n_layer; ++il) {
        const LayerWeights& l = m.layer(il);
        for (const Tensor* w : {&l.wq, &l.wk, &l.wv}) {
            const bool stat = w->int8 && w->int8->static_act;
            if (!stat) {
                if (!l.attn_norm_bias.empty())
                    bad.push_back(fmt::format("{} takes a biased norm but is not static W8A8", w->name));
                continue;
            }
            if (const double r = residual_bias(*w, l.attn_norm_bias); r > 2.0)
                bad.push_back(fmt::format("{} has an output bias ({:.1f} steps of its deq_scale)", w->name, r));
        }
        if (l.wo.int8 && l.wo.int8->static_act)
            if (const double r = residual_bias(l.wo, {}); r > 2.0)
                bad.push_back(fmt::format("{} has an output bias ({:.1f} steps of its deq_scale)", l.wo.name, r));
        if (!l.ffn_norm_bias.empty()) bad.push_back(fmt::format("blk.{}.ffn_norm has a bias", il));
    }
    if (bad.empty()) return {};
    return make_error("{}: GGUF qwen3 models hold no linear or norm biases, and this checkpoint needs them: {}{}", in,
                      fmt::join(bad.begin(), bad.begin() + std::min<size_t>(bad.size(), 4), "; "),
                      bad.size() > 4 ? fmt::format("; ... ({} in all)", bad.size()) : "");
}

// Every bound matrix of the model by name (for the int8 ones' parameters).
std::map<std::string, const Tensor*> matrices(const Model& m) {
    std::map<std::string, const Tensor*> out;
    auto add = [&](const Tensor& t) {
        if (!t.name.empty()) out[t.name] = &t;
    };
    add(m.token_embd());
    add(m.output());
    for (int il = 0; il < (int)m.hparams().n_layer; ++il) {
        const LayerWeights& l = m.layer(il);
        for (const Tensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_gate_inp, &l.ffn_gate_exps, &l.ffn_up_exps,
                                &l.ffn_down_exps, &l.ffn_gate, &l.ffn_up, &l.ffn_down})
            add(*t);
    }
    return out;
}

bool is_companion(const std::string& name) {
    const size_t dot = name.rfind('.');
    if (dot == std::string::npos) return false;
    const std::string part = name.substr(dot + 1);
    if (part == tn::kBias) return true;
    for (const char* p : tn::kQuantParts)
        if (part == p) return true;
    return false;
}

}  // namespace

Status convert_model(const std::string& in, const std::string& out, const ConvertOptions& opts,
                     const std::function<void(size_t, size_t)>& progress) {
    // the bound model: the int8 matrices' parameters (its view holds every tensor of the file)
    TANDEM_ASSIGN(std::shared_ptr<Model> model, Model::load(in, LoadOptions::convert()));
    const GgufFile* src = &model->file();
    const HParams& hp = model->hparams();
    TANDEM_TRY(check_w8a8_for_gguf(*model, in));
    const auto bound = matrices(*model);
    const MixShape shape{hp.n_layer, hp.n_expert};

    GgufWriter w;
    for (const auto& [k, v] : src->metadata()) {
        if (k == key::kFileType || k == key::kQuantVersion || k == key::kAlignment || starts_with(k, "split.")) continue;
        w.set(k, v);
    }
    w.set(key::kFileType, GgufValue::of_u32(quant_mix_file_type(opts.quant)));
    w.set(key::kQuantVersion, GgufValue::of_u32(2));

    auto pool = std::make_shared<ThreadPool>(opts.n_threads);
    std::vector<std::string> unknown;
    for (const GgufTensorInfo& t : src->tensors()) {
        if (is_companion(t.name)) continue;  // checked above: nothing a GGUF needs
        int64_t il = 0;
        const auto role = tensor_role(t.name, il);
        if (!role) {
            unknown.push_back(t.name);
            continue;
        }
        if (!t.data) return make_error("{}: tensor '{}' has no data", in, t.name);
        const DType to = t.ne.size() == 1 ? DType::F32 : quant_mix_type(opts.quant, shape, *role, il, t.ne[0]);
        const GgufTensorInfo* tp = &t;
        if (t.type == DType::I8) {
            const auto it = bound.find(t.name);
            if (it == bound.end() || !it->second->int8) return make_error("{}: int8 tensor '{}' is not a bound matrix", in, t.name);
            const Tensor* m = it->second;
            TANDEM_TRY(w.add_tensor(t.name, to, t.ne, [model, m, to, pool](uint8_t* dst, size_t) -> Status {
                const size_t rb = row_bytes(to, m->ne[0]);
                pool->parallel_for(m->n_rows(), 16, [&](int64_t a, int64_t b) {
                    std::vector<float> row((size_t)m->ne[0]);
                    for (int64_t r = a; r < b; ++r) {
                        int8_row(*m, r, row.data());
                        ref::quantize_row(to, row.data(), dst + (size_t)r * rb, m->ne[0]);
                    }
                });
                return {};
            }));
            continue;
        }
        TANDEM_TRY(w.add_tensor(t.name, to, t.ne, [model, tp, to, pool](uint8_t* dst, size_t n_bytes) -> Status {
            if (tp->type == to) {
                std::memcpy(dst, tp->data, n_bytes);
            } else {
                requantize(*tp, to, dst, *pool);
            }
            return {};
        }));
    }
    if (!unknown.empty())
        return make_error("{}: {} tensor(s) that are not Qwen3 weights: {}{}", in, unknown.size(),
                          fmt::join(unknown.begin(), unknown.begin() + std::min<size_t>(unknown.size(), 4), ", "),
                          unknown.size() > 4 ? ", ..." : "");
    return w.write(out, opts.n_split, progress);
}

}  // namespace tandem
