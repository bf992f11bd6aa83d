#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/log.h"
#include "kernels/reference/quants.h"
#include "model/merge.h"

namespace tandem {
namespace {

class Binder {
public:
    explicit Binder(const GgufFile& f) : f_(f) {}

    // Binds a matrix/stack and checks its shape (ggml order) exactly.
    Status matrix(const std::string& name, std::vector<int64_t> shape, Tensor& out) {
        const GgufTensorInfo* t = f_.tensor(name);
        if (!t) return missing(name);
        TANDEM_TRY(check_shape(*t, shape));
        out.name = name;
        out.type = t->type;
        for (size_t d = 0; d < 4; ++d) out.ne[d] = d < t->ne.size() ? t->ne[d] : 1;
        out.data = t->data;
        out.row_bytes = row_bytes(t->type, t->ne[0]);
        if (t->type == DType::I8) return int8(out);
        if (t->type == DType::I32 || t->type == DType::I64)
            return make_error("{}: tensor '{}' has type {}, not a weight type", f_.path(), label(*t), dtype_name(t->type));
        return {};
    }

    // The optional bias of a norm (same length as its weight).
    Status bias(const std::string& weight_name, int64_t n, std::vector<float>& out) {
        const std::string name = tn::part_of(weight_name, tn::kBias);
        if (!f_.tensor(name)) return {};
        return vector(name, n, out);
    }

    // Reads a 1-D weight (norm scales) into floats.
    Status vector(const std::string& name, int64_t n, std::vector<float>& out) {
        const GgufTensorInfo* t = f_.tensor(name);
        if (!t) return missing(name);
        TANDEM_TRY(check_shape(*t, {n}));
        out.resize((size_t)n);
        ref::dequantize_row(t->type, t->data, out.data(), n);
        return {};
    }

    // An int8 matrix's parameters: static (input_scale, input_offset, deq_scale, quant_bias) when
    // deq_scale is there, else dynamic (weight_scale, optional weight_offset / weight_zero_point).
    Status int8(Tensor& w) {
        auto q = std::make_shared<Int8Linear>();
        const int64_t rows = w.n_rows();
        auto part = [&](const char* p) { return f_.tensor(tn::part_of(w.name, p)); };
        if (part(tn::kDeqScale)) {
            q->static_act = true;
            std::vector<float> v;
            TANDEM_TRY(values(w.name, tn::kInputScale, 1, v));
            q->input_scale = v[0];
            TANDEM_TRY(values(w.name, tn::kInputOffset, 1, v));
            q->input_offset = v[0];
            if (!(q->input_scale > 0.0f) || !std::isfinite(q->input_scale))
                return make_error("{}: '{}' is {}: must be a positive number", f_.path(), tn::part_of(w.name, tn::kInputScale),
                                  q->input_scale);
            TANDEM_TRY(values(w.name, tn::kDeqScale, rows, q->scale));
            TANDEM_TRY(int_values(w.name, tn::kQuantBias, rows, q->bias));
        } else {
            if (!part(tn::kWeightScale))
                return make_error("{}: int8 tensor '{}' has neither '{}' nor '{}'", f_.path(), w.name,
                                  tn::part_of(w.name, tn::kWeightScale), tn::part_of(w.name, tn::kDeqScale));
            TANDEM_TRY(values(w.name, tn::kWeightScale, rows, q->scale));
            for (const char* z : {tn::kWeightOffset, tn::kWeightZeroPoint})
                if (part(z)) {
                    TANDEM_TRY(values(w.name, z, rows, q->zero));
                    if (std::all_of(q->zero.begin(), q->zero.end(), [](float v) { return v == 0.0f; })) q->zero.clear();
                }
        }
        w.int8 = std::move(q);
        return {};
    }

    Error missing(const std::string& name) const {
        if (f_.version() == 0) {  // a view of a Hugging Face folder: name its tensor
            std::string hf = hf_name_of(name);
            if (hf.empty()) hf = hf_name_of(name, 0);
            if (!hf.empty()) return make_error("{}: missing tensor '{}'", f_.path(), hf);
        }
        return make_error("{}: missing tensor '{}'", f_.path(), name);
    }

private:
    std::string label(const GgufTensorInfo& t) const { return t.source.empty() ? t.name : t.source; }

    // n values of the companion `part` of weight `weight` as floats: any float or integer type;
    // an I64 deq_scale holds float32 bits in its low 32 bits (MindIE's float16 checkpoints).
    Status values(const std::string& weight, const char* part, int64_t n, std::vector<float>& out) {
        const std::string name = tn::part_of(weight, part);
        const GgufTensorInfo* t = f_.tensor(name);
        if (!t) return missing(name);
        int64_t count = 1;
        for (int64_t d : t->ne) count *= d;
        if (count != n)
            return make_error("{}: '{}' has {} values, {} needs {}", f_.path(), label(*t), count, weight, n);
        out.resize((size_t)n);
        if (!t->data) {  // a layout view (inspect) leaves stacks that need gathering unread
            std::fill(out.begin(), out.end(), 0.0f);
            return {};
        }
        if (t->type == DType::I64 && std::string_view(part) == tn::kDeqScale) {
            for (int64_t i = 0; i < n; ++i) {
                int64_t v;
                std::memcpy(&v, t->data + 8 * i, 8);
                const uint32_t bits = (uint32_t)(v & 0xffffffff);
                std::memcpy(&out[(size_t)i], &bits, 4);
            }
            return {};
        }
        if (traits(t->type).is_quantized)
            return make_error("{}: '{}' has type {}", f_.path(), label(*t), dtype_name(t->type));
        ref::dequantize_row(t->type, t->data, out.data(), n);
        return {};
    }

    // The same for int32 values (quant_bias: exact, beyond float's 24 bits).
    Status int_values(const std::string& weight, const char* part, int64_t n, std::vector<int32_t>& out) {
        const GgufTensorInfo* t = f_.tensor(tn::part_of(weight, part));
        if (t && t->type == DType::I32 && t->data) {
            int64_t count = 1;
            for (int64_t d : t->ne) count *= d;
            if (count != n) return make_error("{}: '{}' has {} values, {} needs {}", f_.path(), label(*t), count, weight, n);
            out.resize((size_t)n);
            std::memcpy(out.data(), t->data, (size_t)n * 4);
            return {};
        }
        std::vector<float> v;
        TANDEM_TRY(values(weight, part, n, v));
        out.resize((size_t)n);
        for (int64_t i = 0; i < n; ++i) out[(size_t)i] = (int32_t)std::lrint(v[(size_t)i]);
        return {};
    }

    Status check_shape(const GgufTensorInfo& t, const std::vector<int64_t>& shape) {
        std::vector<int64_t> ne = t.ne;
        while (ne.size() > shape.size() && ne.back() == 1) ne.pop_back();
        if (ne == shape) return {};
        if (!t.source.empty())  // a translated tensor: its own name and shape order (reversed)
            return make_error("{}/{} has shape [{}], but config.json implies [{}]", f_.path(), t.source,
                              fmt::join(std::vector<int64_t>(t.ne.rbegin(), t.ne.rend()), ", "),
                              fmt::join(std::vector<int64_t>(shape.rbegin(), shape.rend()), ", "));
        return make_error("{}: tensor '{}' has shape [{}], expected [{}]", f_.path(), t.name, fmt::join(t.ne, ", "),
                          fmt::join(shape, ", "));
    }
    const GgufFile& f_;
};

}  // namespace

Result<GgufFile> Model::open_file(const std::string& path, ViewFor purpose) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
        return is_merged_folder(path) ? open_merged_folder(path, purpose) : open_hf_checkpoint(path, purpose);
    return GgufFile::open(path);
}

Result<std::unique_ptr<Model>> Model::load(const std::string& path, const LoadOptions& opt) {
    auto m = std::make_unique<Model>();
    TANDEM_ASSIGN(m->file_, open_file(path, opt.for_inspect ? ViewFor::layout : ViewFor::compute));
    if (!opt.experts_gguf.empty()) {
        TANDEM_ASSIGN(m->file_, join_gguf_experts(std::move(m->file_), opt.experts_gguf,
                                                  fmt::format("{} with the experts of {}", path, opt.experts_gguf)));
    }
    TANDEM_ASSIGN(m->hp_, HParams::from_gguf(m->file_));
    if (!opt.for_inspect && !opt.for_tools) TANDEM_TRY(m->hp_.check_forward_support(path));
    TANDEM_TRY(m->bind());
    return m;
}

Status Model::bind() {
    Binder b(file_);
    HParams& h = hp_;
    const GgufTensorInfo* embd = file_.tensor(tn::kTokenEmbd);
    if (!embd) return b.missing(tn::kTokenEmbd);
    if (embd->ne.size() != 2) return make_error("{}: tensor '{}' must be 2-D", file_.path(), tn::kTokenEmbd);
    h.n_vocab = embd->ne[1];
    TANDEM_TRY(b.matrix(tn::kTokenEmbd, {h.n_embd, h.n_vocab}, token_embd_));
    TANDEM_TRY(b.vector(tn::kOutputNorm, h.n_embd, output_norm_));
    if (file_.tensor(tn::kOutput)) {
        TANDEM_TRY(b.matrix(tn::kOutput, {h.n_embd, h.n_vocab}, output_));
    } else {
        output_ = token_embd_;  // tied embeddings
    }
    if (h.arch == Arch::qwen3moe && h.n_ff_exp == 0) {
        const GgufTensorInfo* g = file_.tensor(tn::layer(0, tn::kFfnGateExps));
        if (g && g->ne.size() == 3) h.n_ff_exp = g->ne[1];
    }

    layers_.resize((size_t)h.n_layer);
    for (int il = 0; il < (int)h.n_layer; ++il) {
        LayerWeights& l = layers_[(size_t)il];
        auto n = [il](const char* s) { return tn::layer(il, s); };
        TANDEM_TRY(b.vector(n(tn::kAttnNorm), h.n_embd, l.attn_norm));
        TANDEM_TRY(b.bias(n(tn::kAttnNorm), h.n_embd, l.attn_norm_bias));
        TANDEM_TRY(b.bias(n(tn::kFfnNorm), h.n_embd, l.ffn_norm_bias));
        TANDEM_TRY(b.vector(n(tn::kAttnQNorm), h.head_dim, l.attn_q_norm));
        TANDEM_TRY(b.vector(n(tn::kAttnKNorm), h.head_dim, l.attn_k_norm));
        TANDEM_TRY(b.vector(n(tn::kFfnNorm), h.n_embd, l.ffn_norm));
        TANDEM_TRY(b.matrix(n(tn::kAttnQ), {h.n_embd, h.n_q()}, l.wq));
        TANDEM_TRY(b.matrix(n(tn::kAttnK), {h.n_embd, h.n_kv()}, l.wk));
        TANDEM_TRY(b.matrix(n(tn::kAttnV), {h.n_embd, h.n_kv()}, l.wv));
        TANDEM_TRY(b.matrix(n(tn::kAttnOutput), {h.n_q(), h.n_embd}, l.wo));
        if (h.arch == Arch::qwen3moe) {
            TANDEM_TRY(b.matrix(n(tn::kFfnGateInp), {h.n_embd, h.n_expert}, l.ffn_gate_inp));
            TANDEM_TRY(b.matrix(n(tn::kFfnGateExps), {h.n_embd, h.n_ff_exp, h.n_expert}, l.ffn_gate_exps));
            TANDEM_TRY(b.matrix(n(tn::kFfnUpExps), {h.n_embd, h.n_ff_exp, h.n_expert}, l.ffn_up_exps));
            TANDEM_TRY(b.matrix(n(tn::kFfnDownExps), {h.n_ff_exp, h.n_embd, h.n_expert}, l.ffn_down_exps));
            // int8 experts: dynamic activations only (one int8 row per token serves every expert),
            // gate and up alike (they share it)
            for (const Tensor* t : {&l.ffn_gate_exps, &l.ffn_up_exps, &l.ffn_down_exps})
                if (t->int8 && t->int8->static_act)
                    return make_error("{}: '{}' is static W8A8 (input_scale per expert): routed experts run W8A8_DYNAMIC "
                                      "or float/GGUF weights",
                                      file_.path(), t->name);
            if ((bool)l.ffn_gate_exps.int8 != (bool)l.ffn_up_exps.int8)
                return make_error("{}: '{}' and '{}' must both be int8 or neither", file_.path(), l.ffn_gate_exps.name,
                                  l.ffn_up_exps.name);
        } else {
            TANDEM_TRY(b.matrix(n(tn::kFfnGate), {h.n_embd, h.n_ff}, l.ffn_gate));
            TANDEM_TRY(b.matrix(n(tn::kFfnUp), {h.n_embd, h.n_ff}, l.ffn_up));
            TANDEM_TRY(b.matrix(n(tn::kFfnDown), {h.n_ff, h.n_embd}, l.ffn_down));
        }
    }
    log::debug("{}: bound {} layers", file_.path(), h.n_layer);
    return {};
}

}  // namespace tandem
