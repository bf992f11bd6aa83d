// Key/value cache storage in pages, stored as f16 (as llama.cpp does).
//
// A KvPool holds n_pages pages of page_size token positions each, for every layer. A sequence
// owns an ordered list of pages (its block table): position p lives in page pages[p / page_size]
// at slot p % page_size. The server shares one pool among all requests (pages handed out by
// runtime/page_manager.h); run, chat and bench use KvCache, a private pool for one sequence.
#pragma once

#include <cstdint>
#include <new>
#include <vector>

#include "core/anon_buffer.h"

namespace tandem {

class KvPool {
public:
    // with_storage false: the geometry only (a hybrid Forward's pages live on the device)
    KvPool(int64_t n_layer, int64_t n_head_kv, int64_t head_dim, int64_t page_size, int64_t n_pages,
           bool with_storage = true)
        : n_layer_(n_layer), n_head_kv_(n_head_kv), head_dim_(head_dim), page_size_(page_size), n_pages_(n_pages),
          half_(with_storage ? (size_t)(n_pages * n_layer * n_head_kv * page_size * head_dim) : 0) {
        if (half_ == 0) return;
        // anonymous memory with huge pages asked for: attention reads a block's keys from 16+
        // 4 KiB pages (head_dim rows of page_size halves), and the TLB misses of a long context
        // cost more than the reads themselves
        auto b = AnonBuffer::allocate(2 * half_ * sizeof(uint16_t));
        if (!b) throw std::bad_alloc();
        buf_ = std::move(*b);
    }

    // Keys / values of layer il and KV head hk in one page, one head's positions together
    // (attention streams them in order): keys transposed, head_dim rows of page_size positions
    // (element i of position p at k(...)[i * page_size + p]: a vector of keys is one load);
    // values as page_size rows of head_dim.
    uint16_t* k(int32_t page, int64_t il, int64_t hk) { return keys() + offset(page, il, hk); }
    uint16_t* v(int32_t page, int64_t il, int64_t hk) { return keys() + half_ + offset(page, il, hk); }

    int64_t n_layer() const { return n_layer_; }
    int64_t n_head_kv() const { return n_head_kv_; }
    int64_t head_dim() const { return head_dim_; }
    int64_t page_size() const { return page_size_; }
    int64_t n_pages() const { return n_pages_; }
    // halves from one page to the next for the same layer and head: k(p, il, hk) = k(0, il, hk) + p * page_stride()
    int64_t page_stride() const { return n_layer_ * n_head_kv_ * page_size_ * head_dim_; }
    size_t bytes() const { return buf_.size(); }  // 0 without storage
    bool has_storage() const { return half_ > 0; }

private:
    size_t offset(int32_t page, int64_t il, int64_t hk) const {
        return (size_t)((((int64_t)page * n_layer_ + il) * n_head_kv_ + hk) * page_size_ * head_dim_);
    }

    uint16_t* keys() const { return reinterpret_cast<uint16_t*>(buf_.data()); }

    int64_t n_layer_, n_head_kv_, head_dim_, page_size_, n_pages_;
    size_t half_;     // halves of K (and of V)
    AnonBuffer buf_;  // K (n_pages, n_layer, n_head_kv, head_dim, page_size), then V (..., page_size, head_dim)
};

// The cache of one sequence with its own pool: positions [0, n_past) hold valid keys and values.
struct KvCache {
    static constexpr int64_t kPageSize = 256;

    KvCache(int64_t n_layer, int64_t n_ctx, int64_t n_head_kv, int64_t head_dim, bool with_storage = true)
        : pool(n_layer, n_head_kv, head_dim, kPageSize, (n_ctx + kPageSize - 1) / kPageSize, with_storage),
          n_ctx(n_ctx) {
        for (int32_t p = 0; p < (int32_t)pool.n_pages(); ++p) pages.push_back(p);
    }

    KvPool pool;
    std::vector<int32_t> pages;  // all of the pool, in order
    int64_t n_ctx;
    int64_t n_past = 0;
};

}  // namespace tandem
