#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <limits>
#include <regex>

#include "formats/gguf.h"

namespace tandem {
namespace {

constexpr int kMaxArrayNesting = 4;
constexpr uint64_t kMaxNameLength = 1 << 16;

// Bounds-checked little-endian reads; every error names the file, the field and the offset.
class Cursor {
public:
    Cursor(const uint8_t* data, size_t size, const std::string& file) : p_(data), size_(size), file_(file) {}

    size_t pos() const { return pos_; }
    size_t remaining() const { return size_ - pos_; }

    template <typename T>
    Status read(T& out, const std::string& field) {
        if (remaining() < sizeof(T))
            return make_error("{}: truncated or corrupt file: {} at offset {} needs {} bytes, {} left", file_, field, pos_,
                              sizeof(T), remaining());
        std::memcpy(&out, p_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return {};
    }

    Status read_string(std::string& out, const std::string& field, uint64_t max_len = UINT64_MAX) {
        uint64_t len = 0;
        TANDEM_TRY(read(len, field + " (length)"));
        if (len > remaining())
            return make_error("{}: truncated or corrupt file: {} at offset {} claims {} bytes but only {} remain", file_, field, pos_, len,
                              remaining());
        if (len > max_len) return make_error("{}: {} is {} bytes long (limit {})", file_, field, len, max_len);
        out.assign(reinterpret_cast<const char*>(p_ + pos_), len);
        pos_ += len;
        return {};
    }

    Status read_bytes(std::vector<uint8_t>& out, uint64_t n, const std::string& field) {
        if (n > remaining())
            return make_error("{}: truncated or corrupt file: {} at offset {} needs {} bytes but only {} remain", file_, field, pos_, n,
                              remaining());
        out.assign(p_ + pos_, p_ + pos_ + n);
        pos_ += n;
        return {};
    }

    const std::string& file() const { return file_; }

private:
    const uint8_t* p_;
    size_t size_;
    size_t pos_ = 0;
    const std::string& file_;
};

size_t fixed_size(GgufType t) {
    switch (t) {
        case GgufType::U8: case GgufType::I8: case GgufType::BOOL: return 1;
        case GgufType::U16: case GgufType::I16: return 2;
        case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
        case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
        default: return 0;
    }
}

Status read_value(Cursor& c, GgufType type, GgufValue& v, const std::string& field, int depth);

Status read_scalar(Cursor& c, GgufType type, GgufValue& v, const std::string& field) {
    v.type = type;
    switch (type) {
        case GgufType::U8: { uint8_t x{}; TANDEM_TRY(c.read(x, field)); v.u = x; return {}; }
        case GgufType::I8: { int8_t x{}; TANDEM_TRY(c.read(x, field)); v.i = x; return {}; }
        case GgufType::U16: { uint16_t x{}; TANDEM_TRY(c.read(x, field)); v.u = x; return {}; }
        case GgufType::I16: { int16_t x{}; TANDEM_TRY(c.read(x, field)); v.i = x; return {}; }
        case GgufType::U32: { uint32_t x{}; TANDEM_TRY(c.read(x, field)); v.u = x; return {}; }
        case GgufType::I32: { int32_t x{}; TANDEM_TRY(c.read(x, field)); v.i = x; return {}; }
        case GgufType::U64: { uint64_t x{}; TANDEM_TRY(c.read(x, field)); v.u = x; return {}; }
        case GgufType::I64: { int64_t x{}; TANDEM_TRY(c.read(x, field)); v.i = x; return {}; }
        case GgufType::F32: { float x{}; TANDEM_TRY(c.read(x, field)); v.f = x; return {}; }
        case GgufType::F64: { double x{}; TANDEM_TRY(c.read(x, field)); v.f = x; return {}; }
        case GgufType::BOOL: {
            uint8_t x;
            TANDEM_TRY(c.read(x, field));
            if (x > 1) return make_error("{}: {} is a bool with value {}", c.file(), field, x);
            v.u = x;
            return {};
        }
        case GgufType::STRING: return c.read_string(v.str, field);
        default: return make_error("{}: {} has invalid value type {}", c.file(), field, (uint32_t)type);
    }
}

Status read_array(Cursor& c, GgufValue& v, const std::string& field, int depth) {
    if (depth >= kMaxArrayNesting) return make_error("{}: {} nests arrays too deeply", c.file(), field);
    v.type = GgufType::ARRAY;
    uint32_t et = 0;
    TANDEM_TRY(c.read(et, field + " (array element type)"));
    if (et > (uint32_t)GgufType::F64) return make_error("{}: {} has invalid array element type {}", c.file(), field, et);
    v.array_type = (GgufType)et;
    TANDEM_TRY(c.read(v.array_len, field + " (array length)"));
    const size_t elem = fixed_size(v.array_type);
    if (elem > 0) {
        if (v.array_len > c.remaining() / elem)
            return make_error("{}: truncated or corrupt file: {} claims {} elements of {} but only {} bytes remain", c.file(), field, v.array_len,
                              gguf_type_name(v.array_type), c.remaining());
        TANDEM_TRY(c.read_bytes(v.raw, v.array_len * elem, field));
        if (v.array_type == GgufType::BOOL)
            for (auto b : v.raw)
                if (b > 1) return make_error("{}: {} holds a bool with value {}", c.file(), field, b);
        return {};
    }
    // strings (8-byte length each) and nested arrays (12 bytes at least each)
    const uint64_t min_elem = v.array_type == GgufType::STRING ? 8 : 12;
    if (v.array_len > c.remaining() / min_elem)
        return make_error("{}: truncated or corrupt file: {} claims {} elements but only {} bytes remain", c.file(), field, v.array_len,
                          c.remaining());
    if (v.array_type == GgufType::STRING) {
        v.strings.resize(v.array_len);
        for (uint64_t k = 0; k < v.array_len; ++k)
            TANDEM_TRY(c.read_string(v.strings[k], field));
    } else {
        v.items.resize(v.array_len);
        for (uint64_t k = 0; k < v.array_len; ++k)
            TANDEM_TRY(read_value(c, GgufType::ARRAY, v.items[k], field, depth + 1));
    }
    return {};
}

Status read_value(Cursor& c, GgufType type, GgufValue& v, const std::string& field, int depth) {
    if (type == GgufType::ARRAY) return read_array(c, v, field, depth);
    return read_scalar(c, type, v, field);
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

Result<GgufFile> GgufFile::parse(const uint8_t* data, size_t size, const std::string& name) {
    GgufFile f;
    f.path_ = name;
    Cursor c(data, size, name);

    uint32_t magic = 0;
    TANDEM_TRY(c.read(magic, "magic"));
    if (std::memcmp(&magic, "GGUF", 4) != 0) return make_error("{}: not a GGUF file (bad magic)", name);
    TANDEM_TRY(c.read(f.version_, "version"));
    if (f.version_ == 1) return make_error("{}: GGUF version 1 is not supported (convert it to v3)", name);
    if (f.version_ != 2 && f.version_ != 3)
        return make_error("{}: unsupported GGUF version {} (supported: 2, 3)", name, f.version_);

    uint64_t n_tensors = 0, n_kv = 0;
    TANDEM_TRY(c.read(n_tensors, "tensor count"));
    TANDEM_TRY(c.read(n_kv, "metadata count"));
    // each kv needs >= 12 bytes (key length + type), each tensor info >= 24
    if (n_kv > c.remaining() / 12) return make_error("{}: truncated or corrupt file: metadata count {} needs more bytes than the file has", name, n_kv);
    if (n_tensors > c.remaining() / 24)
        return make_error("{}: truncated or corrupt file: tensor count {} needs more bytes than the file has", name,
                          n_tensors);

    f.kv_.reserve(n_kv);
    for (uint64_t k = 0; k < n_kv; ++k) {
        std::string key;
        TANDEM_TRY(c.read_string(key, fmt::format("metadata #{} key", k), kMaxNameLength));
        uint32_t type = 0;
        const std::string field = fmt::format("metadata '{}'", key);
        TANDEM_TRY(c.read(type, field + " (type)"));
        if (type > (uint32_t)GgufType::F64) return make_error("{}: {} has invalid type {}", name, field, type);
        GgufValue v;
        TANDEM_TRY(read_value(c, (GgufType)type, v, field, 0));
        if (f.kv_index_.count(key)) return make_error("{}: duplicate metadata key '{}'", name, key);
        f.kv_index_[key] = f.kv_.size();
        f.kv_.emplace_back(std::move(key), std::move(v));
    }

    if (const GgufValue* a = f.find("general.alignment")) {
        if (a->type != GgufType::U32)
            return make_error("{}: general.alignment must be u32, found {}", name, gguf_type_name(a->type));
        if (a->u == 0 || (a->u & (a->u - 1)) != 0 || a->u > (1u << 20))
            return make_error("{}: general.alignment {} is not a power of two up to 1 MiB", name, a->u);
        f.alignment_ = (uint32_t)a->u;
    }

    f.tensors_.reserve(n_tensors);
    for (uint64_t k = 0; k < n_tensors; ++k) {
        GgufTensorInfo t;
        TANDEM_TRY(c.read_string(t.name, fmt::format("tensor #{} name", k), kMaxNameLength));
        const std::string field = fmt::format("tensor '{}'", t.name);
        uint32_t n_dims = 0;
        TANDEM_TRY(c.read(n_dims, field + " dimension count"));
        if (n_dims == 0 || n_dims > kGgufMaxDims)
            return make_error("{}: {} has {} dimensions (1 to {} allowed)", name, field, n_dims, kGgufMaxDims);
        t.ne.resize(n_dims);
        int64_t n_elem = 1;
        for (uint32_t d = 0; d < n_dims; ++d) {
            uint64_t ne = 0;
            TANDEM_TRY(c.read(ne, field + " shape"));
            if (ne > (uint64_t)std::numeric_limits<int64_t>::max() ||
                (ne > 0 && n_elem > std::numeric_limits<int64_t>::max() / (int64_t)ne))
                return make_error("{}: {} shape overflows", name, field);
            t.ne[d] = (int64_t)ne;
            n_elem *= (int64_t)ne;
        }
        uint32_t type = 0;
        TANDEM_TRY(c.read(type, field + " type"));
        auto tr = dtype_traits(type);
        if (!tr)
            return make_error("{}: {} has type {} (id {}), which Tandem does not support", name, field,
                              ggml_type_name(type), type);
        t.type = (DType)type;
        if (t.ne[0] % tr->block_size != 0)
            return make_error("{}: {} row length {} is not a multiple of the {} block size {}", name, field, t.ne[0],
                              tr->name, tr->block_size);
        t.n_bytes = (uint64_t)(n_elem / tr->block_size) * tr->block_bytes;
        TANDEM_TRY(c.read(t.offset, field + " offset"));
        if (t.offset % f.alignment_ != 0)
            return make_error("{}: {} offset {} is not aligned to {}", name, field, t.offset, f.alignment_);
        if (f.tensor_index_.count(t.name)) return make_error("{}: duplicate tensor '{}'", name, t.name);
        f.tensor_index_[t.name] = f.tensors_.size();
        f.tensors_.push_back(std::move(t));
    }

    const uint64_t data_start = align_up(c.pos(), f.alignment_);
    if (n_tensors > 0 && data_start > size)
        return make_error("{}: truncated file: data section starts at {} but the file has {} bytes", name, data_start,
                          size);
    const uint64_t data_size = size > data_start ? size - data_start : 0;
    for (auto& t : f.tensors_) {
        if (t.offset > data_size || t.n_bytes > data_size - t.offset)
            return make_error("{}: truncated file: tensor '{}' needs bytes {}..{} of the data section, which has {}",
                              name, t.name, t.offset, t.offset + t.n_bytes, data_size);
        t.data = data + data_start + t.offset;
    }
    return f;
}

const GgufValue* GgufFile::find(const std::string& key) const {
    auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GgufTensorInfo* GgufFile::tensor(const std::string& name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

GgufFile GgufFile::from_parts(std::string path, std::string format, std::vector<std::pair<std::string, GgufValue>> kv,
                              std::vector<GgufTensorInfo> tensors, std::vector<std::shared_ptr<const void>> keep_alive,
                              int n_files) {
    GgufFile f;
    f.path_ = std::move(path);
    f.format_ = std::move(format);
    f.kv_ = std::move(kv);
    for (size_t i = 0; i < f.kv_.size(); ++i) f.kv_index_[f.kv_[i].first] = i;
    f.tensors_ = std::move(tensors);
    for (size_t i = 0; i < f.tensors_.size(); ++i) f.tensor_index_[f.tensors_[i].name] = i;
    f.keep_alive_ = std::move(keep_alive);
    f.n_files_ = n_files;
    return f;
}

std::string GgufFile::format() const { return format_.empty() ? fmt::format("GGUF v{}", version_) : format_; }

uint64_t GgufFile::total_tensor_bytes() const {
    uint64_t n = 0;
    for (const auto& t : tensors_) n += t.n_bytes;
    return n;
}

size_t GgufFile::release_pages(const void* p, size_t n) const {
    const auto* b = static_cast<const uint8_t*>(p);
    for (const auto& f : files_) {
        if (!f || b < f->data() || b + n > f->data() + f->size()) continue;
        // whole pages inside the range only (a page shared with a neighbouring tensor stays)
        const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
        const uintptr_t lo = ((uintptr_t)b + page - 1) / page * page, hi = ((uintptr_t)b + n) / page * page;
        if (hi <= lo || madvise((void*)lo, hi - lo, MADV_DONTNEED) != 0) return 0;
        return hi - lo;
    }
    return 0;
}

Status GgufFile::merge_split(GgufFile&& part, int file_index) {
    for (auto& t : part.tensors_) {
        if (tensor_index_.count(t.name))
            return make_error("{}: tensor '{}' also appears in an earlier split", part.path_, t.name);
        t.file_index = file_index;
        tensor_index_[t.name] = tensors_.size();
        tensors_.push_back(std::move(t));
    }
    return {};
}

Result<GgufFile> GgufFile::open(const std::string& path) {
    TANDEM_ASSIGN(MappedFile first_map, MappedFile::open(path));
    auto first_file = std::make_shared<MappedFile>(std::move(first_map));
    TANDEM_ASSIGN(GgufFile f, parse(first_file->data(), first_file->size(), path));
    f.files_.push_back(first_file);

    int split_count = 1;
    if (const GgufValue* sc = f.find("split.count")) {
        if (!sc->is_integer() || sc->as_int() < 1 || sc->as_int() > 9999)
            return make_error("{}: metadata 'split.count' is invalid", path);
        split_count = (int)sc->as_int();
    }
    static const std::regex kSplitName(R"((.*)-(\d{5})-of-(\d{5})\.gguf$)");
    std::smatch m;
    const bool named_split = std::regex_match(path, m, kSplitName);
    if (split_count == 1) return f;
    if (!named_split)
        return make_error("{}: file is split {} ways but its name is not NAME-00001-of-{:05d}.gguf", path,
                          split_count, split_count);
    if (std::stoi(m[2].str()) != 1)
        return make_error("{}: open the first split (-00001-of-{:05d}.gguf) to load the model", path, split_count);
    if (std::stoi(m[3].str()) != split_count)
        return make_error("{}: name says {} splits but metadata 'split.count' says {}", path, m[3].str(), split_count);

    for (int i = 2; i <= split_count; ++i) {
        const std::string part_path = GgufWriter::split_path(m[1].str() + ".gguf", i - 1, split_count);
        TANDEM_ASSIGN(MappedFile map, MappedFile::open(part_path));
        auto file = std::make_shared<MappedFile>(std::move(map));
        TANDEM_ASSIGN(GgufFile part, parse(file->data(), file->size(), part_path));
        const GgufValue* no = part.find("split.no");
        if (!no || !no->is_integer() || no->as_int() != i - 1)
            return make_error("{}: metadata 'split.no' should be {}", part_path, i - 1);
        TANDEM_TRY(f.merge_split(std::move(part), i - 1));
        f.files_.push_back(file);
    }
    if (const GgufValue* tc = f.find("split.tensors.count")) {
        if (tc->as_int() != (int64_t)f.tensors_.size())
            return make_error("{}: splits hold {} tensors but 'split.tensors.count' says {}", path, f.tensors_.size(),
                              tc->as_int());
    }
    return f;
}

}  // namespace tandem
