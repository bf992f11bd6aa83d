// The W8A8 quantization of a Hugging Face checkpoint folder, read from its own description and
// checked against its tensors before anything is bound:
//  - msModelSlim / MindIE (the seed's weights): quant_model_description*.json maps every tensor to
//    FLOAT, W8A8 (static: int8 weight + input_scale, input_offset, deq_scale, quant_bias) or
//    W8A8_DYNAMIC (int8 weight + weight_scale [, weight_offset]; activations per token);
//  - compressed-tensors (vLLM / llm-compressor): config.json `quantization_config` with
//    quant_method "compressed-tensors", format "int-quantized": int8 weights with a per-channel
//    weight_scale, dynamic per-token int8 activations, an `ignore` list of names and "re:" regexes.
// Both become the same thing in the GGUF-named view: an I8 weight with its parameters beside it
// ("blk.N.attn_q.deq_scale", ...), which Model binds into an Int8Linear.
#pragma once

#include <string>

#include "core/status.h"
#include "formats/safetensors.h"

namespace tandem {

enum class HfQuantFormat { none, msmodelslim, compressed_tensors };

struct HfQuant {
    HfQuantFormat format = HfQuantFormat::none;
    std::string source;  // the description file, or config.json
};

const char* hf_quant_format_name(HfQuantFormat f);

// Reads and checks the folder's quantization (none when the folder has no description and no
// quantization_config). Errors list every problem found: description entries naming absent
// tensors, unsupported schemes, int8 weights without their parameters, int8 weights the
// description calls FLOAT or the ignore list excludes.
Result<HfQuant> read_hf_quantization(const std::string& dir, const SafetensorsSet& st);

}  // namespace tandem
