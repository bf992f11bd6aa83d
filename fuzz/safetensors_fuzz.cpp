// Fuzz target: the safetensors header parser must reject or accept any bytes without reading out
// of bounds, and every tensor it accepts must lie inside the input, sized by its shape and dtype.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::vector<uint8_t> copy(data, data + size);  // exact-size heap buffer: ASan catches overreads
    auto f = tandem::SafetensorsFile::parse(copy.data(), copy.size(), "fuzz.safetensors");
    if (!f.ok()) return 0;
    uint8_t sink = 0;
    for (const auto& t : f->tensors()) {
        if (t.data < copy.data() || t.data + t.n_bytes > copy.data() + copy.size()) std::abort();
        if ((uint64_t)t.n_elements() * tandem::st_dtype_size(t.dtype) != t.n_bytes) std::abort();
        if (f->tensor(t.name) != &t) std::abort();
        if (t.n_bytes) sink ^= t.data[0] ^ t.data[t.n_bytes - 1];
    }
    for (const auto& [k, v] : f->metadata()) sink ^= (uint8_t)(k.size() + v.size());
    volatile uint8_t keep = sink;
    (void)keep;
    return 0;
}
