#include <cstring>
#include <limits>

#include "formats/gguf.h"

namespace tandem {
namespace {

size_t scalar_size(GgufType t) {
    switch (t) {
        case GgufType::U8: case GgufType::I8: case GgufType::BOOL: return 1;
        case GgufType::U16: case GgufType::I16: return 2;
        case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
        case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
        default: return 0;
    }
}

template <typename T>
T load(const uint8_t* p) {
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}

}  // namespace

const char* gguf_type_name(GgufType t) {
    static constexpr const char* kNames[] = {"u8",  "i8",     "u16",   "i16", "u32", "i32", "f32",
                                             "bool", "string", "array", "u64", "i64", "f64"};
    auto i = (uint32_t)t;
    return i < 13 ? kNames[i] : "invalid";
}

bool GgufValue::is_integer() const {
    switch (type) {
        case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16:
        case GgufType::U32: case GgufType::I32: case GgufType::U64: case GgufType::I64:
            return true;
        default: return false;
    }
}

int64_t GgufValue::as_int() const {
    switch (type) {
        case GgufType::I8: case GgufType::I16: case GgufType::I32: case GgufType::I64: return i;
        case GgufType::BOOL: return (int64_t)u;
        case GgufType::F32: case GgufType::F64: return (int64_t)f;
        default:
            return u > (uint64_t)std::numeric_limits<int64_t>::max() ? std::numeric_limits<int64_t>::max()
                                                                      : (int64_t)u;
    }
}

double GgufValue::as_double() const {
    if (is_float()) return f;
    if (type == GgufType::I8 || type == GgufType::I16 || type == GgufType::I32 || type == GgufType::I64)
        return (double)i;
    return (double)u;
}

int64_t GgufValue::array_int(uint64_t k) const {
    const uint8_t* p = raw.data() + k * scalar_size(array_type);
    switch (array_type) {
        case GgufType::U8: case GgufType::BOOL: return *p;
        case GgufType::I8: return (int8_t)*p;
        case GgufType::U16: return load<uint16_t>(p);
        case GgufType::I16: return load<int16_t>(p);
        case GgufType::U32: return load<uint32_t>(p);
        case GgufType::I32: return load<int32_t>(p);
        case GgufType::U64: return (int64_t)load<uint64_t>(p);
        case GgufType::I64: return load<int64_t>(p);
        case GgufType::F32: return (int64_t)load<float>(p);
        case GgufType::F64: return (int64_t)load<double>(p);
        default: return 0;
    }
}

double GgufValue::array_double(uint64_t k) const {
    const uint8_t* p = raw.data() + k * scalar_size(array_type);
    if (array_type == GgufType::F32) return load<float>(p);
    if (array_type == GgufType::F64) return load<double>(p);
    return (double)array_int(k);
}

std::string GgufValue::to_string(size_t max_items) const {
    switch (type) {
        case GgufType::STRING: {
            std::string s = str.size() > 80 ? str.substr(0, 77) + "..." : str;
            for (auto& c : s)
                if (c == '\n') c = ' ';
            return "\"" + s + "\"";
        }
        case GgufType::BOOL: return u ? "true" : "false";
        case GgufType::F32: case GgufType::F64: return fmt::format("{:g}", f);
        case GgufType::ARRAY: {
            std::string s = fmt::format("[{} x {}]", array_len, gguf_type_name(array_type));
            size_t n = std::min<uint64_t>(array_len, max_items);
            if (n == 0) return s;
            s += " ";
            for (size_t k = 0; k < n; ++k) {
                if (k) s += ", ";
                if (array_type == GgufType::STRING) s += "\"" + strings[k] + "\"";
                else if (array_type == GgufType::ARRAY) s += items[k].to_string(2);
                else if (array_type == GgufType::F32 || array_type == GgufType::F64) s += fmt::format("{:g}", array_double(k));
                else s += std::to_string(array_int(k));
            }
            if (array_len > n) s += ", ...";
            return s;
        }
        default: return is_integer() && (type == GgufType::I8 || type == GgufType::I16 || type == GgufType::I32 || type == GgufType::I64)
                            ? std::to_string(i) : std::to_string(u);
    }
}

GgufValue GgufValue::of_u32(uint32_t v) { GgufValue x; x.type = GgufType::U32; x.u = v; return x; }
GgufValue GgufValue::of_u16(uint16_t v) { GgufValue x; x.type = GgufType::U16; x.u = v; return x; }
GgufValue GgufValue::of_u64(uint64_t v) { GgufValue x; x.type = GgufType::U64; x.u = v; return x; }
GgufValue GgufValue::of_i32(int32_t v) { GgufValue x; x.type = GgufType::I32; x.i = v; return x; }
GgufValue GgufValue::of_f32(float v) { GgufValue x; x.type = GgufType::F32; x.f = v; return x; }
GgufValue GgufValue::of_bool(bool v) { GgufValue x; x.type = GgufType::BOOL; x.u = v ? 1 : 0; return x; }
GgufValue GgufValue::of_string(std::string v) {
    GgufValue x;
    x.type = GgufType::STRING;
    x.str = std::move(v);
    return x;
}
GgufValue GgufValue::of_strings(std::vector<std::string> v) {
    GgufValue x;
    x.type = GgufType::ARRAY;
    x.array_type = GgufType::STRING;
    x.array_len = v.size();
    x.strings = std::move(v);
    return x;
}
GgufValue GgufValue::of_i32_array(const std::vector<int32_t>& v) {
    GgufValue x;
    x.type = GgufType::ARRAY;
    x.array_type = GgufType::I32;
    x.array_len = v.size();
    x.raw.resize(v.size() * 4);
    if (!v.empty()) std::memcpy(x.raw.data(), v.data(), x.raw.size());
    return x;
}
GgufValue GgufValue::of_f32_array(const std::vector<float>& v) {
    GgufValue x;
    x.type = GgufType::ARRAY;
    x.array_type = GgufType::F32;
    x.array_len = v.size();
    x.raw.resize(v.size() * 4);
    if (!v.empty()) std::memcpy(x.raw.data(), v.data(), x.raw.size());
    return x;
}

int64_t GgufTensorInfo::n_elements() const {
    int64_t n = 1;
    for (auto d : ne) n *= d;
    return ne.empty() ? 0 : n;
}

}  // namespace tandem
