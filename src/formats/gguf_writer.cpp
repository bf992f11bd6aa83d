#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "formats/gguf.h"

namespace tandem {
namespace {

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// Serialises into a byte vector (the header), then streams tensor data to the file.
class Buffer {
public:
    template <typename T>
    void put(T v) {
        const auto* p = reinterpret_cast<const uint8_t*>(&v);
        bytes.insert(bytes.end(), p, p + sizeof(T));
    }
    void put_string(const std::string& s) {
        put<uint64_t>(s.size());
        bytes.insert(bytes.end(), s.begin(), s.end());
    }
    void put_value(const GgufValue& v) {
        switch (v.type) {
            case GgufType::U8: case GgufType::BOOL: put<uint8_t>((uint8_t)v.u); break;
            case GgufType::I8: put<int8_t>((int8_t)v.i); break;
            case GgufType::U16: put<uint16_t>((uint16_t)v.u); break;
            case GgufType::I16: put<int16_t>((int16_t)v.i); break;
            case GgufType::U32: put<uint32_t>((uint32_t)v.u); break;
            case GgufType::I32: put<int32_t>((int32_t)v.i); break;
            case GgufType::U64: put<uint64_t>(v.u); break;
            case GgufType::I64: put<int64_t>(v.i); break;
            case GgufType::F32: put<float>((float)v.f); break;
            case GgufType::F64: put<double>(v.f); break;
            case GgufType::STRING: put_string(v.str); break;
            case GgufType::ARRAY:
                put<uint32_t>((uint32_t)v.array_type);
                put<uint64_t>(v.array_len);
                if (v.array_type == GgufType::STRING)
                    for (const auto& s : v.strings) put_string(s);
                else if (v.array_type == GgufType::ARRAY)
                    for (const auto& it : v.items) put_value(it);
                else
                    bytes.insert(bytes.end(), v.raw.begin(), v.raw.end());
                break;
        }
    }
    std::vector<uint8_t> bytes;
};

struct FileCloser {
    void operator()(std::FILE* f) const {
        if (f) std::fclose(f);
    }
};

}  // namespace

void GgufWriter::set(const std::string& key, GgufValue value) {
    for (auto& kv : kv_)
        if (kv.first == key) {
            kv.second = std::move(value);
            return;
        }
    kv_.emplace_back(key, std::move(value));
}

Status GgufWriter::add_tensor(const std::string& name, DType type, std::vector<int64_t> ne, Producer producer) {
    const auto& tr = traits(type);
    if (ne.empty() || ne.size() > kGgufMaxDims) return make_error("tensor '{}': {} dimensions", name, ne.size());
    if (ne[0] % tr.block_size != 0)
        return make_error("tensor '{}': row length {} is not a multiple of the {} block size {}", name, ne[0], tr.name,
                          tr.block_size);
    for (const auto& p : tensors_)
        if (p.info.name == name) return make_error("tensor '{}' added twice", name);
    Pending p;
    p.info.name = name;
    p.info.type = type;
    p.info.ne = std::move(ne);
    p.info.n_bytes = (uint64_t)(p.info.n_elements() / tr.block_size) * tr.block_bytes;
    p.producer = std::move(producer);
    tensors_.push_back(std::move(p));
    return {};
}

std::string GgufWriter::split_path(const std::string& path, int index, int count) {
    std::string stem = path;
    if (stem.size() > 5 && stem.substr(stem.size() - 5) == ".gguf") stem.resize(stem.size() - 5);
    return fmt::format("{}-{:05d}-of-{:05d}.gguf", stem, index + 1, count);
}

Status GgufWriter::write(const std::string& path, int n_split,
                         const std::function<void(size_t, size_t)>& progress) const {
    if (n_split <= 1) return write_one(path, kv_, 0, tensors_.size(), progress);
    if (n_split > (int)tensors_.size())
        return make_error("{}: cannot split {} tensors into {} files", path, tensors_.size(), n_split);
    const size_t per = (tensors_.size() + n_split - 1) / n_split;
    for (int i = 0; i < n_split; ++i) {
        std::vector<std::pair<std::string, GgufValue>> kv;
        if (i == 0) kv = kv_;
        kv.emplace_back("split.no", GgufValue::of_u16((uint16_t)i));
        kv.emplace_back("split.count", GgufValue::of_u16((uint16_t)n_split));
        kv.emplace_back("split.tensors.count", GgufValue::of_i32((int32_t)tensors_.size()));
        const size_t first = std::min(tensors_.size(), i * per), last = std::min(tensors_.size(), (i + 1) * per);
        TANDEM_TRY(write_one(split_path(path, i, n_split), kv, first, last, progress));
    }
    return {};
}

Status GgufWriter::write_one(const std::string& path, const std::vector<std::pair<std::string, GgufValue>>& kv,
                             size_t first, size_t last, const std::function<void(size_t, size_t)>& progress) const {
    uint32_t alignment = kGgufDefaultAlignment;
    for (const auto& [k, v] : kv)
        if (k == "general.alignment" && v.type == GgufType::U32 && v.u > 0) alignment = (uint32_t)v.u;

    Buffer h;
    h.bytes.insert(h.bytes.end(), {'G', 'G', 'U', 'F'});
    h.put<uint32_t>(3);
    h.put<uint64_t>(last - first);
    h.put<uint64_t>(kv.size());
    for (const auto& [k, v] : kv) {
        h.put_string(k);
        h.put<uint32_t>((uint32_t)v.type);
        h.put_value(v);
    }
    uint64_t offset = 0;
    for (size_t i = first; i < last; ++i) {
        const auto& t = tensors_[i].info;
        h.put_string(t.name);
        h.put<uint32_t>((uint32_t)t.ne.size());
        for (auto d : t.ne) h.put<uint64_t>((uint64_t)d);
        h.put<uint32_t>((uint32_t)t.type);
        h.put<uint64_t>(offset);
        offset = align_up(offset + t.n_bytes, alignment);
    }
    h.bytes.resize(align_up(h.bytes.size(), alignment), 0);

    std::unique_ptr<std::FILE, FileCloser> out(std::fopen(path.c_str(), "wb"));
    if (!out) return make_error("{}: cannot create: {}", path, std::strerror(errno));
    auto put = [&](const void* p, size_t n) -> Status {
        if (n && std::fwrite(p, 1, n, out.get()) != n) return make_error("{}: write failed: {}", path, std::strerror(errno));
        return {};
    };
    TANDEM_TRY(put(h.bytes.data(), h.bytes.size()));
    std::vector<uint8_t> buf;
    const std::vector<uint8_t> zeros(alignment, 0);
    for (size_t i = first; i < last; ++i) {
        const auto& t = tensors_[i];
        buf.assign(t.info.n_bytes, 0);
        TANDEM_TRY(t.producer(buf.data(), buf.size()));
        TANDEM_TRY(put(buf.data(), buf.size()));
        const uint64_t pad = align_up(t.info.n_bytes, alignment) - t.info.n_bytes;
        TANDEM_TRY(put(zeros.data(), pad));
        if (progress) progress(i + 1, tensors_.size());
    }
    if (std::fflush(out.get()) != 0) return make_error("{}: write failed: {}", path, std::strerror(errno));
    return {};
}

}  // namespace tandem
