// Element / block types of weights and activations. Values are the GGUF (ggml) type ids.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace tandem {

enum class DType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ4_NL = 20,
    IQ4_XS = 23,
    I8 = 24,   // W8A8 weights (with their scales beside them) and quantization parameters
    I32 = 26,
    I64 = 27,
    BF16 = 30,
};

struct DTypeTraits {
    std::string_view name;
    int64_t block_size;   // elements per block
    size_t block_bytes;   // bytes per block
    bool is_quantized;
};

// Traits of a supported type; nullopt for a type id Tandem does not know.
std::optional<DTypeTraits> dtype_traits(uint32_t type_id);
const DTypeTraits& traits(DType t);

inline std::string_view dtype_name(DType t) { return traits(t).name; }
std::optional<DType> dtype_from_name(std::string_view name);  // "q4_k", "Q4_K", "f16", ...

// Bytes of one row of n elements (n must be a multiple of the block size).
inline size_t row_bytes(DType t, int64_t n) {
    const auto& tr = traits(t);
    return (size_t)(n / tr.block_size) * tr.block_bytes;
}

// Name of a ggml type id even when Tandem cannot use it (for error messages).
std::string_view ggml_type_name(uint32_t type_id);

}  // namespace tandem
