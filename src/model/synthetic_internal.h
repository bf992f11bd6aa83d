// The pieces of the synthetic model writers shared by synthetic.cpp (GGUF, HF float folders) and
// synthetic_w8a8.cpp (W8A8 folders). Not for use elsewhere.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "formats/hf_config.h"
#include "model/quant_mix.h"
#include "model/synthetic.h"

namespace tandem::synthetic {

struct Planned {
    std::string name;  // GGUF name
    TensorRole role;
    int64_t il;
    std::vector<int64_t> ne;
    float std;         // weights ~ N(mean, std)
    float mean = 0.0f;

    int64_t n_rows() const {
        int64_t n = 1;
        for (size_t d = 1; d < ne.size(); ++d) n *= ne[d];
        return n;
    }
};

// Every tensor of the model under its GGUF name, in GGUF file order.
std::vector<Planned> make_plan(const SyntheticSpec& s);
DType choose_type(const SyntheticSpec& s, TensorRole role, int64_t il, int64_t row);
// Rows [r0, r1) of p in `type` at dst (each row seeded by the tensor name and its row index).
Status fill_rows(const Planned& p, DType type, uint64_t seed, int64_t r0, int64_t r1, uint8_t* dst, ThreadPool& pool);
// The same rows as floats holding exactly the values a `type` file has (quantized, dequantized).
void float_rows(const Planned& p, DType type, uint64_t seed, int64_t r0, int64_t r1, float* dst, ThreadPool& pool);
HfConfig hf_config_of(const SyntheticSpec& s);
// Creates dir and copies tokenizer.json + tokenizer_config.json into it.
Status make_folder_with_tokenizer(const std::string& dir, const std::string& tokenizer_dir);
Status write_hf(const SyntheticSpec& s, const std::string& tokenizer_dir, const std::string& dir, int n_threads,
                const std::function<void(size_t, size_t)>& progress);
Status write_w8a8(const SyntheticSpec& s, const std::string& tokenizer_dir, const std::string& dir, int n_threads,
                  const std::function<void(size_t, size_t)>& progress);

}  // namespace tandem::synthetic
