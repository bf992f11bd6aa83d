#include "core/dtype.h"

#include <array>
#include <cctype>
#include <string>

namespace tandem {
namespace {

struct Entry {
    DType type;
    DTypeTraits traits;
};

constexpr std::array<Entry, 19> kTypes = {{
    {DType::F32, {"F32", 1, 4, false}},
    {DType::F16, {"F16", 1, 2, false}},
    {DType::BF16, {"BF16", 1, 2, false}},
    {DType::Q4_0, {"Q4_0", 32, 18, true}},
    {DType::Q5_0, {"Q5_0", 32, 22, true}},
    {DType::Q8_0, {"Q8_0", 32, 34, true}},
    {DType::Q4_1, {"Q4_1", 32, 20, true}},
    {DType::Q5_1, {"Q5_1", 32, 24, true}},
    {DType::IQ4_NL, {"IQ4_NL", 32, 18, true}},
    {DType::Q2_K, {"Q2_K", 256, 84, true}},
    {DType::Q3_K, {"Q3_K", 256, 110, true}},
    {DType::IQ4_XS, {"IQ4_XS", 256, 136, true}},
    {DType::Q4_K, {"Q4_K", 256, 144, true}},
    {DType::Q5_K, {"Q5_K", 256, 176, true}},
    {DType::Q6_K, {"Q6_K", 256, 210, true}},
    {DType::Q8_K, {"Q8_K", 256, 292, true}},
    {DType::I8, {"I8", 1, 1, false}},
    {DType::I32, {"I32", 1, 4, false}},
    {DType::I64, {"I64", 1, 8, false}},
}};

}  // namespace

std::optional<DTypeTraits> dtype_traits(uint32_t type_id) {
    for (const auto& e : kTypes)
        if ((uint32_t)e.type == type_id) return e.traits;
    return std::nullopt;
}

const DTypeTraits& traits(DType t) {
    for (const auto& e : kTypes)
        if (e.type == t) return e.traits;
    return kTypes[0].traits;  // unreachable for valid enum values
}

std::optional<DType> dtype_from_name(std::string_view name) {
    std::string up(name);
    for (auto& c : up) c = (char)std::toupper((unsigned char)c);
    for (const auto& e : kTypes)
        if (e.traits.name == up) return e.type;
    return std::nullopt;
}

std::string_view ggml_type_name(uint32_t type_id) {
    if (auto t = dtype_traits(type_id)) return t->name;
    static constexpr std::array<std::string_view, 43> kNames = {
        "F32",  "F16",  "Q4_0", "Q4_1",   "Q4_2",    "Q4_3",    "Q5_0",   "Q5_1",   "Q8_0",    "Q8_1",
        "Q2_K", "Q3_K", "Q4_K", "Q5_K",   "Q6_K",    "Q8_K",    "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
        "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8",    "I16",     "I32",    "I64",    "F64",     "IQ1_M",
        "BF16", "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8",
        "IQ4_NL_8_8", "MXFP4", "NVFP4", "Q1_0", "Q2_0"};
    if (type_id < kNames.size()) return kNames[type_id];
    return "unknown";
}

}  // namespace tandem
