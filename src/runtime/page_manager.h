// Hands out the pages of a shared KvPool to sequences: reference counts, a free list, and a
// prefix cache of full pages.
//
// Prefix caching: a full page whose keys/values have been computed is published under a hash
// chained over every token before it (hash_i = H(hash_{i-1}, tokens of page i)), so a new
// sequence whose prompt starts with the same tokens takes the same pages (reference + 1) instead
// of computing them again. Published pages that no sequence references stay cached and are
// evicted least recently used first when a page is needed. Full pages are never written again,
// so sharing needs no copy-on-write: a sequence only writes into its last, private, page.
//
// Pure bookkeeping (no KV data, no threads): the server's engine thread owns it.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <unordered_map>
#include <vector>

namespace tandem {

class PageManager {
public:
    PageManager(int64_t n_pages, int64_t page_size, bool prefix_cache = true);
    bool prefix_cache() const { return prefix_cache_; }

    int64_t n_pages() const { return (int64_t)pages_.size(); }
    int64_t page_size() const { return page_size_; }
    int64_t n_available() const { return (int64_t)free_.size() + (int64_t)lru_.size(); }  // allocatable now
    int64_t n_used() const { return n_pages() - n_available(); }  // referenced by some sequence
    int64_t n_cached() const { return (int64_t)lru_.size(); }    // unreferenced, kept for reuse
    int64_t ref_count(int32_t page) const { return pages_[(size_t)page].refs; }

    // A page with one reference, evicting the least recently used cached page if no page is free.
    std::optional<int32_t> allocate();
    void retain(int32_t page);
    void release(int32_t page);

    // Hash of the page holding `tokens` (page_size of them) after the pages hashed into `parent`.
    static uint64_t chain_hash(uint64_t parent, const int32_t* tokens, int64_t n);
    static constexpr uint64_t kRootHash = 0x9e3779b97f4a7c15ull;

    // The cached pages holding the longest run of full pages at the start of tokens, at most
    // max_pages of them, each retained for the caller; hashes receives their chain hashes.
    std::vector<int32_t> match_prefix(const int32_t* tokens, int64_t n_tokens, int64_t max_pages,
                                      std::vector<uint64_t>& hashes);
    // Publishes a full, computed page (its page_size tokens) under hash. Returns false when
    // another page already holds that hash (the page then simply stays private).
    bool publish(int32_t page, uint64_t hash, const int32_t* tokens);

    // Pages fetched from the cache (match_prefix) since construction, for metrics.
    int64_t n_hit_pages() const { return n_hit_pages_; }

private:
    struct Page {
        int32_t refs = 0;
        bool published = false;
        uint64_t hash = 0;
        std::vector<int32_t> tokens;  // the page's tokens, to verify a hash match exactly
        std::list<int32_t>::iterator lru_it;
    };
    void unpublish(int32_t page);

    int64_t page_size_;
    bool prefix_cache_;
    std::vector<Page> pages_;
    std::vector<int32_t> free_;                    // unreferenced, unpublished
    std::list<int32_t> lru_;                       // unreferenced, published; front = least recent
    std::unordered_map<uint64_t, int32_t> by_hash_;  // published pages
    int64_t n_hit_pages_ = 0;
};

}  // namespace tandem
