// safetensors reader/writer: round trips, sharded checkpoints, and hostile input (truncation,
// corrupt headers, random byte flips).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "formats/safetensors.h"
#include "test_util.h"

namespace tandem {
namespace {

using json = nlohmann::json;

std::vector<uint8_t> read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

void write_all(const std::string& path, const std::vector<uint8_t>& b) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(b.data()), (std::streamsize)b.size());
}

// A file from a raw header text and data buffer (for hand-made, possibly invalid, files).
std::vector<uint8_t> raw_file(const std::string& header, const std::vector<uint8_t>& data, uint64_t n_header = ~0ull) {
    if (n_header == ~0ull) n_header = header.size();
    std::vector<uint8_t> out(8);
    for (int i = 0; i < 8; ++i) out[(size_t)i] = (uint8_t)(n_header >> (8 * i));
    out.insert(out.end(), header.begin(), header.end());
    out.insert(out.end(), data.begin(), data.end());
    return out;
}

SafetensorsWriter::Producer fill(uint8_t seed) {
    return [seed](uint8_t* dst, size_t n) -> Status {
        for (size_t i = 0; i < n; ++i) dst[i] = (uint8_t)(seed + i * 13);
        return {};
    };
}

// Every dtype, a scalar, an empty tensor and metadata.
SafetensorsWriter sample_writer() {
    SafetensorsWriter w;
    w.set_metadata("format", "pt");
    w.set_metadata("note", "hello");
    const std::pair<const char*, StDType> kinds[] = {
        {"a.f32", StDType::F32}, {"b.f16", StDType::F16}, {"c.bf16", StDType::BF16}, {"d.i8", StDType::I8},
        {"e.u8", StDType::U8},   {"f.i32", StDType::I32}, {"g.i64", StDType::I64},   {"h.f8", StDType::F8_E4M3},
    };
    uint8_t seed = 1;
    for (const auto& [name, t] : kinds) EXPECT_TRUE(w.add_tensor(name, t, {3, 5}, fill(seed++)).ok());
    EXPECT_TRUE(w.add_tensor("scalar", StDType::F32, {}, fill(99)).ok());
    EXPECT_TRUE(w.add_tensor("empty", StDType::BF16, {0, 4}, fill(0)).ok());
    return w;
}

TEST(Safetensors, RoundTripEveryDtype) {
    TempDir tmp;
    const std::string p = tmp.path("a.safetensors");
    ASSERT_TRUE(sample_writer().write(p).ok());
    auto f = SafetensorsFile::open(p);
    ASSERT_TRUE(f.ok()) << f.error().message;
    ASSERT_EQ(f->tensors().size(), 10u);
    EXPECT_EQ(f->metadata().at("format"), "pt");
    EXPECT_EQ(f->metadata().at("note"), "hello");
    const auto bytes = read_all(p);
    uint64_t n_header = 0;
    std::memcpy(&n_header, bytes.data(), 8);
    EXPECT_EQ(n_header % 8, 0u);  // data starts 8-byte aligned
    uint8_t seed = 1;
    for (const char* name : {"a.f32", "b.f16", "c.bf16", "d.i8", "e.u8", "f.i32", "g.i64", "h.f8"}) {
        const StTensor* t = f->tensor(name);
        ASSERT_NE(t, nullptr) << name;
        EXPECT_EQ(t->shape, (std::vector<int64_t>{3, 5}));
        EXPECT_EQ(t->n_bytes, 15 * st_dtype_size(t->dtype));
        EXPECT_EQ((uintptr_t)t->data % st_dtype_size(t->dtype), 0u) << name;
        for (size_t i = 0; i < t->n_bytes; ++i) ASSERT_EQ(t->data[i], (uint8_t)(seed + i * 13)) << name;
        ++seed;
    }
    EXPECT_EQ(f->tensor("c.bf16")->dtype, StDType::BF16);
    EXPECT_EQ(f->tensor("h.f8")->dtype, StDType::F8_E4M3);
    EXPECT_EQ(f->tensor("scalar")->n_bytes, 4u);
    EXPECT_EQ(f->tensor("empty")->n_bytes, 0u);
    // data: wider dtypes first, then in the order the tensors were added
    EXPECT_LT(f->tensor("g.i64")->data, f->tensor("a.f32")->data);
    EXPECT_LT(f->tensor("a.f32")->data, f->tensor("f.i32")->data);
    EXPECT_LT(f->tensor("b.f16")->data, f->tensor("c.bf16")->data);
    EXPECT_LT(f->tensor("d.i8")->data, f->tensor("h.f8")->data);
}

TEST(Safetensors, DtypeNames) {
    for (const char* n : {"F32", "F16", "BF16", "I8", "U8", "I32", "I64", "F8_E4M3"}) {
        auto t = st_dtype_from_name(n);
        ASSERT_TRUE(t.has_value()) << n;
        EXPECT_EQ(st_dtype_name(*t), n);
    }
    EXPECT_FALSE(st_dtype_from_name("F8_E5M2").has_value());
    EXPECT_EQ(st_to_dtype(StDType::BF16), DType::BF16);
    EXPECT_EQ(st_to_dtype(StDType::I8), DType::I8);  // W8A8 weights and parameters
    EXPECT_EQ(st_to_dtype(StDType::I64), DType::I64);
    EXPECT_FALSE(st_to_dtype(StDType::U8).has_value());
    EXPECT_FALSE(st_to_dtype(StDType::F8_E4M3).has_value());
}

TEST(Safetensors, EveryTruncationIsAnError) {
    TempDir tmp;
    const std::string p = tmp.path("a.safetensors");
    ASSERT_TRUE(sample_writer().write(p).ok());
    const auto bytes = read_all(p);
    for (size_t n = 0; n < bytes.size(); ++n) {
        std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + (long)n);
        auto f = SafetensorsFile::parse(cut.data(), cut.size(), "cut.safetensors");
        ASSERT_FALSE(f.ok()) << "accepted a file cut at " << n;
        EXPECT_NE(f.error().message.find("cut.safetensors"), std::string::npos);
        EXPECT_NE(f.error().message.find("truncated"), std::string::npos) << n << ": " << f.error().message;
    }
}

// Hand-made headers: each must fail with the given words in the message.
TEST(Safetensors, CorruptHeaders) {
    const std::vector<uint8_t> data(64, 7);
    struct Case {
        std::string header;
        const char* expect;
    };
    const Case cases[] = {
        {"[1, 2]", "not a safetensors file"},
        {"{\"a\": ", "not valid JSON"},
        {R"({"a": 3})", "not an object"},
        {R"({"a": {"shape": [2], "data_offsets": [0, 8]}})", "missing dtype"},
        {R"({"a": {"dtype": "F32", "data_offsets": [0, 8]}})", "missing shape"},
        {R"({"a": {"dtype": "F32", "shape": [2]}})", "data_offsets"},
        {R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", "data_offsets"},
        {R"({"a": {"dtype": "F8_E5M2", "shape": [2], "data_offsets": [0, 2]}})", "dtype 'F8_E5M2' is not supported"},
        {R"({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", "non-negative"},
        {R"({"a": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})", "non-negative"},
        {R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [-1, 8]}})", "non-negative"},
        {R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", "begin after"},
        {R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", "bytes of data for shape [3]"},
        {R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [60, 68]}})", "truncated"},
        {R"({"a": {"dtype": "F32", "shape": [4611686018427387904, 8], "data_offsets": [0, 8]}})", "too large"},
        {R"({"a": {"dtype": "F32", "shape": [1,1,1,1,1,1,1,1,2], "data_offsets": [0, 8]}})", "more than 8"},
        {R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
             "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})", "overlap"},
        {R"({"__metadata__": {"k": 3}})", "__metadata__"},
        {R"({"__metadata__": [1]})", "__metadata__"},
    };
    for (const Case& c : cases) {
        const auto file = raw_file(c.header, data);
        auto f = SafetensorsFile::parse(file.data(), file.size(), "bad.safetensors");
        ASSERT_FALSE(f.ok()) << c.header;
        EXPECT_NE(f.error().message.find(c.expect), std::string::npos) << c.header << " -> " << f.error().message;
    }
    // header length fields that do not fit
    auto huge = raw_file("{}", data, 1ull << 40);
    auto f = SafetensorsFile::parse(huge.data(), huge.size(), "x");
    ASSERT_FALSE(f.ok());
    EXPECT_NE(f.error().message.find("exceeds"), std::string::npos) << f.error().message;
    auto longer = raw_file("{}", data, 1000);
    f = SafetensorsFile::parse(longer.data(), longer.size(), "x");
    ASSERT_FALSE(f.ok());
    EXPECT_NE(f.error().message.find("larger than"), std::string::npos) << f.error().message;
    // a valid minimal file with padding spaces after the JSON
    auto ok = raw_file(R"({"a": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}   )", data);
    auto g = SafetensorsFile::parse(ok.data(), ok.size(), "ok");
    ASSERT_TRUE(g.ok()) << g.error().message;
    EXPECT_EQ(g->tensor("a")->shape, (std::vector<int64_t>{2, 2}));
}

TEST(Safetensors, RandomByteFlipsNeverReadOutside) {
    TempDir tmp;
    const std::string p = tmp.path("a.safetensors");
    ASSERT_TRUE(sample_writer().write(p).ok());
    const auto bytes = read_all(p);
    std::mt19937 rng(7);
    int accepted = 0;
    for (int it = 0; it < 3000; ++it) {
        std::vector<uint8_t> b = bytes;
        const int n_flips = 1 + (int)(rng() % 4);
        for (int k = 0; k < n_flips; ++k) b[rng() % std::min<size_t>(b.size(), 400)] = (uint8_t)rng();
        auto f = SafetensorsFile::parse(b.data(), b.size(), "flip");
        if (!f.ok()) continue;
        ++accepted;
        for (const auto& t : f->tensors()) {
            ASSERT_GE(t.data, b.data());
            ASSERT_LE(t.data + t.n_bytes, b.data() + b.size());
        }
    }
    EXPECT_GT(accepted, 0);  // some flips land in values that stay valid
}

TEST(SafetensorsSet, ShardsWithIndexLoadAsOne) {
    TempDir tmp;
    const std::string dir = tmp.path("m");
    std::filesystem::create_directories(dir);
    SafetensorsWriter w;
    for (int i = 0; i < 7; ++i)
        ASSERT_TRUE(w.add_tensor("t" + std::to_string(i), StDType::BF16, {4, 8 * (i + 1)}, fill((uint8_t)i)).ok());
    ASSERT_TRUE(w.write_shards(dir, 3).ok());
    for (int k = 0; k < 3; ++k) EXPECT_TRUE(std::filesystem::exists(dir + "/" + SafetensorsWriter::shard_name(k, 3)));
    EXPECT_EQ(SafetensorsWriter::shard_name(0, 3), "model-00001-of-00003.safetensors");
    auto set = SafetensorsSet::open(dir);
    ASSERT_TRUE(set.ok()) << set.error().message;
    EXPECT_EQ(set->files().size(), 3u);
    ASSERT_EQ(set->tensors().size(), 7u);
    for (int i = 0; i < 7; ++i) {
        const StTensor* t = set->tensor("t" + std::to_string(i));
        ASSERT_NE(t, nullptr);
        EXPECT_EQ(t->shape[1], 8 * (i + 1));
        for (size_t j = 0; j < t->n_bytes; ++j) ASSERT_EQ(t->data[j], (uint8_t)(i + j * 13));
    }
    EXPECT_EQ(set->tensor("t0")->file_index, 0);
    EXPECT_EQ(set->tensor("t6")->file_index, 2);
    const json index = json::parse(read_all(dir + "/model.safetensors.index.json"));
    EXPECT_EQ(index["weight_map"]["t0"], "model-00001-of-00003.safetensors");
    EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), (uint64_t)(4 * 8 * 28 * 2));

    // without the index: every *.safetensors of the folder
    std::filesystem::remove(dir + "/model.safetensors.index.json");
    auto glob = SafetensorsSet::open(dir);
    ASSERT_TRUE(glob.ok()) << glob.error().message;
    EXPECT_EQ(glob->tensors().size(), 7u);
    // one shard alone
    auto one = SafetensorsSet::open(dir + "/" + SafetensorsWriter::shard_name(1, 3));
    ASSERT_TRUE(one.ok());
    EXPECT_GT(one->tensors().size(), 0u);
    EXPECT_LT(one->tensors().size(), 7u);
}

TEST(SafetensorsSet, BrokenCheckpointsAreClearErrors) {
    TempDir tmp;
    const std::string dir = tmp.path("m");
    std::filesystem::create_directories(dir);
    SafetensorsWriter w;
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(w.add_tensor("t" + std::to_string(i), StDType::F32, {4}, fill(1)).ok());
    ASSERT_TRUE(w.write_shards(dir, 2).ok());
    const std::string index_path = dir + "/model.safetensors.index.json";
    const auto index = read_all(index_path);
    auto expect_error = [&](const char* what) {
        auto s = SafetensorsSet::open(dir);
        ASSERT_FALSE(s.ok()) << what;
        EXPECT_NE(s.error().message.find(what), std::string::npos) << s.error().message;
    };
    // missing shard
    std::filesystem::rename(dir + "/model-00002-of-00002.safetensors", tmp.path("away"));
    expect_error("missing");
    std::filesystem::rename(tmp.path("away"), dir + "/model-00002-of-00002.safetensors");
    ASSERT_TRUE(SafetensorsSet::open(dir).ok());
    // bad index JSON, no weight_map, a non-string entry, a path outside the folder, an absent tensor
    const std::pair<std::string, const char*> bad_indexes[] = {
        {"{\"weight_map\": {", "invalid JSON"},
        {R"({"metadata": {}})", "weight_map"},
        {R"({"weight_map": {"t0": 3}})", "not a file name"},
        {R"({"weight_map": {"t0": "../x.safetensors"}})", "not a file in the folder"},
        {R"({"weight_map": {"t0": "model-00001-of-00002.safetensors", "zz": "model-00001-of-00002.safetensors"}})",
         "not in their shard: zz"},
        {R"({"weight_map": {}})", "empty"},
    };
    for (const auto& [text, what] : bad_indexes) {
        write_all(index_path, std::vector<uint8_t>(text.begin(), text.end()));
        expect_error(what);
    }
    write_all(index_path, index);
    // a truncated shard: the error names it
    auto shard = read_all(dir + "/model-00001-of-00002.safetensors");
    shard.resize(shard.size() - 3);
    write_all(dir + "/model-00001-of-00002.safetensors", shard);
    expect_error("model-00001-of-00002.safetensors: truncated");
    // no index, and the same tensor in two files
    std::filesystem::remove(index_path);
    SafetensorsWriter dup;
    ASSERT_TRUE(dup.add_tensor("t0", StDType::F32, {4}, fill(1)).ok());
    ASSERT_TRUE(dup.write(dir + "/model-00001-of-00002.safetensors").ok());
    ASSERT_TRUE(dup.write(dir + "/model-00002-of-00002.safetensors").ok());
    expect_error("also in");
    // an empty folder
    const std::string empty = tmp.path("empty");
    std::filesystem::create_directories(empty);
    auto e = SafetensorsSet::open(empty);
    ASSERT_FALSE(e.ok());
    EXPECT_NE(e.error().message.find("no model.safetensors.index.json"), std::string::npos);
}

}  // namespace
}  // namespace tandem
