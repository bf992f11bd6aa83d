// A loaded model: hyper-parameters, the GGUF file or Hugging Face folder (mmapped, seen under GGUF
// names) and typed views of its weights.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/anon_buffer.h"
#include "core/dtype.h"
#include "core/status.h"
#include "formats/gguf.h"
#include "model/hf_checkpoint.h"
#include "model/hparams.h"

namespace tandem {
class ThreadPool;
}

namespace tandem {

// The parameters of an int8 (W8A8) matrix, per output row (kernels/reference/int8.h):
//  static (msModelSlim W8A8): x_q = clamp(round(x / input_scale + input_offset)),
//    y[r] = (acc[r] + bias[r]) * scale[r]            (scale = deq_scale, bias = quant_bias);
//  dynamic (W8A8_DYNAMIC, compressed-tensors): s = max|x| / 127, x_q = round(x / s),
//    y[r] = (acc[r] - zero[r] * sum(x_q)) * s * scale[r]   (scale = weight_scale; zero optional).
struct Int8Linear {
    bool static_act = false;
    float input_scale = 1.0f, input_offset = 0.0f;
    std::vector<float> scale;     // (rows)
    std::vector<int32_t> bias;    // (rows) static only
    std::vector<float> zero;      // (rows) dynamic, empty when the weights are symmetric
};

// A view of one weight tensor in the mapped file. Matrices hold rows of ne[0] elements;
// expert stacks are 3-D: (ne[0], ne[1], n_expert), expert e's rows start at row e * ne[1].
struct Tensor {
    std::string name;
    DType type = DType::F32;
    int64_t ne[4] = {1, 1, 1, 1};
    const uint8_t* data = nullptr;
    size_t row_bytes = 0;
    // The packed copy the CPU kernels use instead (kernels/reference/packed.h), made by
    // Model::pack_for_cpu: rows 16g .. 16g + 15 at packed + g * packed_group_bytes; null if none.
    const uint8_t* packed = nullptr;
    size_t packed_group_bytes = 0;
    std::shared_ptr<const Int8Linear> int8;  // type I8 only

    int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
    const uint8_t* row(int64_t r) const { return data + (size_t)r * row_bytes; }
    size_t n_bytes() const { return (size_t)n_rows() * row_bytes; }
};

struct LayerWeights {
    std::vector<float> attn_norm;   // (D)
    std::vector<float> attn_norm_bias, ffn_norm_bias;  // (D) or empty: msModelSlim anti-outlier smoothing
    std::vector<float> attn_q_norm; // (head_dim)
    std::vector<float> attn_k_norm; // (head_dim)
    std::vector<float> ffn_norm;    // (D)
    Tensor wq;                      // (D, n_head * head_dim)
    Tensor wk;                      // (D, n_head_kv * head_dim)
    Tensor wv;                      // (D, n_head_kv * head_dim)
    Tensor wo;                      // (n_head * head_dim, D)
    // MoE
    Tensor ffn_gate_inp;            // (D, n_expert)
    Tensor ffn_gate_exps;           // (D, n_ff_exp, n_expert)
    Tensor ffn_up_exps;             // (D, n_ff_exp, n_expert)
    Tensor ffn_down_exps;           // (n_ff_exp, D, n_expert)
    // dense FFN (qwen3)
    Tensor ffn_gate;                // (D, n_ff)
    Tensor ffn_up;                  // (D, n_ff)
    Tensor ffn_down;                // (n_ff, D)
};

struct LoadOptions {
    // accept hyper-parameters the forward does not implement (e.g. YaRN), and do not gather
    // expert stacks (their `data` may be null)
    bool for_inspect = false;
    // accept hyper-parameters the forward does not implement, but gather everything (convert)
    bool for_tools = false;
    // a GGUF file whose routed-expert stacks replace the model's (the seed's weight set without
    // running `tandem merge`: `-m W8A8_FOLDER --experts Q4_K_M.gguf`)
    std::string experts_gguf;

    static LoadOptions inspect() {
        LoadOptions o;
        o.for_inspect = true;
        return o;
    }
    // every tensor readable, YaRN etc. accepted: for tools that copy weights (convert)
    static LoadOptions convert() {
        LoadOptions o;
        o.for_tools = true;
        return o;
    }
    static LoadOptions with_experts(std::string gguf) {
        LoadOptions o;
        o.experts_gguf = std::move(gguf);
        return o;
    }
};

class Model {
public:
    // `path`: a .gguf file (the first of split files), a Hugging Face checkpoint folder or a folder
    // written by `tandem merge`.
    static Result<std::unique_ptr<Model>> load(const std::string& path, const LoadOptions& opt = {});
    // The weights and metadata of `path` under GGUF names, without binding them.
    static Result<GgufFile> open_file(const std::string& path, ViewFor purpose = ViewFor::compute);

    const HParams& hparams() const { return hp_; }
    const GgufFile& file() const { return file_; }
    const Tensor& token_embd() const { return token_embd_; }  // (D, n_vocab)
    const std::vector<float>& output_norm() const { return output_norm_; }  // (D)
    const Tensor& output() const { return output_; }  // (D, n_vocab); token_embd when tied
    const LayerWeights& layer(int il) const { return layers_[(size_t)il]; }

    // Repacks every matrix the CPU's best kernels can run packed (Q4_K/Q6_K with 16-row groups,
    // where the chosen ISA has packed kernels) into anonymous memory, once, on `pool`. The GGUF
    // blocks stay mapped (the embedding lookup, uploads and tools read them), but their pages
    // leave the resident set (GgufFile::release_pages). Logs what it did.
    // experts_only: the routed experts only (the hybrid forward runs the rest on the device).
    Status pack_for_cpu(ThreadPool& pool, bool experts_only = false);
    size_t packed_bytes() const { return packed_.size(); }

private:
    Status bind();

    HParams hp_;
    GgufFile file_;
    Tensor token_embd_;
    std::vector<float> output_norm_;
    Tensor output_;
    std::vector<LayerWeights> layers_;
    AnonBuffer packed_;  // every packed matrix, 64-byte aligned one after the other
};

}  // namespace tandem
