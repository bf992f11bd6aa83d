// The sampler walks the candidates best first (logit / temperature, ties to the lower id): the
// softmax, min-p's floor, top-p's prefix and the draw are defined on that order. Sorting a 152K
// vocabulary for every token cost ~15 ms (more than a decode step), so the order is made lazily:
// the top 64 first, doubled only when the walk (top-p's prefix, the draw) gets past them. A
// peaked distribution (the usual case) never sorts more than its head; a flat one degrades to
// the full sort. The result is the full sort's, token for token (tests/unit/sampler_test.cpp
// compares with it), up to the order the normalising sums are added in.
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
    for (int64_t i = 0; i < n_vocab; ++i) cand_[(size_t)i] = {logits[i] / p_.temperature, 0.0f, (int32_t)i};
    auto by_logit = [](const Cand& a, const Cand& b) { return a.x > b.x || (a.x == b.x && a.id < b.id); };
    size_t n = cand_.size();
    size_t sorted = 0;  // cand_[0, sorted): the best `sorted` of cand_[0, n), in order
    auto sort_to = [&](size_t need) {  // extends the sorted head to `need` or more (doubling)
        if (need <= sorted) return;
        need = std::min(n, std::max({need, 2 * sorted, (size_t)64}));
        std::partial_sort(cand_.begin() + (std::ptrdiff_t)sorted, cand_.begin() + (std::ptrdiff_t)need,
                          cand_.begin() + (std::ptrdiff_t)n, by_logit);
        sorted = need;
    };
    if (p_.top_k > 0 && (size_t)p_.top_k < n) {
        std::partial_sort(cand_.begin(), cand_.begin() + p_.top_k, cand_.end(), by_logit);
        n = sorted = (size_t)p_.top_k;
    }
    sort_to(1);  // the best first (and the head the draw usually ends in)
    // softmax over the kept candidates; a candidate's probability is a function of its logit
    const float mx = cand_[0].x;
    double sum = 0.0;
    for (size_t i = 0; i < n; ++i) {
        cand_[i].e = std::exp(cand_[i].x - mx);
        sum += cand_[i].e;
    }
    auto prob_of = [&](const Cand& c) { return (float)(c.e / sum); };
    auto prob = [&](size_t i) { return prob_of(cand_[i]); };
    bool all = true;  // the kept set is every candidate (its sum needs no order)
    if (p_.min_p > 0.0f) {  // a floor on the probability keeps a best-first prefix
        const float floor = p_.min_p * prob(0);
        size_t keep = 1;
        while (keep < sorted && prob(keep) >= floor) ++keep;
        if (keep == sorted && sorted < n) {  // the whole head passed: the rest that pass, after it
            const auto mid = std::partition(cand_.begin() + (std::ptrdiff_t)sorted, cand_.begin() + (std::ptrdiff_t)n,
                                            [&](const Cand& c) { return prob_of(c) >= floor; });
            keep = (size_t)(mid - cand_.begin());
        }
        all = keep == n;
        n = keep;
    }
    if (p_.top_p < 1.0f) {
        double cum = 0.0;
        size_t keep = 0;
        while (keep < n) {
            sort_to(keep + 1);
            cum += prob(keep++);
            if (cum >= p_.top_p) break;
        }
        keep = std::max<size_t>(1, keep);
        all = all && keep == n;
        n = keep;
    }
    if (!all) sort_to(n);  // (a cut set is a sorted prefix already but for min-p's partition)
    double total = 0.0;
    for (size_t i = 0; i < n; ++i) total += prob(i);
    double r = rng_.uniform() * total;
    for (size_t i = 0; i < n; ++i) {
        sort_to(i + 1);
        r -= prob(i);
        if (r < 0.0) return cand_[i].id;
    }
    sort_to(n);
    return cand_[n - 1].id;
}

}  // namespace tandem
