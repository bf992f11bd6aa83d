// `tandem convert`: any model Tandem opens (a GGUF file, a Hugging Face folder, a merged folder)
// written as one GGUF file in a quantization mix: what llama.cpp's convert + quantize scripts do.
#pragma once

#include <functional>
#include <string>

#include "core/status.h"
#include "model/quant_mix.h"

namespace tandem {

struct ConvertOptions {
    QuantMix quant = QuantMix::f16;
    int n_threads = 1;
    int n_split = 1;  // GGUF split files
};

// progress(tensors done, total) after each tensor. A tensor already in its target type is copied
// as is; any other is dequantized to F32 row by row and quantized again.
Status convert_model(const std::string& in, const std::string& out, const ConvertOptions& opts,
                     const std::function<void(size_t, size_t)>& progress = {});

}  // namespace tandem
