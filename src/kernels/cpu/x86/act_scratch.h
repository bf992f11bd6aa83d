// Room for one GEMV call's re-arranged activations (nb blocks of 256 bytes): on the stack for rows
// up to kLocalBlocks blocks wide, else on the heap. Shared by the x86 kernel files.
#pragma once

#include <cstdint>
#include <vector>

namespace tandem::cpu {

template <int64_t kLocalBlocks>
class ActScratch {
public:
    explicit ActScratch(int64_t nb) {
        if (nb > kLocalBlocks) heap_.resize((size_t)(nb * 256));
    }
    int8_t* data() { return heap_.empty() ? local_ : heap_.data(); }

private:
    alignas(64) int8_t local_[kLocalBlocks * 256];
    std::vector<int8_t> heap_;
};

}  // namespace tandem::cpu
