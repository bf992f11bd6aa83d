// Fuzz target: the GGUF parser must reject or accept any bytes without reading out of bounds,
// and every tensor it accepts must lie inside the input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "formats/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::vector<uint8_t> copy(data, data + size);  // exact-size heap buffer: ASan catches overreads
    auto f = tandem::GgufFile::parse(copy.data(), copy.size(), "fuzz.gguf");
    if (!f.ok()) return 0;
    uint8_t sink = 0;
    for (const auto& t : f->tensors()) {
        if (t.data < copy.data() || t.data + t.n_bytes > copy.data() + copy.size()) std::abort();
        if (t.n_bytes) sink ^= t.data[0] ^ t.data[t.n_bytes - 1];
    }
    for (const auto& [k, v] : f->metadata()) sink ^= (uint8_t)v.to_string().size();
    volatile uint8_t keep = sink;
    (void)keep;
    return 0;
}
