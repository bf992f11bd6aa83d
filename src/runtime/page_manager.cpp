#include "runtime/page_manager.h"

#include <algorithm>
#include <cassert>

namespace tandem {

PageManager::PageManager(int64_t n_pages, int64_t page_size, bool prefix_cache)
    : page_size_(page_size), prefix_cache_(prefix_cache), pages_((size_t)n_pages) {
    free_.reserve((size_t)n_pages);
    for (int64_t p = n_pages - 1; p >= 0; --p) free_.push_back((int32_t)p);  // page 0 handed out first
}

std::optional<int32_t> PageManager::allocate() {
    int32_t p;
    if (!free_.empty()) {
        p = free_.back();
        free_.pop_back();
    } else if (!lru_.empty()) {
        p = lru_.front();
        lru_.pop_front();
        unpublish(p);
    } else {
        return std::nullopt;
    }
    pages_[(size_t)p].refs = 1;
    return p;
}

void PageManager::retain(int32_t page) {
    Page& pg = pages_[(size_t)page];
    if (pg.refs == 0) {
        assert(pg.published);  // an unreferenced page is only reachable through the cache
        lru_.erase(pg.lru_it);
    }
    ++pg.refs;
}

void PageManager::release(int32_t page) {
    Page& pg = pages_[(size_t)page];
    assert(pg.refs > 0);
    if (--pg.refs > 0) return;
    if (pg.published) {
        pg.lru_it = lru_.insert(lru_.end(), page);
    } else {
        free_.push_back(page);
    }
}

void PageManager::unpublish(int32_t page) {
    Page& pg = pages_[(size_t)page];
    if (!pg.published) return;
    auto it = by_hash_.find(pg.hash);
    if (it != by_hash_.end() && it->second == page) by_hash_.erase(it);
    pg.published = false;
    pg.tokens.clear();
}

uint64_t PageManager::chain_hash(uint64_t parent, const int32_t* tokens, int64_t n) {
    // FNV-1a over the parent hash and the token ids, then a final avalanche (splitmix64)
    uint64_t h = 0xcbf29ce484222325ull ^ parent;
    for (int64_t i = 0; i < n; ++i) {
        uint32_t t = (uint32_t)tokens[i];
        for (int b = 0; b < 4; ++b) {
            h ^= (t >> (8 * b)) & 0xff;
            h *= 0x100000001b3ull;
        }
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

std::vector<int32_t> PageManager::match_prefix(const int32_t* tokens, int64_t n_tokens, int64_t max_pages,
                                               std::vector<uint64_t>& hashes) {
    std::vector<int32_t> out;
    hashes.clear();
    if (!prefix_cache_) return out;
    uint64_t h = kRootHash;
    for (int64_t i = 0; i < max_pages && (i + 1) * page_size_ <= n_tokens; ++i) {
        const int32_t* page_tokens = tokens + i * page_size_;
        h = chain_hash(h, page_tokens, page_size_);
        auto it = by_hash_.find(h);
        if (it == by_hash_.end()) break;
        const Page& pg = pages_[(size_t)it->second];
        if (!std::equal(pg.tokens.begin(), pg.tokens.end(), page_tokens)) break;
        retain(it->second);
        out.push_back(it->second);
        hashes.push_back(h);
    }
    n_hit_pages_ += (int64_t)out.size();
    return out;
}

bool PageManager::publish(int32_t page, uint64_t hash, const int32_t* tokens) {
    if (!prefix_cache_) return false;
    Page& pg = pages_[(size_t)page];
    if (pg.published) return pg.hash == hash;
    if (by_hash_.count(hash)) return false;
    pg.published = true;
    pg.hash = hash;
    pg.tokens.assign(tokens, tokens + page_size_);
    by_hash_[hash] = page;
    return true;
}

}  // namespace tandem
