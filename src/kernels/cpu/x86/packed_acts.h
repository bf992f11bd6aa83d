// What the x86 packed kernels (avx2_packed_kernels.h, avx512_packed_kernels.h) compute once per call from
// each token's activations, for every group of the call. AVX2 code with internal linkage: include
// it only from files compiled with at least -mavx2 (each file uses what it needs: maybe_unused).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/reference/quants.h"

namespace tandem::cpu {
namespace {

// Q8_K block sums added in pairs: psum[8 * ib + j] = bsums[2j] + bsums[2j + 1] (the sum of
// sub-block j of 32), for every token and block; reused by every group of the call.
[[maybe_unused]] void pair_sums(const void* const* acts, int64_t n_tok, int64_t nb, std::vector<int16_t>& out) {
    if (out.size() < (size_t)(n_tok * nb * 8)) out.resize((size_t)(n_tok * nb * 8));
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t t = 0; t < n_tok; ++t) {
        const auto* a = static_cast<const ref::BlockQ8_K*>(acts[t]);
        int16_t* o = out.data() + t * nb * 8;
        for (int64_t ib = 0; ib < nb; ++ib) {  // |sum| <= 2 * 16 * 128: int16
            const __m256i s = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i*)a[ib].bsums), ones);
            _mm_storeu_si128((__m128i*)(o + ib * 8), _mm_packs_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1)));
        }
    }
}

// A Q8_0 block's values summed in fours: lane i = qs[4i] + ... + qs[4i + 3]
inline __m256i sums_of_4(const int8_t* qs) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), _mm256_loadu_si256((const __m256i*)qs)),
                             _mm256_set1_epi16(1));
}

// A token's Q8_0 block: its scale and the sum of its 32 values, once per call
struct Q0Act {
    float d;
    int32_t sum;
};

[[maybe_unused]] void q0_act_info(const void* const* acts, int64_t n_tok, int64_t nb, std::vector<Q0Act>& out) {
    if (out.size() < (size_t)(n_tok * nb)) out.resize((size_t)(n_tok * nb));
    for (int64_t t = 0; t < n_tok; ++t) {
        const auto* a = static_cast<const ref::BlockQ8_0*>(acts[t]);
        for (int64_t ib = 0; ib < nb; ++ib) {
            const __m256i s32 = sums_of_4(a[ib].qs);
            __m128i x = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
            x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0x4E));
            x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0xB1));
            out[(size_t)(t * nb + ib)] = {_cvtsh_ss(a[ib].d), _mm_cvtsi128_si32(x)};
        }
    }
}

// A token's Q8_0 blocks' sums of 4 (per chunk of the packed layout), once per call
struct Q8Sums {
    int32_t s[8];
};

[[maybe_unused]] void q8_act_sums(const void* const* acts, int64_t n_tok, int64_t nb, std::vector<Q8Sums>& out) {
    if (out.size() < (size_t)(n_tok * nb)) out.resize((size_t)(n_tok * nb));
    for (int64_t t = 0; t < n_tok; ++t) {
        const auto* a = static_cast<const ref::BlockQ8_0*>(acts[t]);
        for (int64_t ib = 0; ib < nb; ++ib) _mm256_storeu_si256((__m256i*)out[(size_t)(t * nb + ib)].s, sums_of_4(a[ib].qs));
    }
}

}  // namespace
}  // namespace tandem::cpu
