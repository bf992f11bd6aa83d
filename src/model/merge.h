// `tandem merge`: one model folder from two checkpoints of the same model, as the seed's merge
// script makes it: the routed experts from a GGUF file (raw quantized blocks, never dequantized)
// and every other tensor from a safetensors checkpoint (Hugging Face folder: BF16, or W8A8 from msModelSlim / compressed-tensors).
//
// The merged folder: config.json, the tokenizer and other non-weight files of the safetensors
// folder; the non-expert tensors copied byte for byte into model*.safetensors (+ index); the expert
// stacks blk.N.ffn_{gate,up,down}_exps copied byte for byte into experts.gguf; and
// tandem-merge.json, the manifest: where each tensor lives and where it came from. Model::load
// opens it as one model (see open_merged_folder).
#pragma once

#include <functional>
#include <string>

#include "core/status.h"
#include "formats/gguf.h"
#include "model/hf_checkpoint.h"

namespace tandem {

inline constexpr const char* kMergeManifest = "tandem-merge.json";
inline constexpr const char* kMergeExpertsFile = "experts.gguf";

// Checks that the two fit together (an error listing every disagreement: hyper-parameters, expert
// count, layer count, shapes, missing tensors), then writes out_dir (created; must not already
// hold a model). progress(tensors done, total).
Status merge_checkpoints(const std::string& st_dir, const std::string& gguf_path, const std::string& out_dir,
                         const std::function<void(size_t, size_t)>& progress = {});

// Whether dir is a merged folder (holds the manifest).
bool is_merged_folder(const std::string& dir);
// The merged folder as one GGUF-named view: the safetensors part as open_hf_checkpoint sees it,
// plus the expert stacks of experts.gguf.
Result<GgufFile> open_merged_folder(const std::string& dir, ViewFor purpose);
// A model whose routed experts come from the GGUF file `experts_path` (its expert stacks as
// stored; a whole GGUF model may be given) and everything else from `dense` (whose own experts
// and their W8A8 parameters give way): what `merge` writes, without writing it (`-m DIR --experts
// FILE`). `kind` names the result in messages.
Result<GgufFile> join_gguf_experts(GgufFile dense, const std::string& experts_path, const std::string& kind);

}  // namespace tandem
