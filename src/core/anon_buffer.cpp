#include "core/anon_buffer.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "core/numa.h"

namespace tandem {

AnonBuffer::AnonBuffer(AnonBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

AnonBuffer& AnonBuffer::operator=(AnonBuffer&& o) noexcept {
    if (this != &o) {
        reset();
        data_ = std::exchange(o.data_, nullptr);
        size_ = std::exchange(o.size_, 0);
    }
    return *this;
}

AnonBuffer::~AnonBuffer() { reset(); }

void AnonBuffer::reset() {
    if (data_) munmap(data_, size_);
    data_ = nullptr;
    size_ = 0;
}

Result<AnonBuffer> AnonBuffer::allocate(size_t bytes) {
    AnonBuffer b;
    if (bytes == 0) return b;
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return make_error("cannot allocate {} MiB: {}", bytes >> 20, std::strerror(errno));
#ifdef MADV_HUGEPAGE
    madvise(p, bytes, MADV_HUGEPAGE);  // a hint; ignored where THP is off
#endif
    interleave_memory(p, bytes);
    b.data_ = static_cast<uint8_t*>(p);
    b.size_ = bytes;
    return b;
}

}  // namespace tandem
