#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

namespace tandem {

int32_t argmax(const float* logits, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; ++i)
        if (logits[i] > logits[best]) best = i;
    return (int32_t)best;
}

int32_t Sampler::sample(const float* logits, int64_t n_vocab) {
    if (p_.temperature <= 0.0f) return argmax(logits, n_vocab);

    cand_.resize((size_t)n_vocab);
    for (int64_t i = 0; i < n_vocab; ++i) cand_[(size_t)i] = {logits[i] / p_.temperature, (int32_t)i};
    auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
    size_t n = cand_.size();
    if (p_.top_k > 0 && (size_t)p_.top_k < n) {
        std::partial_sort(cand_.begin(), cand_.begin() + p_.top_k, cand_.end(), by_logit);
        n = (size_t)p_.top_k;
    } else {
        std::sort(cand_.begin(), cand_.end(), by_logit);
    }
    // softmax over the kept candidates (sorted, best first)
    const float mx = cand_[0].first;
    double sum = 0.0;
    for (size_t i = 0; i < n; ++i) {
        cand_[i].first = std::exp(cand_[i].first - mx);
        sum += cand_[i].first;
    }
    for (size_t i = 0; i < n; ++i) cand_[i].first = (float)(cand_[i].first / sum);
    if (p_.min_p > 0.0f) {
        const float floor = p_.min_p * cand_[0].first;
        size_t keep = 1;
        while (keep < n && cand_[keep].first >= floor) ++keep;
        n = keep;
    }
    if (p_.top_p < 1.0f) {
        double cum = 0.0;
        size_t keep = 0;
        while (keep < n) {
            cum += cand_[keep++].first;
            if (cum >= p_.top_p) break;
        }
        n = std::max<size_t>(1, keep);
    }
    double total = 0.0;
    for (size_t i = 0; i < n; ++i) total += cand_[i].first;
    double r = rng_.uniform() * total;
    for (size_t i = 0; i < n; ++i) {
        r -= cand_[i].first;
        if (r < 0.0) return cand_[i].second;
    }
    return cand_[n - 1].second;
}

}  // namespace tandem
