// Key/value cache of one sequence, contiguous per layer, stored as f16 (as llama.cpp does).
#pragma once

#include <cstdint>
#include <vector>

namespace tandem {

struct KvCache {
    KvCache(int64_t n_layer, int64_t n_ctx, int64_t n_kv)
        : n_layer(n_layer), n_ctx(n_ctx), n_kv(n_kv),
          k((size_t)(n_layer * n_ctx * n_kv)), v((size_t)(n_layer * n_ctx * n_kv)) {}

    uint16_t* k_at(int64_t il, int64_t pos) { return k.data() + (size_t)((il * n_ctx + pos) * n_kv); }
    uint16_t* v_at(int64_t il, int64_t pos) { return v.data() + (size_t)((il * n_ctx + pos) * n_kv); }

    int64_t n_layer, n_ctx, n_kv;
    int64_t n_past = 0;  // positions [0, n_past) hold valid keys and values
    std::vector<uint16_t> k;  // (n_layer, n_ctx, n_kv) f16
    std::vector<uint16_t> v;  // (n_layer, n_ctx, n_kv) f16
};

}  // namespace tandem
