// The sampler never sorts the vocabulary. Per token it makes a few passes over the 152K logits
// in native vectors (x = logit / T and its maximum; the weights and their sum), picks the best
// 64 candidates with a rising threshold (a block of 16 below it costs one comparison), and walks
// them in order. Only a walk that gets past those 64 (top-p's prefix or the draw, in a flat
// distribution) looks further: the rest of the candidates go into buckets of 1/64 in x by one
// pass, the bucket where the running weight crosses the target is sorted, and the walk ends
// there. Whatever the path, the token is the full sort's (the definition in sampler.h), up to
// the order in which the weights are added. Timings: docs/performance.md, "Sampling".
#include "runtime/sampler.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

namespace tandem {
namespace {

constexpr int kLanes = 16;
constexpr int64_t kHead = 64;        // candidates ordered up front
constexpr int kBuckets = 4096;       // tail walk: buckets of 1/64 in x, the last open-ended
constexpr float kBucketsPerUnit = 64.0f;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Native 16-byte vectors as GCC vector extensions (SSE2 on baseline x86-64, NEON on arm64),
// four per block of kLanes: element-wise IEEE arithmetic, the same results as scalar code.
constexpr int kVec = 4, kUnroll = kLanes / kVec;
using VF = float __attribute__((vector_size(16)));
using VI = int32_t __attribute__((vector_size(16)));
using VD = double __attribute__((vector_size(16)));

inline VF load(const float* p) {
    VF v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
inline void store(float* p, VF v) { std::memcpy(p, &v, sizeof v); }
inline VF splat(float f) { return VF{} + f; }
// m ? a : b lane by lane with bitwise operations (what SSE2 has)
inline VF select(VI m, VF a, VF b) { return (VF)((m & (VI)a) | (~m & (VI)b)); }
inline float select(bool m, float a, float b) { return m ? a : b; }
// the four lanes as doubles, added to acc
inline void add_wide(VD& acc, VF w) {
    acc += __builtin_convertvector(__builtin_shufflevector(w, w, 0, 1), VD) +
           __builtin_convertvector(__builtin_shufflevector(w, w, 2, 3), VD);
}

// sampler_exp's steps for one float or 4 (the same operations, so the same results)
template <class F>
F exp_steps(F x) {
    const F lo = F{} - 87.0f, zero = F{};
    const F xc = select(x >= -87.0f, x, lo);  // (NaN too; masked below)
    const F t = xc * 1.44269504089f;
    const F n = (t + 12582912.0f) - 12582912.0f;  // round to nearest (|t| < 2^22)
    F r = xc - n * 0.693145751953125f;
    r = r - n * 1.428606765330187e-06f;
    F p = r * (1.0f / 5040) + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    F scale;  // 2^n, n in [-126, 0]
    if constexpr (std::is_same_v<F, float>) scale = std::bit_cast<float>(((int32_t)n + 127) << 23);
    else scale = (VF)((__builtin_convertvector(n, VI) + 127) << 23);
    return select(x >= -87.0f, p * scale, zero);
}

// The best x[i] (NaN ignored).
float max_of(const float* x, int64_t n) {
    VF m[kUnroll];
    for (VF& v : m) v = splat(kNegInf);
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        for (int u = 0; u < kUnroll; ++u) {
            const VF v = load(x + i + kVec * u);
            m[u] = select(v > m[u], v, m[u]);
        }
    float best = kNegInf;
    for (; i < n; ++i) best = x[i] > best ? x[i] : best;
    for (const VF& v : m)
        for (int j = 0; j < kVec; ++j) best = v[j] > best ? v[j] : best;
    return best;
}

// e[i] = sampler_exp(x[i] - mx) for i < n; returns their sum (doubles, lane by lane).
double exp_pass(const float* x, int64_t n, float mx, float* e) {
    VD lane[kUnroll] = {};
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        for (int u = 0; u < kUnroll; ++u) {
            const VF w = exp_steps(load(x + i + kVec * u) - mx);
            if (e) store(e + i + kVec * u, w);
            add_wide(lane[u], w);
        }
    double sum = 0.0;
    for (; i < n; ++i) {
        const float w = exp_steps(x[i] - mx);
        if (e) e[i] = w;
        sum += w;
    }
    for (const VD& v : lane) sum += v[0] + v[1];
    return sum;
}

// The `need` best ids of x[0, n) with x >= floor, best first (x descending, ties to the lower id).
// The threshold rises to the need-th best so far whenever 2 * need (at least 256) are held.
void best_ids(const float* x, int64_t n, int64_t need, float floor, std::vector<int32_t>& out) {
    out.clear();
    if (need <= 0) return;
    auto better = [x](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); };
    const size_t cap = (size_t)std::max<int64_t>(2 * need, 256);
    float th = floor;
    auto take = [&](int64_t i) {
        if (!(x[i] >= th)) return;
        out.push_back((int32_t)i);
        if (out.size() >= cap) {
            std::nth_element(out.begin(), out.begin() + (need - 1), out.end(), better);
            out.resize((size_t)need);
            th = x[out[(size_t)need - 1]];  // the need-th best so far
        }
    };
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
        VI hit = load(x + i) >= th;
        for (int u = 1; u < kUnroll; ++u) hit |= load(x + i + kVec * u) >= th;
        if (!(hit[0] | hit[1] | hit[2] | hit[3])) continue;
        for (int j = 0; j < kLanes; ++j) take(i + j);
    }
    for (; i < n; ++i) take(i);
    std::sort(out.begin(), out.end(), better);
    if (out.size() > (size_t)need) out.resize((size_t)need);
}

}  // namespace

float sampler_exp(float x) { return exp_steps(x); }

float log_sum_exp(const float* logits, int64_t n) {
    const float mx = max_of(logits, n);
    if (!std::isfinite(mx)) return mx;  // (no finite logit, or an infinite one)
    return mx + (float)std::log(exp_pass(logits, n, mx, nullptr));
}

void top_ids(const float* logits, int64_t n, int64_t k, std::vector<int32_t>& out) {
    best_ids(logits, n, std::min(k, n), kNegInf, out);
}

int32_t argmax(const float* logits, int64_t n) {
    if (n <= 0) return 0;
    const float m = max_of(logits, n);
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {  // the first block holding it
        VI hit = load(logits + i) == m;
        for (int u = 1; u < kUnroll; ++u) hit |= load(logits + i + kVec * u) == m;
        if (hit[0] | hit[1] | hit[2] | hit[3]) break;
    }
    for (; i < n; ++i)
        if (logits[i] == m) return (int32_t)i;
    return 0;  // every logit NaN
}

int32_t Sampler::walk_tail(double target, bool inclusive, double& cum) {
    // The candidates after the head (worse than its last), allowed (x at or above min-p's
    // floor and, for the draw after top-p, not after top-p's last), by bucket of x.
    const int32_t hb = head_.back();
    const float xh = x_[hb];
    const float* x = x_.data();
    const float* e = e_.data();
    auto after_head = [&](int64_t i) { return x[i] < xh || (x[i] == xh && i > hb); };
    auto allowed = [&](int64_t i) {
        return x[i] >= x_floor_ && (lim_id_ < 0 || x[i] > lim_x_ || (x[i] == lim_x_ && i <= lim_id_));
    };
    auto bucket = [&](int64_t i) {
        const float t = (xh - x[i]) * kBucketsPerUnit;
        return t < (float)(kBuckets - 1) ? (int)t : kBuckets - 1;  // (-inf and NaN: the last)
    };
    mass_.assign(kBuckets, 0.0);
    int last_bucket = -1;
    for (int64_t i = 0; i < n_; ++i)
        if (after_head(i) && allowed(i)) {
            const int b = bucket(i);
            mass_[(size_t)b] += e[i];
            last_bucket = std::max(last_bucket, b);
        }
    if (last_bucket < 0) return hb;  // nothing after the head
    auto crossed = [&](double c) { return inclusive ? c >= target : c > target; };
    double c = cum;
    int star = -1;
    for (int b = 0; b <= last_bucket && star < 0; ++b) {
        if (crossed(c + mass_[(size_t)b])) star = b;
        else c += mass_[(size_t)b];
    }
    if (star < 0) {  // not crossed (rounding): the worst allowed candidate, in the last bucket
        star = last_bucket;
        c -= mass_[(size_t)star];
    }
    pick_.clear();
    for (int64_t i = 0; i < n_; ++i)
        if (after_head(i) && allowed(i) && bucket(i) == star) pick_.push_back((int32_t)i);
    if (pick_.empty()) return hb;  // (cannot happen: a crossing bucket has weight, the last has members)
    std::sort(pick_.begin(), pick_.end(), [x](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); });
    for (int32_t id : pick_) {
        c += e[id];
        if (crossed(c)) {
            cum = c;
            return id;
        }
    }
    cum = c;
    return pick_.back();
}

int32_t Sampler::sample(const float* logits, int64_t n_vocab) {
    if (p_.temperature <= 0.0f || n_vocab <= 1) return argmax(logits, n_vocab);
    n_ = n_vocab;
    x_.resize((size_t)n_);
    e_.resize((size_t)n_);
    float* x = x_.data();
    float* e = e_.data();
    {
        int64_t i = 0;
        for (; i + kVec <= n_; i += kVec) store(x + i, load(logits + i) / p_.temperature);
        for (; i < n_; ++i) x[i] = logits[i] / p_.temperature;
    }
    const float mx = max_of(x, n_);
    if (!std::isfinite(mx)) return argmax(logits, n_vocab);  // nothing finite, or an infinite logit
    x_floor_ = p_.min_p > 0.0f ? mx + std::log(p_.min_p) : kNegInf;
    lim_id_ = -1;

    // The head (best first) and the weights: S over top-k's set, the kept mass under min-p.
    const bool top_k = p_.top_k > 0 && p_.top_k < n_;
    double sum = 0.0, floor_sum = 0.0;
    int64_t n_allowed = 0;  // candidates at or above the floor (top-k's set only when top_k)
    if (top_k) {
        best_ids(x, n_, p_.top_k, kNegInf, head_);
        for (int32_t id : head_) {
            e[id] = sampler_exp(x[id] - mx);
            sum += e[id];
            if (x[id] >= x_floor_) floor_sum += e[id], ++n_allowed;
        }
    } else {
        sum = exp_pass(x, n_, mx, e);
        if (p_.min_p > 0.0f) {
            VD flane[kUnroll] = {};
            VI cnt{};
            int64_t i = 0;
            for (; i + kLanes <= n_; i += kLanes)
                for (int u = 0; u < kUnroll; ++u) {
                    const VI in = load(x + i + kVec * u) >= x_floor_;  // all ones where kept
                    add_wide(flane[u], (VF)(in & (VI)load(e + i + kVec * u)));
                    cnt -= in;
                }
            for (; i < n_; ++i)
                if (x[i] >= x_floor_) floor_sum += e[i], ++n_allowed;
            for (const VD& v : flane) floor_sum += v[0] + v[1];
            n_allowed += cnt[0] + cnt[1] + cnt[2] + cnt[3];
        } else {
            floor_sum = sum;
            n_allowed = n_;
        }
        best_ids(x, n_, kHead, x_floor_, head_);
    }
    if (head_.empty()) return argmax(logits, n_vocab);
    // kept: the head's first `kept`, and past the head when `tail` (up to lim_ when set)
    size_t kept = 0;
    while (kept < head_.size() && x[head_[kept]] >= x_floor_) ++kept;
    bool tail = !top_k && n_allowed > (int64_t)head_.size();
    double total = floor_sum;
    if (p_.top_p < 1.0f) {
        const double target = (double)p_.top_p * sum;
        double cum = 0.0;
        size_t k = 0;
        while (k < kept && (cum += e[head_[k]]) < target) ++k;
        if (k < kept) {  // reached within the head
            kept = k + 1;
            tail = false;
        } else if (tail) {
            const int32_t id = walk_tail(target, true, cum);
            lim_x_ = x[id];
            lim_id_ = id;
        }
        total = cum;  // (summed in the order the draw walks)
    }
    const double r = rng_.uniform() * total;
    double cum = 0.0;
    for (size_t k = 0; k < kept; ++k)
        if ((cum += e[head_[k]]) > r) return head_[k];
    if (!tail) return head_[kept - 1];
    return walk_tail(r, false, cum);
}

}  // namespace tandem
