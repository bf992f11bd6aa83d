// The accelerator's part of the hybrid forward: everything but the routed experts (embedding,
// norms, attention over the device's own paged KV cache, router, dense FFNs, LM head). The CPU
// Forward (forward.h) drives it layer by layer and computes the routed experts in between:
//
//   begin(batch)                         tokens -> hidden states on the device
//   per MoE layer:   attention_and_route   attention block, residual, FFN norm, router top-k;
//                                          the normed hidden states and the routing come back
//                    (CPU: routed experts over them)
//                    add_ffn               the experts' output goes back into the residual
//   per dense layer: dense_layer           the whole layer on the device
//   logits(rows)                         final norm + LM head of the wanted rows, to the host
//
// An implementation keeps its own KV pages, numbered as the host's page tables number them (the
// scheduler's block tables apply unchanged); the host KvPool of a hybrid Forward holds no data.
// Host pointers handed out stay valid until the next call.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace tandem {

class Model;

class DeviceLayers {
public:
    virtual ~DeviceLayers() = default;
    virtual std::string name() const = 0;  // "cuda:0 (NVIDIA H100 80GB HBM3)"
    // True when this device half computes on the CPU (cpu_device_layers.h): its matrices want the
    // CPU's packed layouts too.
    virtual bool on_host() const { return false; }

    // (Re)allocates the device KV cache for a pool of n_pages pages of page_size positions.
    virtual Status make_pool(int64_t page_size, int64_t n_pages) = 0;

    // Starts a batch: token t at position pos[t] of the sequence whose block table is pages[t]
    // (tokens of one sequence are contiguous and share the pointer). Embeds the tokens.
    virtual Status begin(const std::vector<int32_t>& tokens, const std::vector<int64_t>& pos,
                         const std::vector<const int32_t*>& pages) = 0;

    struct Routed {  // host memory (pinned), valid until the next call
        const float* x = nullptr;        // (n, D) the FFN's input (normed hidden states); not
                                         // filled for a batch that streams its experts
        const int32_t* ids = nullptr;    // (n, k) experts per token, best first
        const float* weights = nullptr;  // (n, k) their weights, summing to 1 per token
        float* out = nullptr;            // (n, D) where the experts' output goes, for add_ffn()
    };
    virtual Result<Routed> attention_and_route(int il) = 0;
    // Adds Routed::out to the residual of the layer attention_and_route() ran; with_cpu_share
    // false: the CPU computed nothing for the layer (a streamed batch: every pair ran on the
    // device), so there is nothing to add.
    virtual Status add_ffn(bool with_cpu_share = true) = 0;
    virtual Status dense_layer(int il) = 0;

    // Routed experts on the device (--gpu-experts): copies of some experts of some layers live on
    // the device, and the routed pairs whose expert is there run there, concurrently with the
    // CPU's share. Uploads experts[il] of every layer il (their gate/up/down rows as stored),
    // replacing what was placed before; an error naming the bytes when they do not fit.
    virtual Status place_experts(const std::vector<std::vector<int32_t>>& experts) {
        return make_error("{}: routed experts cannot live on this device", name());
    }
    // Per expert of layer il, whether the device holds it; null when it holds none of the layer.
    virtual const std::vector<uint8_t>* experts_on_device(int il) const { return nullptr; }
    // Long prefill batches with every routed expert on the device (--gpu-prefill N): batches of
    // at least `min_tokens` tokens (0: never) run each MoE layer's experts there, the layer's whole
    // expert stacks uploaded as stored when the batch reaches it (the next layer's upload
    // overlapping this layer's work); the CPU computes no expert of such a batch. An error when the
    // device cannot (no room for two layers of experts, a type its kernels lack).
    virtual Status enable_expert_streaming(int64_t min_tokens) {
        if (min_tokens <= 0) return {};
        return make_error("{}: routed experts cannot run on this device", name());
    }
    virtual int64_t stream_experts_from() const { return 0; }
    // Makes every expert of layer il (the layer attention_and_route() ran last) available to
    // run_device_experts() for this batch.
    virtual Status stream_experts(int il) {
        return make_error("{}: routed experts cannot run on this device", name());
    }
    struct ExpertPair {  // one routed (token, expert) pair of the batch
        int32_t token;
        int32_t expert;
        float weight;
    };
    // The pairs (whose experts the device holds, or all when streamed) of the layer
    // attention_and_route() ran last:
    // their weighted sum goes into the residual, queued before add_ffn()'s CPU share, so the CPU
    // computes its experts meanwhile. Pairs in token order.
    virtual Status run_device_experts(const std::vector<ExpertPair>& pairs) {
        return make_error("{}: routed experts cannot run on this device", name());
    }
    // Bytes of device memory one expert of one layer takes (gate + up + down), for sizing
    // --gpu-experts; 0 when experts cannot live there.
    virtual uint64_t expert_bytes() const { return 0; }
    // Device memory left for experts after the weights, the KV pages and the working memory.
    virtual uint64_t free_bytes() const { return 0; }
    // Logits (rows.size(), n_vocab) of the batch rows `rows`, to host memory.
    virtual Status logits(const std::vector<int64_t>& rows, float* out) = 0;
};

struct CudaLayerOptions {
    // Decode steps (batches of up to kMaxGraphTokens tokens) replay each layer's device work as
    // one recorded CUDA graph per (layer, batch size): one launch instead of ~20 kernel launches
    // and copies. Recorded on first use; recorded again after the scratch or the KV pages move.
    bool graphs = false;
    static constexpr int64_t kMaxGraphTokens = 16;
};

// The non-expert layers of `model` on CUDA device `index`, weights uploaded as stored (quantized
// blocks stay quantized), or an error: no CUDA build or device, a weight type the kernels do not
// take, not enough device memory (with the numbers).
Result<std::unique_ptr<DeviceLayers>> make_cuda_layers(const Model& model, int index,
                                                       const CudaLayerOptions& opt = {});

}  // namespace tandem
