// safetensors files: reader (mmap, every offset/shape/dtype checked), sharded checkpoints and a
// streaming writer. Layout: u64 little-endian header length N, N bytes of JSON
// {"name": {"dtype": "BF16", "shape": [out, in], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {"k": "v"}}, then the data buffer; offsets are relative to the buffer.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/mmap_file.h"
#include "core/status.h"

namespace tandem {

enum class StDType : uint8_t { F32, F16, BF16, I8, U8, I32, I64, F8_E4M3 };

std::string_view st_dtype_name(StDType t);  // "BF16", as the file spells it
size_t st_dtype_size(StDType t);            // bytes per element
std::optional<StDType> st_dtype_from_name(std::string_view name);
// The tensor type Tandem uses for a dtype (floats, and the integer types of W8A8 checkpoints);
// nullopt for the others (U8, F8_E4M3).
std::optional<DType> st_to_dtype(StDType t);
std::optional<StDType> st_from_dtype(DType t);

// Largest header the reader accepts (as the reference implementation: 100 MB).
constexpr uint64_t kStMaxHeaderBytes = 100ull << 20;

struct StTensor {
    std::string name;
    StDType dtype = StDType::F32;
    std::vector<int64_t> shape;  // row-major as in the file: shape.back() is the contiguous dimension
    const uint8_t* data = nullptr;
    uint64_t n_bytes = 0;
    int file_index = 0;  // which shard of a SafetensorsSet holds it

    int64_t n_elements() const;
};

// One .safetensors file.
class SafetensorsFile {
public:
    static Result<SafetensorsFile> open(const std::string& path);
    // Parses an in-memory file; `name` is used in error messages. The tensors point into `data`.
    static Result<SafetensorsFile> parse(const uint8_t* data, size_t size, const std::string& name);

    const std::string& path() const { return path_; }
    const std::vector<StTensor>& tensors() const { return tensors_; }  // in data order
    const StTensor* tensor(const std::string& name) const;
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    const std::shared_ptr<MappedFile>& mapping() const { return file_; }

private:
    std::string path_;
    std::vector<StTensor> tensors_;
    std::map<std::string, size_t> index_;
    std::map<std::string, std::string> metadata_;
    std::shared_ptr<MappedFile> file_;
};

// A checkpoint of one or more files, seen as one tensor table.
class SafetensorsSet {
public:
    // `path` is a .safetensors file, or a folder: its model.safetensors.index.json (`weight_map`:
    // tensor -> shard file) when present, else every *.safetensors in it (sorted by name).
    static Result<SafetensorsSet> open(const std::string& path);

    const std::vector<std::string>& files() const { return paths_; }
    const std::vector<StTensor>& tensors() const { return tensors_; }  // shard by shard, in data order
    const StTensor* tensor(const std::string& name) const;
    const std::vector<std::shared_ptr<MappedFile>>& mappings() const { return mappings_; }

private:
    Status add(SafetensorsFile&& f, const std::map<std::string, std::string>* weight_map);

    std::vector<std::string> paths_;
    std::vector<StTensor> tensors_;
    std::map<std::string, size_t> index_;
    std::vector<std::shared_ptr<MappedFile>> mappings_;
};

// Writes safetensors files. Tensor data is produced on demand, one tensor at a time, so files
// larger than RAM can be written.
class SafetensorsWriter {
public:
    using Producer = std::function<Status(uint8_t* dst, size_t n_bytes)>;

    void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
    Status add_tensor(const std::string& name, StDType dtype, std::vector<int64_t> shape, Producer producer);
    size_t n_tensors() const { return tensors_.size(); }

    // One file holding every tensor. Data: wider dtypes first (alignment), then in the order the
    // tensors were added (so that a stack of experts added in expert order is used in place).
    Status write(const std::string& path, const std::function<void(size_t, size_t)>& progress = {}) const;
    // n_shards files `model-0000i-of-0000n.safetensors` in dir (tensors cut in the order they were
    // added, about the same bytes per shard) and model.safetensors.index.json; n_shards == 1
    // writes dir/model.safetensors alone.
    Status write_shards(const std::string& dir, int n_shards,
                        const std::function<void(size_t, size_t)>& progress = {}) const;

    static std::string shard_name(int index, int count);

private:
    struct Pending {
        std::string name;
        StDType dtype;
        std::vector<int64_t> shape;
        uint64_t n_bytes;
        Producer producer;
    };
    Status write_file(const std::string& path, std::vector<size_t> which, size_t& done,
                      const std::function<void(size_t, size_t)>& progress) const;

    std::map<std::string, std::string> metadata_;
    std::vector<Pending> tensors_;
};

}  // namespace tandem
