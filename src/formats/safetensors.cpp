#include "formats/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace tandem {
namespace {

using json = nlohmann::json;

struct DTypeInfo {
    StDType t;
    std::string_view name;
    size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {StDType::F32, "F32", 4}, {StDType::F16, "F16", 2}, {StDType::BF16, "BF16", 2}, {StDType::I8, "I8", 1},
    {StDType::U8, "U8", 1},   {StDType::I32, "I32", 4}, {StDType::I64, "I64", 8},   {StDType::F8_E4M3, "F8_E4M3", 1},
};

constexpr int kMaxRank = 8;

uint64_t read_u64_le(const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

// A non-negative JSON integer (accepts 3 and 3u, rejects 3.0, -1, "3").
bool as_u64(const json& v, uint64_t& out) {
    if (v.is_number_unsigned()) {
        out = v.get<uint64_t>();
        return true;
    }
    if (v.is_number_integer() && v.get<int64_t>() >= 0) {
        out = (uint64_t)v.get<int64_t>();
        return true;
    }
    return false;
}

struct FileCloser {
    void operator()(std::FILE* f) const { std::fclose(f); }
};

Result<json> read_json_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) return make_error("{}: cannot open", path);
    std::stringstream ss;
    ss << in.rdbuf();
    json j = json::parse(ss.str(), nullptr, false);
    if (j.is_discarded()) return make_error("{}: invalid JSON", path);
    return j;
}

}  // namespace

std::string_view st_dtype_name(StDType t) { return kDTypes[(int)t].name; }
size_t st_dtype_size(StDType t) { return kDTypes[(int)t].size; }

std::optional<StDType> st_dtype_from_name(std::string_view name) {
    for (const auto& d : kDTypes)
        if (d.name == name) return d.t;
    return std::nullopt;
}

std::optional<DType> st_to_dtype(StDType t) {
    switch (t) {
        case StDType::F32: return DType::F32;
        case StDType::F16: return DType::F16;
        case StDType::BF16: return DType::BF16;
        case StDType::I8: return DType::I8;
        case StDType::I32: return DType::I32;
        case StDType::I64: return DType::I64;
        default: return std::nullopt;
    }
}

std::optional<StDType> st_from_dtype(DType t) {
    switch (t) {
        case DType::F32: return StDType::F32;
        case DType::F16: return StDType::F16;
        case DType::BF16: return StDType::BF16;
        case DType::I8: return StDType::I8;
        case DType::I32: return StDType::I32;
        case DType::I64: return StDType::I64;
        default: return std::nullopt;
    }
}

int64_t StTensor::n_elements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
    TANDEM_ASSIGN(MappedFile m, MappedFile::open(path));
    auto shared = std::make_shared<MappedFile>(std::move(m));
    TANDEM_ASSIGN(SafetensorsFile f, parse(shared->data(), shared->size(), path));
    f.file_ = std::move(shared);
    return f;
}

Result<SafetensorsFile> SafetensorsFile::parse(const uint8_t* data, size_t size, const std::string& name) {
    if (size < 8) return make_error("{}: truncated: {} bytes, no safetensors header length", name, size);
    const uint64_t n_header = read_u64_le(data);
    if (n_header > kStMaxHeaderBytes)
        return make_error("{}: header length {} exceeds the {} byte limit (not a safetensors file?)", name, n_header,
                          kStMaxHeaderBytes);
    if (n_header > size - 8)
        return make_error("{}: truncated: header length {} is larger than the {} bytes after it", name, n_header,
                          size - 8);
    if (n_header < 2 || data[8] != '{') return make_error("{}: not a safetensors file (header is not a JSON object)", name);
    const char* hb = reinterpret_cast<const char*>(data + 8);
    json h = json::parse(hb, hb + n_header, nullptr, false);
    if (h.is_discarded() || !h.is_object()) return make_error("{}: header is not valid JSON", name);

    const uint8_t* buf = data + 8 + n_header;
    const uint64_t buf_size = size - 8 - n_header;
    SafetensorsFile f;
    f.path_ = name;
    for (auto it = h.begin(); it != h.end(); ++it) {
        const std::string& key = it.key();
        const json& v = it.value();
        if (key == "__metadata__") {
            if (!v.is_object()) return make_error("{}: __metadata__ must be an object of strings", name);
            for (auto m = v.begin(); m != v.end(); ++m) {
                if (!m.value().is_string()) return make_error("{}: __metadata__ value '{}' is not a string", name, m.key());
                f.metadata_[m.key()] = m.value().get<std::string>();
            }
            continue;
        }
        auto bad = [&](const char* what) { return make_error("{}: tensor '{}': {}", name, key, what); };
        if (!v.is_object()) return bad("entry is not an object");
        const auto dt = v.find("dtype");
        const auto sh = v.find("shape");
        const auto off = v.find("data_offsets");
        if (dt == v.end() || !dt->is_string()) return bad("missing dtype");
        if (sh == v.end() || !sh->is_array()) return bad("missing shape");
        if (off == v.end() || !off->is_array() || off->size() != 2) return bad("data_offsets must be [begin, end]");
        StTensor t;
        t.name = key;
        const auto dtype = st_dtype_from_name(dt->get<std::string>());
        if (!dtype)
            return make_error("{}: tensor '{}': dtype '{}' is not supported (F32, F16, BF16, I8, U8, I32, I64, F8_E4M3)",
                              name, key, dt->get<std::string>());
        t.dtype = *dtype;
        if (sh->size() > kMaxRank) return bad("more than 8 dimensions");
        uint64_t n_bytes = st_dtype_size(t.dtype);
        for (const json& d : *sh) {
            uint64_t dim = 0;
            if (!as_u64(d, dim)) return bad("shape entries must be non-negative integers");
            if (dim > (uint64_t)INT64_MAX || __builtin_mul_overflow(n_bytes, dim, &n_bytes))
                return bad("shape is too large");
            t.shape.push_back((int64_t)dim);
        }
        uint64_t begin = 0, end = 0;
        if (!as_u64((*off)[0], begin) || !as_u64((*off)[1], end))
            return bad("data_offsets must be non-negative integers");
        if (begin > end) return bad("data_offsets begin after they end");
        if (end > buf_size)
            return make_error("{}: truncated: tensor '{}' ends at byte {} of the data, which has {} bytes", name, key, end,
                              buf_size);
        if (end - begin != n_bytes)
            return make_error("{}: tensor '{}': {} bytes of data for shape [{}] of {} ({} bytes)", name, key, end - begin,
                              fmt::join(t.shape, ", "), st_dtype_name(t.dtype), n_bytes);
        t.data = buf + begin;
        t.n_bytes = n_bytes;
        f.tensors_.push_back(std::move(t));
    }
    std::sort(f.tensors_.begin(), f.tensors_.end(), [](const StTensor& a, const StTensor& b) {
        return a.data != b.data ? a.data < b.data : a.n_bytes < b.n_bytes;
    });
    for (size_t i = 0; i < f.tensors_.size(); ++i) {
        const StTensor& t = f.tensors_[i];
        if (i > 0) {
            const StTensor& p = f.tensors_[i - 1];
            if (t.data < p.data + p.n_bytes)
                return make_error("{}: tensors '{}' and '{}' overlap in the data buffer", name, p.name, t.name);
        }
        f.index_[t.name] = i;
    }
    return f;
}

const StTensor* SafetensorsFile::tensor(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
}

Status SafetensorsSet::add(SafetensorsFile&& f, const std::map<std::string, std::string>* weight_map) {
    const int file_index = (int)paths_.size();
    const std::string shard = std::filesystem::path(f.path()).filename().string();
    for (StTensor t : f.tensors()) {
        if (weight_map) {
            auto it = weight_map->find(t.name);
            if (it == weight_map->end() || it->second != shard) continue;  // the index names another home
        }
        if (index_.count(t.name))
            return make_error("{}: tensor '{}' is also in {}", f.path(), t.name, paths_[(size_t)tensors_[index_[t.name]].file_index]);
        t.file_index = file_index;
        index_[t.name] = tensors_.size();
        tensors_.push_back(std::move(t));
    }
    paths_.push_back(f.path());
    mappings_.push_back(f.mapping());
    return {};
}

Result<SafetensorsSet> SafetensorsSet::open(const std::string& path) {
    namespace fs = std::filesystem;
    SafetensorsSet set;
    std::error_code ec;
    if (!fs::is_directory(path, ec)) {
        TANDEM_ASSIGN(SafetensorsFile f, SafetensorsFile::open(path));
        TANDEM_TRY(set.add(std::move(f), nullptr));
        return set;
    }
    const fs::path dir(path);
    // the index: model.safetensors.index.json, or the folder's only *.safetensors.index.json
    // (msModelSlim names its shards quant_model_weight_w8a8-0000i-of-0000N.safetensors)
    fs::path index_path = dir / "model.safetensors.index.json";
    if (!fs::exists(index_path, ec)) {
        std::vector<fs::path> found;
        for (const auto& e : fs::directory_iterator(dir, ec)) {
            const std::string n = e.path().filename().string();
            if (n.size() > 23 && n.compare(n.size() - 23, 23, ".safetensors.index.json") == 0) found.push_back(e.path());
        }
        if (found.size() > 1) {
            std::vector<std::string> names;
            for (const auto& f : found) names.push_back(f.filename().string());
            std::sort(names.begin(), names.end());
            return make_error("{}: {} safetensors index files ({}): keep one", path, names.size(), fmt::join(names, ", "));
        }
        if (found.size() == 1) index_path = found[0];
    }
    if (fs::exists(index_path, ec)) {
        const std::string ip = index_path.string();
        TANDEM_ASSIGN(json j, read_json_file(ip));
        if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
            return make_error("{}: no \"weight_map\" object", ip);
        std::map<std::string, std::string> weight_map;  // tensor -> shard file name
        std::vector<std::string> shards;                // in first-mention order
        for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
            if (!it.value().is_string()) return make_error("{}: weight_map entry '{}' is not a file name", ip, it.key());
            const std::string shard = it.value().get<std::string>();
            if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..")
                return make_error("{}: weight_map entry '{}' names '{}', not a file in the folder", ip, it.key(), shard);
            weight_map[it.key()] = shard;
            if (std::find(shards.begin(), shards.end(), shard) == shards.end()) shards.push_back(shard);
        }
        if (weight_map.empty()) return make_error("{}: weight_map is empty", ip);
        std::sort(shards.begin(), shards.end());
        for (const std::string& shard : shards) {
            const std::string sp = (dir / shard).string();
            if (!fs::exists(sp, ec)) return make_error("{}: shard '{}' named in {} is missing", sp, shard, ip);
            TANDEM_ASSIGN(SafetensorsFile f, SafetensorsFile::open(sp));
            TANDEM_TRY(set.add(std::move(f), &weight_map));
        }
        std::vector<std::string> absent;
        for (const auto& [name, shard] : weight_map)
            if (!set.tensor(name)) absent.push_back(name + " (" + shard + ")");
        if (!absent.empty())
            return make_error("{}: {} tensor(s) of weight_map are not in their shard: {}{}", ip, absent.size(),
                              fmt::join(absent.begin(), absent.begin() + std::min<size_t>(absent.size(), 4), ", "),
                              absent.size() > 4 ? ", ..." : "");
        return set;
    }
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(dir, ec))
        if (e.path().extension() == ".safetensors") files.push_back(e.path().string());
    if (ec) return make_error("{}: cannot list folder: {}", path, ec.message());
    if (files.empty()) return make_error("{}: no model.safetensors.index.json and no *.safetensors files", path);
    std::sort(files.begin(), files.end());
    for (const std::string& fp : files) {
        TANDEM_ASSIGN(SafetensorsFile f, SafetensorsFile::open(fp));
        TANDEM_TRY(set.add(std::move(f), nullptr));
    }
    return set;
}

const StTensor* SafetensorsSet::tensor(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
}

Status SafetensorsWriter::add_tensor(const std::string& name, StDType dtype, std::vector<int64_t> shape,
                                     Producer producer) {
    if (name.empty() || name == "__metadata__") return make_error("safetensors: invalid tensor name '{}'", name);
    for (const auto& p : tensors_)
        if (p.name == name) return make_error("safetensors: tensor '{}' added twice", name);
    uint64_t n = st_dtype_size(dtype);
    for (int64_t d : shape) {
        if (d < 0) return make_error("safetensors: tensor '{}' has a negative dimension", name);
        n *= (uint64_t)d;
    }
    tensors_.push_back({name, dtype, std::move(shape), n, std::move(producer)});
    return {};
}

std::string SafetensorsWriter::shard_name(int index, int count) {
    return fmt::format("model-{:05d}-of-{:05d}.safetensors", index + 1, count);
}

Status SafetensorsWriter::write_file(const std::string& path, std::vector<size_t> which, size_t& done,
                                     const std::function<void(size_t, size_t)>& progress) const {
    // wider elements first: every tensor stays aligned to its element size without padding
    // (the format has no holes), as Python's writer does
    std::stable_sort(which.begin(), which.end(), [&](size_t a, size_t b) {
        return st_dtype_size(tensors_[a].dtype) > st_dtype_size(tensors_[b].dtype);
    });
    json h = json::object();
    if (!metadata_.empty()) h["__metadata__"] = metadata_;
    uint64_t offset = 0;
    for (size_t i : which) {
        const Pending& t = tensors_[i];
        h[t.name] = {{"dtype", st_dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.n_bytes}}};
        offset += t.n_bytes;
    }
    std::string header = h.dump();
    header.resize((header.size() + 7) / 8 * 8, ' ');  // the data buffer starts 8-byte aligned
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = (uint8_t)((uint64_t)header.size() >> (8 * i));

    std::unique_ptr<std::FILE, FileCloser> out(std::fopen(path.c_str(), "wb"));
    if (!out) return make_error("{}: cannot create: {}", path, std::strerror(errno));
    auto put = [&](const void* p, size_t n) -> Status {
        if (n && std::fwrite(p, 1, n, out.get()) != n) return make_error("{}: write failed: {}", path, std::strerror(errno));
        return {};
    };
    TANDEM_TRY(put(len, 8));
    TANDEM_TRY(put(header.data(), header.size()));
    std::vector<uint8_t> buf;
    for (size_t i : which) {
        const Pending& t = tensors_[i];
        buf.assign(t.n_bytes, 0);
        TANDEM_TRY(t.producer(buf.data(), buf.size()));
        TANDEM_TRY(put(buf.data(), buf.size()));
        if (progress) progress(++done, tensors_.size());
    }
    if (std::fflush(out.get()) != 0) return make_error("{}: write failed: {}", path, std::strerror(errno));
    return {};
}

Status SafetensorsWriter::write(const std::string& path, const std::function<void(size_t, size_t)>& progress) const {
    std::vector<size_t> all(tensors_.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    size_t done = 0;
    return write_file(path, all, done, progress);
}

Status SafetensorsWriter::write_shards(const std::string& dir, int n_shards,
                                       const std::function<void(size_t, size_t)>& progress) const {
    namespace fs = std::filesystem;
    if (n_shards < 1) return make_error("{}: need at least one shard", dir);
    if (n_shards == 1) return write((fs::path(dir) / "model.safetensors").string(), progress);
    if ((size_t)n_shards > tensors_.size())
        return make_error("{}: cannot cut {} tensors into {} shards", dir, tensors_.size(), n_shards);
    uint64_t total = 0;
    for (const auto& t : tensors_) total += t.n_bytes;
    // shard s takes tensors while its cumulative end stays below (s+1)/n of the bytes, keeping
    // at least one tensor for each later shard
    std::vector<std::vector<size_t>> shards((size_t)n_shards);
    uint64_t acc = 0;
    size_t s = 0;
    for (size_t i = 0; i < tensors_.size(); ++i) {
        const size_t left_after = tensors_.size() - i;  // tensors from i on
        while (s + 1 < (size_t)n_shards && !shards[s].empty() &&
               (acc + tensors_[i].n_bytes > total / (uint64_t)n_shards * (s + 1) || left_after <= (size_t)n_shards - 1 - s))
            ++s;
        shards[s].push_back(i);
        acc += tensors_[i].n_bytes;
    }
    json weight_map = json::object();
    size_t done = 0;
    for (int k = 0; k < n_shards; ++k) {
        const std::string name = shard_name(k, n_shards);
        for (size_t i : shards[(size_t)k]) weight_map[tensors_[i].name] = name;
        TANDEM_TRY(write_file((fs::path(dir) / name).string(), shards[(size_t)k], done, progress));
    }
    json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    const std::string ip = (fs::path(dir) / "model.safetensors.index.json").string();
    std::ofstream out(ip);
    out << index.dump(2) << "\n";
    if (!out) return make_error("{}: write failed", ip);
    return {};
}

}  // namespace tandem
