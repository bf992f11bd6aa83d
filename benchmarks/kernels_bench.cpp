// Micro-benchmark of every CPU kernel (each ISA this machine has) on the matrix shapes of
// Qwen3-30B-A3B and Qwen3-235B-A22B, single thread: one activation row against the weight
// rows, as in decode (ISA/type/shape), and prefill GEMM over n_tok rows (gemm/ISA/type/shape/n_tok).
// Reports weight GB/s (bytes_per_second, per pass over the weights) and GFLOP/s. Also the
// sampler on a 152K vocabulary (sample/...): what each sampled token costs the host.
//   build/bin/kernels_bench [--benchmark_filter=Q4_K]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "core/anon_buffer.h"
#include "core/fp16.h"
#include "kernels/cpu/kernels.h"
#include "kernels/reference/packed.h"
#include "kernels/reference/quants.h"
#include "runtime/sampler.h"

namespace {

using namespace tandem;

struct Shape {
    const char* name;
    int64_t rows, cols;  // rows of `cols` elements
};

// (D = hidden, F = expert ff); expert matrices are benchmarked one expert at a time
const Shape kShapes[] = {
    {"a3b.expert_gate_up", 768, 2048},  {"a3b.expert_down", 2048, 768},   {"a3b.attn_q", 4096, 2048},
    {"a3b.attn_kv", 512, 2048},         {"a3b.attn_out", 2048, 4096},     {"a3b.lm_head", 151936, 2048},
    {"a22b.expert_gate_up", 1536, 4096}, {"a22b.expert_down", 4096, 1536}, {"a22b.attn_q", 8192, 4096},
    {"a22b.attn_kv", 512, 4096},        {"a22b.attn_out", 4096, 8192},    {"a22b.lm_head", 151936, 4096},
};

// 16 distinct rows (quantized normals; random blocks for the types without a quantizer),
// repeated over the matrix
void fill_rows(DType type, const Shape& shape, std::mt19937& rng, std::normal_distribution<float>& nd,
               std::vector<float>& row, std::vector<uint8_t>& w, size_t rb) {
    for (int64_t r = 0; r < shape.rows; ++r) {
        if (r < 16) {
            if (!ref::can_quantize(type)) {
                ref::random_blocks(type, (uint64_t)r, w.data() + (size_t)r * rb, shape.cols);
                continue;
            }
            for (auto& v : row) v = nd(rng);
            ref::quantize_row(type, row.data(), w.data() + (size_t)r * rb, shape.cols);
        } else {
            std::copy_n(w.data() + (size_t)(r % 16) * rb, rb, w.data() + (size_t)r * rb);
        }
    }
}

void bench_gemv(benchmark::State& state, cpu::Isa isa, DType type, Shape shape) {
    if (!cpu::isa_supported(isa)) {
        state.SkipWithError("ISA not supported by this CPU");
        return;
    }
    const cpu::KernelTable& k = cpu::kernels_for(isa);
    const DType at = ref::vec_dot_type(type);
    const size_t rb = row_bytes(type, shape.cols);
    std::vector<uint8_t> w(rb * (size_t)shape.rows);
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    std::vector<float> row((size_t)shape.cols);
    // quantize a few distinct rows and repeat them: quantizing 150k rows would take minutes
    fill_rows(type, shape, rng, nd, row, w, rb);
    for (auto& v : row) v = nd(rng) * 50;
    std::vector<uint8_t> act(row_bytes(at, shape.cols));
    std::vector<float> y((size_t)shape.rows);
    for (auto _ : state) {
        k.convert[(int)at](row.data(), act.data(), shape.cols);
        k.gemv[(int)type](w.data(), rb, shape.rows, shape.cols, act.data(), y.data());
        benchmark::DoNotOptimize(y.data());
    }
    state.SetBytesProcessed((int64_t)state.iterations() * (int64_t)w.size());
    // flops per iteration in units of 1e9: the rate then reads directly as GFLOP/s
    state.counters["GFLOP/s"] = benchmark::Counter(2.0 * (double)shape.rows * (double)shape.cols / 1e9,
                                                   benchmark::Counter::kIsIterationInvariantRate);
}

// Prefill: n_tok activation rows at once (the tokens routed to one expert, or a prompt chunk).
void bench_gemm(benchmark::State& state, cpu::Isa isa, DType type, Shape shape, int64_t n_tok) {
    const cpu::KernelTable& k = cpu::kernels_for(isa);
    const DType at = ref::vec_dot_type(type);
    const size_t rb = row_bytes(type, shape.cols), ab = row_bytes(at, shape.cols);
    std::vector<uint8_t> w(rb * (size_t)shape.rows), acts(ab * (size_t)n_tok);
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    std::vector<float> row((size_t)shape.cols);
    fill_rows(type, shape, rng, nd, row, w, rb);
    std::vector<const void*> ap;
    std::vector<float> y((size_t)(shape.rows * n_tok));
    std::vector<float*> yp;
    for (int64_t t = 0; t < n_tok; ++t) {
        for (auto& v : row) v = nd(rng) * 50;
        k.convert[(int)at](row.data(), acts.data() + (size_t)t * ab, shape.cols);
        ap.push_back(acts.data() + (size_t)t * ab);
        yp.push_back(y.data() + t * shape.rows);
    }
    for (auto _ : state) {
        k.gemm[(int)type](w.data(), rb, shape.rows, shape.cols, ap.data(), n_tok, yp.data());
        benchmark::DoNotOptimize(y.data());
    }
    state.SetBytesProcessed((int64_t)state.iterations() * (int64_t)w.size());
    state.counters["GFLOP/s"] = benchmark::Counter(2.0 * (double)shape.rows * (double)shape.cols * (double)n_tok / 1e9,
                                                   benchmark::Counter::kIsIterationInvariantRate);
}

// The routed experts as the forward calls them: a stack of 128 experts of shape.rows rows (far
// more than the caches hold; for decode, n_tok = 1, enough for 1.5 GB: caches of hundreds of MB
// exist), each expert's rows in calls of 64 (4 groups) for n_tok tokens whose activation rows are
// scattered (every other row of a buffer), as the routed slots'.
void bench_packed_experts(benchmark::State& state, cpu::Isa isa, DType type, Shape shape, int64_t n_tok) {
    const cpu::KernelTable& k = cpu::kernels_for(isa);
    const DType at = ref::vec_dot_type(type);
    const size_t rb = row_bytes(type, shape.cols), ab = row_bytes(at, shape.cols);
    const size_t gb = ref::packed_group_bytes(type, shape.cols);
    constexpr int64_t kCallGroups = 4;
    const int64_t groups = shape.rows / ref::kPackRows;
    const int64_t kExperts = n_tok == 1 ? std::max<int64_t>(128, (int64_t)(1.5e9 / (double)(gb * (size_t)groups))) : 128;
    std::vector<uint8_t> w(rb * ref::kPackRows), packed(gb * (size_t)(groups * kExperts)), acts(2 * ab * (size_t)n_tok);
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    std::vector<float> row((size_t)shape.cols);
    fill_rows(type, {shape.name, ref::kPackRows, shape.cols}, rng, nd, row, w, rb);
    ref::pack_group(type, w.data(), rb, shape.cols, packed.data());
    for (int64_t g = 1; g < groups * kExperts; ++g) std::copy_n(packed.data(), gb, packed.data() + (size_t)g * gb);
    std::vector<const void*> ap;
    for (int64_t t = 0; t < n_tok; ++t) {
        for (auto& v : row) v = nd(rng) * 50;
        k.convert[(int)at](row.data(), acts.data() + (size_t)(2 * t) * ab, shape.cols);
        ap.push_back(acts.data() + (size_t)(2 * t) * ab);
    }
    std::vector<float> y((size_t)(shape.rows * n_tok));
    for (auto _ : state) {
        for (int64_t e = 0; e < kExperts; ++e)
            for (int64_t g = 0; g < groups; g += kCallGroups)
                k.packed_gemm[(int)type](packed.data() + (size_t)(e * groups + g) * gb, std::min(kCallGroups, groups - g),
                                         shape.cols, ap.data(), n_tok, y.data() + g * ref::kPackRows, shape.rows);
        benchmark::DoNotOptimize(y.data());
    }
    state.SetBytesProcessed((int64_t)state.iterations() * (int64_t)packed.size());
    state.counters["GFLOP/s"] = benchmark::Counter(2.0 * (double)(shape.rows * kExperts) * (double)shape.cols * (double)n_tok / 1e9,
                                                   benchmark::Counter::kIsIterationInvariantRate);
}

// The packed (16-row interleaved) layout of the same weights: decode (n_tok = 1) and prefill.
void bench_packed(benchmark::State& state, cpu::Isa isa, DType type, Shape shape, int64_t n_tok) {
    const cpu::KernelTable& k = cpu::kernels_for(isa);
    const DType at = ref::vec_dot_type(type);
    const size_t rb = row_bytes(type, shape.cols), ab = row_bytes(at, shape.cols);
    const size_t gb = ref::packed_group_bytes(type, shape.cols);
    const int64_t groups = shape.rows / ref::kPackRows;
    std::vector<uint8_t> w(rb * ref::kPackRows), packed(gb * (size_t)groups), acts(ab * (size_t)n_tok);
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    std::vector<float> row((size_t)shape.cols);
    fill_rows(type, {shape.name, ref::kPackRows, shape.cols}, rng, nd, row, w, rb);
    ref::pack_group(type, w.data(), rb, shape.cols, packed.data());
    for (int64_t g = 1; g < groups; ++g) std::copy_n(packed.data(), gb, packed.data() + (size_t)g * gb);
    std::vector<const void*> ap;
    std::vector<float> y((size_t)(shape.rows * n_tok));
    for (int64_t t = 0; t < n_tok; ++t) {
        for (auto& v : row) v = nd(rng) * 50;
        k.convert[(int)at](row.data(), acts.data() + (size_t)t * ab, shape.cols);
        ap.push_back(acts.data() + (size_t)t * ab);
    }
    for (auto _ : state) {
        if (n_tok == 1) k.convert[(int)at](row.data(), acts.data(), shape.cols);  // decode converts each time
        k.packed_gemm[(int)type](packed.data(), groups, shape.cols, ap.data(), n_tok, y.data(), shape.rows);
        benchmark::DoNotOptimize(y.data());
    }
    state.SetBytesProcessed((int64_t)state.iterations() * (int64_t)packed.size());
    state.counters["GFLOP/s"] = benchmark::Counter(2.0 * (double)shape.rows * (double)shape.cols * (double)n_tok / 1e9,
                                                   benchmark::Counter::kIsIterationInvariantRate);
}

// Attention over an f16 KV cache of n_pos positions (pages of 128): one decode token (8 GQA heads
// of head_dim 128, A3B/A22B-like) or a block of 32 prompt tokens at the end of the context.
// cached: the same keys and values every time (in the caches: the kernel's compute alone);
// n_head: the GQA group (8: Qwen3-30B-A3B, 16: Qwen3-235B-A22B).
void bench_attention(benchmark::State& state, cpu::Isa isa, int64_t n_pos, int64_t n_tok, bool cached, int64_t n_head) {
    const cpu::KernelTable& k = cpu::kernels_for(isa);
    if (!k.attention) {
        state.SkipWithError("no attention kernel for this ISA");
        return;
    }
    const int64_t hd = 128, n_kv = 4, ps = 128, n_pages = (n_pos + ps - 1) / ps;
    // kCopies caches (>= 256 MB in all) used in turn: read from DRAM as a model's layers are after
    // a step's weights have streamed through the caches
    const int64_t copy_bytes = n_pages * ps * n_kv * hd * 2;  // keys (values: as many, in the second half)
    const int64_t kCopies = cached ? 1 : std::max<int64_t>(16, (256 << 20) / copy_bytes);
    const size_t half = (size_t)(kCopies * n_pages * ps * n_kv * hd);
    // huge pages asked for, as the KvPool does (4 KiB pages cost TLB misses that it does not have)
    auto buf = AnonBuffer::allocate(2 * half * sizeof(uint16_t));
    if (!buf) {
        state.SkipWithError(buf.error().message.c_str());
        return;
    }
    uint16_t* kv = reinterpret_cast<uint16_t*>(buf->data());
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    // normals, repeating with a period of 65521 halves (prime: no two heads or pages alike)
    for (size_t i = 0; i < 2 * half; ++i) kv[i] = i < 65521 ? fp32_to_fp16(nd(rng)) : kv[i % 65521];
    std::vector<int32_t> pages((size_t)n_pages);
    for (int32_t i = 0; i < (int32_t)n_pages; ++i) pages[(size_t)i] = i;
    std::vector<float> q((size_t)(n_tok * n_head * hd)), o(q.size());
    for (auto& v : q) v = nd(rng);
    ref::AttnJob j;
    j.q = q.data();
    j.q_stride = n_head * hd;
    j.o = o.data();
    j.o_stride = n_head * hd;
    j.n_tok = n_tok;
    j.n_head = n_head;
    j.hd = hd;
    j.pos0 = n_pos - n_tok;
    j.p_end = n_pos;
    j.k = kv;
    j.v = kv + half;
    j.pages = pages.data();
    j.page_size = ps;
    j.page_stride = ps * n_kv * hd;  // KvPool: per page and head, K transposed, V as rows
    j.kv_stride = hd;
    j.scale = 0.088f;
    int64_t copy = 0;
    for (auto _ : state) {
        j.k = kv + (size_t)(copy * n_pages * ps * n_kv * hd);
        j.v = j.k + half;  // (as the KvPool keeps them: apart)
        copy = (copy + 1) % kCopies;
        k.attention(j);
        benchmark::DoNotOptimize(o.data());
    }
    // q.k and p.v for every (row, visible position)
    double macs = 0;
    for (int64_t t = 0; t < n_tok; ++t) macs += 2.0 * (double)(j.pos0 + t + 1) * (double)(n_head * hd);
    state.counters["GFLOP/s"] = benchmark::Counter(2.0 * macs / 1e9, benchmark::Counter::kIsIterationInvariantRate);
    state.SetBytesProcessed((int64_t)state.iterations() * n_pos * hd * 2 * 2);  // the head's keys and values
}

// One sampled token from Qwen3-sized logits: normals (sd 2.5) with a few tokens far ahead, as a
// model's distribution has a head; `flat`: normals of sd 1 alone (a random-weight model's: the
// draw walks far past any head)
void bench_sample(benchmark::State& state, SamplerParams p, bool flat) {
    const int64_t V = 151936;
    std::vector<float> logits((size_t)V);
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, flat ? 1.0f : 2.5f);
    for (auto& x : logits) x = nd(rng);
    if (!flat)
        for (int i = 0; i < 20; ++i) logits[rng() % V] += 12.0f;
    Sampler s(p);
    for (auto _ : state) benchmark::DoNotOptimize(s.sample(logits.data(), V));
}

int register_all() {
    struct SampleCase {
        const char* name;
        SamplerParams p;
        bool flat;
    };
    for (const SampleCase& c :
         {SampleCase{"greedy", {0.0f}, false}, SampleCase{"temp1", {1.0f}, false}, SampleCase{"temp1_flat", {1.0f}, true},
          SampleCase{"temp0.7_top_p0.9", {0.7f, 0, 0.9f}, false}, SampleCase{"temp1_min_p0.05", {1.0f, 0, 1.0f, 0.05f}, false},
          SampleCase{"qwen3_temp0.6_top_k20_top_p0.95", {0.6f, 20, 0.95f}, false}})
        benchmark::RegisterBenchmark((std::string("sample/") + c.name).c_str(), bench_sample, c.p, c.flat)
            ->Unit(benchmark::kMicrosecond);
    for (cpu::Isa isa : cpu::kAllIsas) {
        if (!cpu::isa_supported(isa) || !cpu::kernels_for(isa).attention) continue;
        for (int64_t n_pos : {160, 512, 4096})
            for (int64_t n_tok : {1, 32}) {
                const std::string name = "attention/" + std::string(cpu::isa_name(isa)) + "/ctx" + std::to_string(n_pos) +
                                         "/tok" + std::to_string(n_tok);
                benchmark::RegisterBenchmark(name.c_str(), bench_attention, isa, n_pos, n_tok, false, 8)->Unit(benchmark::kMicrosecond);
                if (n_tok == 1)
                    benchmark::RegisterBenchmark((name + "/cached").c_str(), bench_attention, isa, n_pos, n_tok, true, 8)
                        ->Unit(benchmark::kMicrosecond);
                if (n_tok == 1 && n_pos == 4096)
                    benchmark::RegisterBenchmark((name + "/group16").c_str(), bench_attention, isa, n_pos, n_tok, false, 16)
                        ->Unit(benchmark::kMicrosecond);
            }
    }
    for (cpu::Isa isa : cpu::kAllIsas) {
        if (!cpu::isa_supported(isa) || isa == cpu::Isa::generic) continue;
        for (DType t : {DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q3_K, DType::Q2_K, DType::IQ4_XS, DType::Q4_0,
                        DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::IQ4_NL})
            for (const Shape& s : kShapes)
                for (int64_t n_tok : {1, 4, 8, 32, 128}) {
                    if (n_tok > 4 && s.rows > 8192) continue;  // the LM head: one token per sequence of a decode step
                    const std::string name = "packed/" + std::string(cpu::isa_name(isa)) + "/" +
                                             std::string(dtype_name(t)) + "/" + s.name + "/" + std::to_string(n_tok);
                    benchmark::RegisterBenchmark(name.c_str(), bench_packed, isa, t, s, n_tok)->Unit(benchmark::kMicrosecond);
                }
    }
    for (cpu::Isa isa : cpu::kAllIsas) {
        if (!cpu::isa_supported(isa) || isa == cpu::Isa::generic) continue;
        for (DType t : {DType::Q4_K, DType::Q6_K})
            for (const Shape& s : {kShapes[0], kShapes[1], kShapes[6], kShapes[7]})
                for (int64_t n_tok : {1, 24, 64}) {
                    if ((n_tok == 1) != (s.rows * s.cols > 4 << 20)) continue;  // decode: Qwen3-235B's experts
                    const std::string name = "packed_experts/" + std::string(cpu::isa_name(isa)) + "/" +
                                             std::string(dtype_name(t)) + "/" + s.name + "/" + std::to_string(n_tok);
                    benchmark::RegisterBenchmark(name.c_str(), bench_packed_experts, isa, t, s, n_tok)->Unit(benchmark::kMillisecond);
                }
    }
    for (cpu::Isa isa : cpu::kAllIsas) {
        if (!cpu::isa_supported(isa) || isa == cpu::Isa::generic) continue;
        for (DType t : {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::F16, DType::BF16})
            for (const Shape& s : {kShapes[0], kShapes[1], kShapes[2]})
                for (int64_t n_tok : {4, 8, 16, 32, 128}) {
                    const std::string name = "gemm/" + std::string(cpu::isa_name(isa)) + "/" + std::string(dtype_name(t)) +
                                             "/" + s.name + "/" + std::to_string(n_tok);
                    benchmark::RegisterBenchmark(name.c_str(), bench_gemm, isa, t, s, n_tok)->Unit(benchmark::kMicrosecond);
                }
    }
    for (cpu::Isa isa : cpu::kAllIsas) {
        if (!cpu::isa_supported(isa)) continue;  // other architectures' ISAs
        for (DType t : {DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_0, DType::Q4_0, DType::F16, DType::BF16,
                        DType::Q2_K, DType::Q3_K, DType::IQ4_XS, DType::IQ4_NL, DType::Q4_1, DType::Q5_1})
            for (const Shape& s : kShapes) {
                if (isa == cpu::Isa::generic && s.rows > 8192) continue;  // minutes per run on the reference
                const std::string name = std::string(cpu::isa_name(isa)) + "/" + std::string(dtype_name(t)) + "/" + s.name;
                benchmark::RegisterBenchmark(name.c_str(), bench_gemv, isa, t, s)->Unit(benchmark::kMicrosecond);
            }
    }
    return 0;
}
const int registered = register_all();

}  // namespace

BENCHMARK_MAIN();
