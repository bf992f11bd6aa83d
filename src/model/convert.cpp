#include "model/convert.h"

#include <cstring>
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

}  // namespace

Status convert_model(const std::string& in, const std::string& out, const ConvertOptions& opts,
                     const std::function<void(size_t, size_t)>& progress) {
    TANDEM_ASSIGN(GgufFile file, Model::open_file(in, ViewFor::compute));
    auto src = std::make_shared<GgufFile>(std::move(file));
    TANDEM_ASSIGN(HParams hp, HParams::from_gguf(*src));
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
        int64_t il = 0;
        const auto role = tensor_role(t.name, il);
        if (!role) {
            unknown.push_back(t.name);
            continue;
        }
        if (!t.data) return make_error("{}: tensor '{}' has no data", in, t.name);
        const DType to = t.ne.size() == 1 ? DType::F32 : quant_mix_type(opts.quant, shape, *role, il, t.ne[0]);
        const GgufTensorInfo* tp = &t;
        TANDEM_TRY(w.add_tensor(t.name, to, t.ne, [src, tp, to, pool](uint8_t* dst, size_t n_bytes) -> Status {
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
