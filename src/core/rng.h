// Small deterministic random generators (splitmix64), reproducible across machines.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

namespace tandem {

inline uint64_t splitmix64(uint64_t& state) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// FNV-1a, to derive per-tensor seeds from names.
inline uint64_t hash_name(std::string_view s, uint64_t seed) {
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
    return h;
}

class Rng {
public:
    explicit Rng(uint64_t seed) : state_(seed) {}
    uint64_t next() { return splitmix64(state_); }
    // uniform in [0, 1)
    double uniform() { return (double)(next() >> 11) * (1.0 / 9007199254740992.0); }
    // standard normal (Box-Muller; the second value is discarded to keep streams simple)
    float normal() {
        const double u1 = 1.0 - uniform(), u2 = uniform();
        return (float)(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
    }

private:
    uint64_t state_;
};

}  // namespace tandem
