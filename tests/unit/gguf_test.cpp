// GGUF reader/writer: round trips, split files, and hostile input (truncation, corruption).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/fp16.h"
#include "formats/gguf.h"
#include "test_util.h"

namespace tandem {
namespace {

std::vector<uint8_t> read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

GgufWriter::Producer fill_bytes(uint8_t seed) {
    return [seed](uint8_t* dst, size_t n) -> Status {
        for (size_t i = 0; i < n; ++i) dst[i] = (uint8_t)(seed + i * 7);
        return {};
    };
}

GgufWriter::Producer fill_f16(float v) {
    return [v](uint8_t* dst, size_t n) -> Status {
        const uint16_t h = fp32_to_fp16(v);
        for (size_t i = 0; i + 1 < n; i += 2) std::memcpy(dst + i, &h, 2);
        return {};
    };
}

// A small file using every metadata type, nested arrays and several tensor types.
GgufWriter sample_writer() {
    GgufWriter w;
    GgufValue v;
    v.type = GgufType::U8; v.u = 200; w.set("t.u8", v);
    v = {}; v.type = GgufType::I8; v.i = -100; w.set("t.i8", v);
    v = {}; v.type = GgufType::U16; v.u = 60000; w.set("t.u16", v);
    v = {}; v.type = GgufType::I16; v.i = -30000; w.set("t.i16", v);
    w.set("t.u32", GgufValue::of_u32(4000000000u));
    w.set("t.i32", GgufValue::of_i32(-2000000000));
    w.set("t.f32", GgufValue::of_f32(1.5f));
    w.set("t.bool", GgufValue::of_bool(true));
    w.set("t.string", GgufValue::of_string("hello \xe4\xb8\x96\xe7\x95\x8c"));
    v = {}; v.type = GgufType::U64; v.u = 1ULL << 60; w.set("t.u64", v);
    v = {}; v.type = GgufType::I64; v.i = -(1LL << 60); w.set("t.i64", v);
    v = {}; v.type = GgufType::F64; v.f = 3.25; w.set("t.f64", v);
    w.set("t.strings", GgufValue::of_strings({"a", "", "ccc"}));
    w.set("t.i32s", GgufValue::of_i32_array({1, -2, 3}));
    w.set("t.f32s", GgufValue::of_f32_array({0.5f, -0.25f}));
    GgufValue nested;
    nested.type = GgufType::ARRAY;
    nested.array_type = GgufType::ARRAY;
    nested.items = {GgufValue::of_i32_array({7, 8}), GgufValue::of_strings({"x"})};
    nested.array_len = nested.items.size();
    w.set("t.nested", nested);
    EXPECT_TRUE(w.add_tensor("a.weight", DType::F32, {4, 3}, fill_bytes(1)).ok());
    EXPECT_TRUE(w.add_tensor("b.weight", DType::F16, {64, 2}, fill_f16(0.75f)).ok());
    EXPECT_TRUE(w.add_tensor("c.weight", DType::Q8_0, {64, 2, 3}, fill_bytes(9)).ok());
    EXPECT_TRUE(w.add_tensor("d.weight", DType::Q4_K, {256, 1}, fill_bytes(3)).ok());
    return w;
}

TEST(Gguf, RoundTripEveryValueType) {
    TempDir dir;
    const std::string path = dir.path("a.gguf");
    ASSERT_TRUE(sample_writer().write(path).ok());
    auto f = GgufFile::open(path);
    ASSERT_TRUE(f.ok()) << f.error().message;
    EXPECT_EQ(f->version(), 3u);
    EXPECT_EQ(f->find("t.u8")->u, 200u);
    EXPECT_EQ(f->find("t.i8")->i, -100);
    EXPECT_EQ(f->find("t.u16")->u, 60000u);
    EXPECT_EQ(f->find("t.i16")->i, -30000);
    EXPECT_EQ(f->find("t.u32")->u, 4000000000u);
    EXPECT_EQ(f->find("t.u32")->type, GgufType::U32);
    EXPECT_EQ(f->find("t.i32")->i, -2000000000);
    EXPECT_EQ(f->find("t.f32")->f, 1.5);
    EXPECT_EQ(f->find("t.f32")->type, GgufType::F32);
    EXPECT_EQ(f->find("t.bool")->u, 1u);
    EXPECT_EQ(f->find("t.string")->str, "hello \xe4\xb8\x96\xe7\x95\x8c");
    EXPECT_EQ(f->find("t.u64")->u, 1ULL << 60);
    EXPECT_EQ(f->find("t.i64")->i, -(1LL << 60));
    EXPECT_EQ(f->find("t.f64")->f, 3.25);
    const GgufValue* s = f->find("t.strings");
    ASSERT_EQ(s->array_len, 3u);
    EXPECT_EQ(s->strings[2], "ccc");
    EXPECT_EQ(f->find("t.i32s")->array_int(1), -2);
    EXPECT_EQ(f->find("t.f32s")->array_double(1), -0.25);
    const GgufValue* n = f->find("t.nested");
    ASSERT_EQ(n->items.size(), 2u);
    EXPECT_EQ(n->items[0].array_int(1), 8);
    EXPECT_EQ(n->items[1].strings[0], "x");
    EXPECT_EQ(f->find("missing"), nullptr);

    ASSERT_EQ(f->tensors().size(), 4u);
    const GgufTensorInfo* c = f->tensor("c.weight");
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->ne, (std::vector<int64_t>{64, 2, 3}));
    EXPECT_EQ(c->n_bytes, 6u * 2 * 34);
    EXPECT_EQ(c->offset % 32, 0u);
    for (size_t i = 0; i < c->n_bytes; ++i) ASSERT_EQ(c->data[i], (uint8_t)(9 + i * 7));
    const GgufTensorInfo* b = f->tensor("b.weight");
    uint16_t h;
    std::memcpy(&h, b->data + 2 * 127, 2);
    EXPECT_EQ(fp16_to_fp32(h), 0.75f);
}

TEST(Gguf, ReadsVersion2) {
    // v2 and v3 share the little-endian layout (v3 only added big-endian files)
    TempDir dir;
    ASSERT_TRUE(sample_writer().write(dir.path("a.gguf")).ok());
    auto bytes = read_all(dir.path("a.gguf"));
    const uint32_t v2 = 2;
    std::memcpy(bytes.data() + 4, &v2, 4);
    auto f = GgufFile::parse(bytes.data(), bytes.size(), "v2.gguf");
    ASSERT_TRUE(f.ok()) << f.error().message;
    EXPECT_EQ(f->version(), 2u);
    EXPECT_EQ(f->tensors().size(), 4u);
    EXPECT_EQ(f->find("t.string")->str, "hello \xe4\xb8\x96\xe7\x95\x8c");
}

TEST(Gguf, CustomAlignment) {
    TempDir dir;
    GgufWriter w = sample_writer();
    w.set("general.alignment", GgufValue::of_u32(64));
    ASSERT_TRUE(w.write(dir.path("a.gguf")).ok());
    auto f = GgufFile::open(dir.path("a.gguf"));
    ASSERT_TRUE(f.ok()) << f.error().message;
    EXPECT_EQ(f->alignment(), 64u);
    for (const auto& t : f->tensors()) EXPECT_EQ(t.offset % 64, 0u);
    EXPECT_EQ(f->tensor("d.weight")->data[5], (uint8_t)(3 + 5 * 7));
}

// this process's file-backed resident memory in kB (/proc/self/status RssFile)
int64_t rss_file_kb() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("RssFile:", 0) == 0) return std::stoll(line.substr(8));
    return -1;
}

// What Model::pack_for_cpu does to the GGUF blocks it has packed: their pages leave the resident
// set, and reading them afterwards gives the same bytes (faulted back in from the file); memory
// the file does not map is never touched.
TEST(Gguf, ReleasedPagesLeaveTheResidentSetAndReadBackTheSame) {
    TempDir dir;
    GgufWriter w;
    ASSERT_TRUE(w.add_tensor("big.weight", DType::F32, {1024, 4096}, fill_bytes(5)).ok());  // 16 MiB
    ASSERT_TRUE(w.write(dir.path("big.gguf")).ok());
    auto f = GgufFile::open(dir.path("big.gguf"));
    ASSERT_TRUE(f.ok()) << f.error().message;
    const GgufTensorInfo* t = f->tensor("big.weight");
    auto check = [&] {
        for (size_t i = 0; i < t->n_bytes; ++i)
            if (t->data[i] != (uint8_t)(5 + i * 7)) return false;
        return true;
    };
    ASSERT_TRUE(check());  // every page resident now
    const int64_t before = rss_file_kb();
    ASSERT_GT(before, 16 << 10);
    const size_t released = f->release_pages(t->data, t->n_bytes);
    EXPECT_LE(released, t->n_bytes);
    EXPECT_GE(released, t->n_bytes - 2 * 4096);  // all but the partial pages at the ends
    EXPECT_LT(rss_file_kb(), before - (int64_t)(released >> 10) / 2);
    EXPECT_TRUE(check());

    std::vector<uint8_t> own(1 << 20, 42);  // not the file's: left alone
    EXPECT_EQ(f->release_pages(own.data(), own.size()), 0u);
    EXPECT_EQ(std::count(own.begin(), own.end(), 42), (std::ptrdiff_t)own.size());
    EXPECT_EQ(f->release_pages(t->data + t->n_bytes - 4096, 1 << 20), 0u);  // runs past the mapping
}

TEST(Gguf, SplitFilesOpenAsOneModel) {
    TempDir dir;
    ASSERT_TRUE(sample_writer().write(dir.path("m.gguf"), 3).ok());
    const std::string first = dir.path("m-00001-of-00003.gguf");
    auto f = GgufFile::open(first);
    ASSERT_TRUE(f.ok()) << f.error().message;
    EXPECT_EQ(f->n_files(), 3);
    ASSERT_EQ(f->tensors().size(), 4u);
    EXPECT_EQ(f->find("t.u32")->u, 4000000000u);
    const GgufTensorInfo* c = f->tensor("c.weight");
    for (size_t i = 0; i < c->n_bytes; ++i) ASSERT_EQ(c->data[i], (uint8_t)(9 + i * 7));
    EXPECT_GT(f->tensor("d.weight")->file_index, 0);

    auto second = GgufFile::open(dir.path("m-00002-of-00003.gguf"));
    ASSERT_FALSE(second.ok());
    EXPECT_NE(second.error().message.find("first split"), std::string::npos);

    std::filesystem::remove(dir.path("m-00003-of-00003.gguf"));
    auto missing = GgufFile::open(first);
    ASSERT_FALSE(missing.ok());
    EXPECT_NE(missing.error().message.find("m-00003-of-00003.gguf"), std::string::npos) << missing.error().message;
}

TEST(Gguf, MissingFileNamesThePath) {
    auto f = GgufFile::open("/nonexistent/dir/model.gguf");
    ASSERT_FALSE(f.ok());
    EXPECT_NE(f.error().message.find("/nonexistent/dir/model.gguf"), std::string::npos);
}

TEST(Gguf, EveryTruncationIsAnErrorNotACrash) {
    TempDir dir;
    ASSERT_TRUE(sample_writer().write(dir.path("a.gguf")).ok());
    const auto bytes = read_all(dir.path("a.gguf"));
    auto whole = GgufFile::parse(bytes.data(), bytes.size(), "a.gguf");
    ASSERT_TRUE(whole.ok());
    size_t needed = 0;  // end of the last tensor's data; the padding after it is optional
    for (const auto& t : whole->tensors()) needed = std::max(needed, (size_t)(t.data - bytes.data()) + t.n_bytes);
    ASSERT_LE(needed, bytes.size());
    for (size_t n = 0; n < needed; ++n) {
        std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + (long)n);  // exact-size buffer: ASan sees overreads
        auto f = GgufFile::parse(cut.data(), cut.size(), "cut.gguf");
        ASSERT_FALSE(f.ok()) << "truncated at " << n << " bytes was accepted";
        ASSERT_NE(f.error().message.find("cut.gguf"), std::string::npos);
    }
}

// Byte offset of the first occurrence of `needle` in the file.
size_t find_bytes(const std::vector<uint8_t>& hay, const std::string& needle) {
    auto it = std::search(hay.begin(), hay.end(), needle.begin(), needle.end());
    return (size_t)(it - hay.begin());
}

template <typename T>
void poke(std::vector<uint8_t>& b, size_t at, T v) {
    std::memcpy(b.data() + at, &v, sizeof(T));
}

struct Corruption {
    const char* what;
    std::function<void(std::vector<uint8_t>&)> apply;
    const char* expect;  // substring of the error
};

TEST(Gguf, CorruptedHeadersGiveClearErrors) {
    TempDir dir;
    ASSERT_TRUE(sample_writer().write(dir.path("a.gguf")).ok());
    const auto good = read_all(dir.path("a.gguf"));
    const size_t name_a = find_bytes(good, "a.weight");
    // tensor info of a.weight: name, n_dims u32, ne[2] u64, type u32, offset u64
    const size_t a_dims = name_a + 8, a_ne0 = a_dims + 4, a_type = a_ne0 + 16, a_off = a_type + 4;
    const size_t key_str = find_bytes(good, "t.string");
    std::vector<Corruption> cases = {
        {"magic", [](auto& b) { b[0] = 'X'; }, "bad magic"},
        {"version 1", [](auto& b) { poke<uint32_t>(b, 4, 1); }, "version 1"},
        {"version 9", [](auto& b) { poke<uint32_t>(b, 4, 9); }, "version 9"},
        {"tensor count", [](auto& b) { poke<uint64_t>(b, 8, 1ULL << 60); }, "tensor count"},
        {"kv count", [](auto& b) { poke<uint64_t>(b, 16, 1ULL << 62); }, "metadata count"},
        {"string length", [&](auto& b) { poke<uint64_t>(b, key_str + 8 + 4, 1ULL << 40); }, "t.string"},
        {"value type", [&](auto& b) { poke<uint32_t>(b, key_str + 8, 77); }, "invalid type 77"},
        {"n_dims", [&](auto& b) { poke<uint32_t>(b, a_dims, 5); }, "a.weight"},
        {"tensor type unknown", [&](auto& b) { poke<uint32_t>(b, a_type, 16); }, "IQ2_XXS"},
        {"tensor type invalid", [&](auto& b) { poke<uint32_t>(b, a_type, 999); }, "a.weight"},
        {"offset misaligned", [&](auto& b) { poke<uint64_t>(b, a_off, 3); }, "not aligned"},
        {"offset beyond", [&](auto& b) { poke<uint64_t>(b, a_off, 1ULL << 40); }, "a.weight"},
        {"shape overflow", [&](auto& b) { poke<uint64_t>(b, a_ne0, 1ULL << 62); }, "a.weight"},
    };
    for (const auto& c : cases) {
        auto b = good;
        c.apply(b);
        auto f = GgufFile::parse(b.data(), b.size(), "bad.gguf");
        ASSERT_FALSE(f.ok()) << c.what << " was accepted";
        EXPECT_NE(f.error().message.find("bad.gguf"), std::string::npos) << c.what << ": " << f.error().message;
        EXPECT_NE(f.error().message.find(c.expect), std::string::npos) << c.what << ": " << f.error().message;
    }
}

TEST(Gguf, RandomMutationsNeverCrash) {
    TempDir dir;
    ASSERT_TRUE(sample_writer().write(dir.path("a.gguf")).ok());
    const auto good = read_all(dir.path("a.gguf"));
    std::mt19937 rng(1234);
    int accepted = 0;
    for (int iter = 0; iter < 3000; ++iter) {
        auto b = good;
        const int n_flips = 1 + (int)(rng() % 4);
        for (int k = 0; k < n_flips; ++k) b[rng() % b.size()] ^= (uint8_t)(1u << (rng() % 8));
        auto f = GgufFile::parse(b.data(), b.size(), "m.gguf");
        if (f.ok()) {
            ++accepted;
            for (const auto& t : f->tensors()) {  // every accepted tensor lies inside the buffer
                ASSERT_GE(t.data, b.data());
                ASSERT_LE(t.data + t.n_bytes, b.data() + b.size());
            }
        }
    }
    EXPECT_GT(accepted, 0);  // flips inside tensor data are harmless
}

}  // namespace
}  // namespace tandem
