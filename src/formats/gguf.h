// GGUF files: metadata values, tensor table, reader (mmap, v2/v3, split files) and writer.
// Layout: "GGUF" u32 version, u64 n_tensors, u64 n_kv, kv pairs, tensor infos, padding to
// `general.alignment` (default 32), data section; tensor offsets are relative to the data section.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/mmap_file.h"
#include "core/status.h"

namespace tandem {

enum class GgufType : uint32_t {
    U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
    STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
const char* gguf_type_name(GgufType t);

constexpr uint32_t kGgufDefaultAlignment = 32;
constexpr int kGgufMaxDims = 4;

// One metadata value. Scalars keep their exact GGUF type (writers must match what llama.cpp
// checks); integer/float accessors convert between widths.
struct GgufValue {
    GgufType type = GgufType::U8;
    uint64_t u = 0;   // U8/U16/U32/U64/BOOL
    int64_t i = 0;    // I8/I16/I32/I64
    double f = 0;     // F32/F64
    std::string str;  // STRING
    // ARRAY: element type and elements; string arrays in `strings`, numeric/bool arrays as
    // packed little-endian bytes in `raw`, arrays of arrays in `items`.
    GgufType array_type = GgufType::U8;
    uint64_t array_len = 0;
    std::vector<std::string> strings;
    std::vector<uint8_t> raw;
    std::vector<GgufValue> items;

    bool is_integer() const;
    bool is_float() const { return type == GgufType::F32 || type == GgufType::F64; }
    // Integer value as int64 (checked by is_integer()); u64 above int64 max saturates.
    int64_t as_int() const;
    double as_double() const;
    // numeric array element as double / int64 (index < array_len)
    double array_double(uint64_t k) const;
    int64_t array_int(uint64_t k) const;
    std::string to_string(size_t max_items = 8) const;  // for inspect

    static GgufValue of_u32(uint32_t v);
    static GgufValue of_i32(int32_t v);
    static GgufValue of_u64(uint64_t v);
    static GgufValue of_u16(uint16_t v);
    static GgufValue of_f32(float v);
    static GgufValue of_bool(bool v);
    static GgufValue of_string(std::string v);
    static GgufValue of_strings(std::vector<std::string> v);
    static GgufValue of_i32_array(const std::vector<int32_t>& v);
    static GgufValue of_f32_array(const std::vector<float>& v);
};

struct GgufTensorInfo {
    std::string name;
    std::vector<int64_t> ne;  // ggml order: ne[0] is the contiguous (row) dimension
    DType type = DType::F32;
    uint64_t offset = 0;      // relative to the data section of its file
    uint64_t n_bytes = 0;
    int file_index = 0;       // which split file holds it
    const uint8_t* data = nullptr;
    std::string source;       // where a translated tensor came from (e.g. "file: HF name"); empty for GGUF

    int64_t n_elements() const;
    int64_t n_rows() const { return ne.empty() ? 0 : n_elements() / ne[0]; }
};

class GgufFile {
public:
    // Opens a .gguf file; `name-00001-of-0000N.gguf` opens all N parts as one model.
    static Result<GgufFile> open(const std::string& path);
    // Parses one in-memory file (no split handling); `name` is used in error messages.
    static Result<GgufFile> parse(const uint8_t* data, size_t size, const std::string& name);
    // A GGUF-named view of weights from another format (a Hugging Face folder): metadata and
    // tensors as a GGUF file would hold them; `keep_alive` owns the memory the tensors point to.
    static GgufFile from_parts(std::string path, std::string format, std::vector<std::pair<std::string, GgufValue>> kv,
                               std::vector<GgufTensorInfo> tensors, std::vector<std::shared_ptr<const void>> keep_alive,
                               int n_files);

    uint32_t version() const { return version_; }  // 0 for a view of another format
    // "GGUF v3", or the format a view was made from ("Hugging Face safetensors")
    std::string format() const;
    uint32_t alignment() const { return alignment_; }
    int n_files() const { return n_files_ > 0 ? n_files_ : files_.empty() ? 1 : (int)files_.size(); }
    const std::string& path() const { return path_; }

    // metadata in file order
    const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
    const GgufValue* find(const std::string& key) const;
    const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
    const GgufTensorInfo* tensor(const std::string& name) const;
    uint64_t total_tensor_bytes() const;
    // Drops the pages of [p, p + n) from this process's resident set where the range lies in one
    // of the files this object maps (read-only: later reads fault them back in from the file, or
    // the page cache); memory of other formats' views is left alone. Returns the bytes dropped.
    size_t release_pages(const void* p, size_t n) const;

private:
    Status merge_split(GgufFile&& part, int file_index);

    std::string path_;
    uint32_t version_ = 0;
    uint32_t alignment_ = kGgufDefaultAlignment;
    std::vector<std::pair<std::string, GgufValue>> kv_;
    std::map<std::string, size_t> kv_index_;
    std::vector<GgufTensorInfo> tensors_;
    std::map<std::string, size_t> tensor_index_;
    std::vector<std::shared_ptr<MappedFile>> files_;
    std::string format_;  // set for views of other formats
    int n_files_ = 0;
    std::vector<std::shared_ptr<const void>> keep_alive_;
};

// Writes GGUF v3. Tensor data is produced on demand, one tensor at a time, so that files larger
// than RAM can be written.
class GgufWriter {
public:
    using Producer = std::function<Status(uint8_t* dst, size_t n_bytes)>;

    void set(const std::string& key, GgufValue value);
    // ne in ggml order; ne[0] must be a multiple of the type's block size.
    Status add_tensor(const std::string& name, DType type, std::vector<int64_t> ne, Producer producer);
    // Writes one file, or n_split files `prefix-0000i-of-0000n.gguf` when n_split > 1 (path must
    // then end in .gguf; the first split holds all metadata). `progress` sees (tensors done, total).
    Status write(const std::string& path, int n_split = 1,
                 const std::function<void(size_t, size_t)>& progress = {}) const;

    static std::string split_path(const std::string& path, int index, int count);

private:
    struct Pending {
        GgufTensorInfo info;
        Producer producer;
    };
    Status write_one(const std::string& path, const std::vector<std::pair<std::string, GgufValue>>& kv,
                     size_t first, size_t last, const std::function<void(size_t, size_t)>& progress) const;

    std::vector<std::pair<std::string, GgufValue>> kv_;
    std::vector<Pending> tensors_;
};

}  // namespace tandem
