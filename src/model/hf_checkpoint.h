// Hugging Face checkpoint folders (config.json, tokenizer.json + tokenizer_config.json, safetensors
// weights, sharded or not) seen as a GGUF-named view: the metadata a GGUF file of the same model
// would hold and its tensors under GGUF names, so that hparams, weights binding, tokenizer, chat
// template and `inspect` work on both formats alike. Per-expert tensors become the stacked 3-D
// `blk.N.ffn_{gate,up,down}_exps` tensors the forward expects.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"
#include "formats/gguf.h"
#include "formats/hf_config.h"
#include "formats/hf_tokenizer.h"

namespace tandem {

using GgufMetadata = std::vector<std::pair<std::string, GgufValue>>;

// GGUF metadata (architecture and hyper-parameters) of a config.json.
GgufMetadata hf_config_metadata(const HfConfig& c, const std::string& name);
// GGUF tokenizer.* metadata of a Hugging Face tokenizer.
GgufMetadata tokenizer_metadata(const HfTokenizer& tok);

// Where a Hugging Face tensor goes: its GGUF name; for a per-expert tensor, the stack's name and
// the expert index. `part` is "weight", or a companion (W8A8 parameters of a linear layer,
// tn::kQuantParts; "bias" of a norm), whose GGUF name ends in ".{part}" instead of ".weight".
struct HfNameMapping {
    std::string gguf;
    int layer = -1;
    int expert = -1;
    std::string part = "weight";
};
std::optional<HfNameMapping> map_hf_name(std::string_view hf_name);
// The Hugging Face name of a GGUF tensor or companion (of expert `expert` when it is a stack);
// empty if none.
std::string hf_name_of(std::string_view gguf_name, int expert = -1);

// What a view is opened for: computing (every tensor readable), looking at the layout (expert
// stacks that would need a copy have no data), or the tokenizer (metadata only, no weights).
enum class ViewFor { compute, layout, tokenizer };

// Opens the folder. Experts stored back to back in one shard in expert order are used in place;
// otherwise each stack is copied once into one owned buffer (see DESIGN.md).
Result<GgufFile> open_hf_checkpoint(const std::string& dir, ViewFor purpose = ViewFor::compute);

}  // namespace tandem
