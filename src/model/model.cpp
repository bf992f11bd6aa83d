#include "model/model.h"

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
        return {};
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

    Error missing(const std::string& name) const {
        if (f_.version() == 0) {  // a view of a Hugging Face folder: name its tensor
            std::string hf = hf_name_of(name);
            if (hf.empty()) hf = hf_name_of(name, 0);
            if (!hf.empty()) return make_error("{}: missing tensor '{}'", f_.path(), hf);
        }
        return make_error("{}: missing tensor '{}'", f_.path(), name);
    }

private:
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

Result<std::unique_ptr<Model>> Model::load(const std::string& path, bool for_inspect) {
    auto m = std::make_unique<Model>();
    TANDEM_ASSIGN(m->file_, open_file(path, for_inspect ? ViewFor::layout : ViewFor::compute));
    TANDEM_ASSIGN(m->hp_, HParams::from_gguf(m->file_));
    if (!for_inspect) TANDEM_TRY(m->hp_.check_forward_support(path));
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
