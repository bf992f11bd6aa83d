// Page-aligned anonymous memory for large, long-lived buffers (repacked weights): mapped lazily,
// transparent huge pages requested (fewer TLB misses when decode streams gigabytes), and spread
// over the NUMA nodes like the mapped weights (no-op on one node).
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/status.h"

namespace tandem {

class AnonBuffer {
public:
    AnonBuffer() = default;
    AnonBuffer(const AnonBuffer&) = delete;
    AnonBuffer& operator=(const AnonBuffer&) = delete;
    AnonBuffer(AnonBuffer&& o) noexcept;
    AnonBuffer& operator=(AnonBuffer&& o) noexcept;
    ~AnonBuffer();

    static Result<AnonBuffer> allocate(size_t bytes);

    uint8_t* data() const { return data_; }
    size_t size() const { return size_; }

private:
    void reset();
    uint8_t* data_ = nullptr;
    size_t size_ = 0;
};

}  // namespace tandem
