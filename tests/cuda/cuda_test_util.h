// Helpers of the CUDA tests: a backend on cuda:0 with an arena, typed copies, and the skip that
// keeps a machine without a GPU green (the CPU reference part of each test still runs).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "backend/backend.h"

namespace tandem::cuda_test {

struct Gpu {
    std::unique_ptr<backend::Backend> be;
    std::unique_ptr<backend::Arena> arena;

    template <typename T>
    T* put(const std::vector<T>& v) {
        auto p = arena->alloc(std::max<size_t>(1, v.size() * sizeof(T)), "test buffer");
        EXPECT_TRUE(p.ok()) << p.error().message;
        auto st = be->upload(*p, v.data(), v.size() * sizeof(T));
        EXPECT_TRUE(st.ok()) << st.error().message;
        return static_cast<T*>(*p);
    }
    template <typename T>
    T* zeros(size_t n) {
        return put(std::vector<T>(n));
    }
    template <typename T>
    std::vector<T> get(const T* d, size_t n) {
        std::vector<T> v(n);
        auto st = be->download(v.data(), d, n * sizeof(T));
        EXPECT_TRUE(st.ok()) << st.error().message;
        return v;
    }
};

// A Gpu on cuda:0, or null with the reason when there is none.
inline std::unique_ptr<Gpu> open_gpu(std::string& why) {
    auto be = backend::make_cuda_backend(0);
    if (!be) {
        why = be.error().message;
        return nullptr;
    }
    auto g = std::make_unique<Gpu>();
    g->be = std::move(*be);
    auto a = g->be->make_arena(size_t{256} << 20);
    if (!a) {
        why = a.error().message;
        return nullptr;
    }
    g->arena = std::move(*a);
    return g;
}

}  // namespace tandem::cuda_test

// Opens cuda:0 into `gpu` or skips the rest of the test ("no CUDA device: ..." from the probe).
#define TANDEM_GPU_OR_SKIP(gpu)                                     \
    std::string gpu##_why;                                          \
    auto gpu = ::tandem::cuda_test::open_gpu(gpu##_why);            \
    if (!gpu) GTEST_SKIP() << gpu##_why << " (GPU part skipped)"
