// Every CUDA kernel against the CPU reference (kernels/reference), with the tolerance stated per
// test. The reference side runs everywhere; the GPU side skips where there is no device.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "backend/cuda/kernels.h"
#include "backend/cuda/split_attention.h"
#include "core/fp16.h"
#include "cuda_test_util.h"
#include "kernels/reference/int8.h"
#include "kernels/reference/ops.h"
#include "kernels/reference/quants.h"

namespace tandem {
namespace {

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

// max |a - b| <= tol * max(1, max |b|); a NaN or infinity in a fails (a race or a 0/0 in a
// kernel shows up as NaN, and NaN > err is false)
void expect_close(const std::vector<float>& a, const std::vector<float>& b, float tol, const std::string& what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    float mx = 1.0f, err = 0.0f;
    size_t at = 0;
    for (size_t i = 0; i < b.size(); ++i) {
        if (std::isfinite(b[i])) mx = std::max(mx, std::fabs(b[i]));
        const float d = a[i] == b[i] ? 0.0f : std::fabs(a[i] - b[i]);  // (equal infinities agree)
        if (!(d <= err)) err = std::isfinite(d) ? d : INFINITY, at = i;
    }
    EXPECT_LE(err, tol * mx) << what << ": worst at " << at << ": " << a[at] << " vs " << b[at];
}

const DType kWeightTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0,   DType::Q4_K,  DType::Q5_K,
                              DType::Q6_K, DType::Q4_1, DType::Q5_1, DType::IQ4_NL, DType::IQ4_XS, DType::Q2_K,
                              DType::Q3_K};

// Quantized rows of a random (rows, n) matrix, and the reference dequantization of them.
struct QMatrix {
    std::vector<uint8_t> bytes;
    std::vector<float> deq;
    size_t row_bytes;
};
QMatrix make_matrix(DType t, int64_t rows, int64_t n, uint32_t seed) {
    QMatrix m;
    m.row_bytes = row_bytes(t, n);
    m.bytes.resize(m.row_bytes * (size_t)rows);
    m.deq.resize((size_t)(rows * n));
    const std::vector<float> src = randn((size_t)(rows * n), seed, 0.5f);
    // types without a quantizer (read by Tandem, made by llama.cpp): random blocks
    if (!ref::can_quantize(t)) ref::random_blocks(t, seed, m.bytes.data(), rows * n);
    for (int64_t r = 0; r < rows; ++r) {
        if (ref::can_quantize(t)) ref::quantize_row(t, src.data() + r * n, m.bytes.data() + r * m.row_bytes, n);
        ref::dequantize_row(t, m.bytes.data() + r * m.row_bytes, m.deq.data() + r * n, n);
    }
    return m;
}

// Embedding rows: the dequantized row exactly (1e-6: nvcc may fuse d * q - m into one FMA).
TEST(CudaKernels, EmbedRowsMatchesTheDequantizer) {
    const int64_t V = 12, D = 512;
    const std::vector<int32_t> tokens = {3, 0, 11, 3, 7};
    std::vector<QMatrix> tables;
    for (DType t : kWeightTypes) tables.push_back(make_matrix(t, V, D, 1 + (uint32_t)t));
    TANDEM_GPU_OR_SKIP(gpu);
    int32_t* d_tok = gpu->put(tokens);
    for (size_t i = 0; i < std::size(kWeightTypes); ++i) {
        const DType t = kWeightTypes[i];
        float* out = gpu->zeros<float>(tokens.size() * D);
        ASSERT_EQ(cuda::embed_rows(t, gpu->put(tables[i].bytes), tables[i].row_bytes, d_tok, (int64_t)tokens.size(), D,
                                   out, nullptr), "");
        std::vector<float> want;
        for (int32_t tk : tokens) want.insert(want.end(), tables[i].deq.begin() + tk * D, tables[i].deq.begin() + (tk + 1) * D);
        expect_close(gpu->get(out, want.size()), want, 1e-6f, std::string("embed ") + std::string(dtype_name(t)));
    }
}

// RMSNorm over whole rows and per head (q/k norm): 1e-5 relative.
TEST(CudaKernels, RmsNormMatchesReference) {
    for (auto [rows, width] : {std::pair<int64_t, int64_t>{6, 2048}, {24, 128}, {3, 64}}) {
        const auto x = randn((size_t)(rows * width), 5, 3.0f), w = randn((size_t)width, 6);
        std::vector<float> want(x.size()), want_now(x.size());
        for (int64_t r = 0; r < rows; ++r) {
            ref::rms_norm(x.data() + r * width, w.data(), width, 1e-6f, want.data() + r * width);
            ref::rms_norm(x.data() + r * width, nullptr, width, 1e-6f, want_now.data() + r * width);
        }
        std::string why;
        auto gpu = cuda_test::open_gpu(why);
        if (!gpu) GTEST_SKIP() << why << " (GPU part skipped)";
        float* d_x = gpu->put(x);
        float* out = gpu->zeros<float>(x.size());
        ASSERT_EQ(cuda::rms_norm(d_x, gpu->put(w), rows, width, 1e-6f, out, nullptr), "");
        expect_close(gpu->get(out, x.size()), want, 1e-5f, "rms_norm " + std::to_string(width));
        ASSERT_EQ(cuda::rms_norm(d_x, nullptr, rows, width, 1e-6f, d_x, nullptr), "");  // in place, no weight
        expect_close(gpu->get(d_x, x.size()), want_now, 1e-5f, "rms_norm in place " + std::to_string(width));
    }
}

// NeoX RoPE at positions up to 128K, Qwen3's base, plain and with linear / YaRN scaling (Qwen3's
// 4x over 32K): 2e-5 relative (cos/sin of up to ~1e5 rad).
TEST(CudaKernels, RopeNeoxMatchesReference) {
    const int64_t H = 4, hd = 128;
    const std::vector<int32_t> pos = {0, 1, 7, 100, 4095, 32767, 131071};
    const auto x = randn(pos.size() * H * hd, 9);
    const std::vector<std::pair<const char*, ref::RopeFreqs>> cases = {
        {"plain", ref::RopeFreqs::plain(1e6f)},
        {"linear", ref::RopeFreqs::linear(1e6f, 4.0f)},
        {"yarn", ref::RopeFreqs::yarn(hd, 1e6f, 4.0f, 32768)}};
    std::vector<std::vector<float>> want;
    for (const auto& [name, f] : cases) {
        want.push_back(x);
        for (size_t t = 0; t < pos.size(); ++t) ref::rope_neox(want.back().data() + t * H * hd, H, hd, pos[t], f);
    }
    TANDEM_GPU_OR_SKIP(gpu);
    const int32_t* d_pos = gpu->put(pos);
    for (size_t c = 0; c < cases.size(); ++c) {
        float* d = gpu->put(x);
        ASSERT_EQ(cuda::rope_neox(d, d_pos, (int64_t)pos.size(), H, hd, cases[c].second, nullptr), "");
        expect_close(gpu->get(d, x.size()), want[c], 2e-5f, std::string("rope ") + cases[c].first);
    }
}

TEST(CudaKernels, SwigluMatchesReference) {
    const size_t n = 3000;
    const auto g = randn(n, 11, 4.0f), u = randn(n, 12);
    std::vector<float> want(n);
    ref::swiglu(g.data(), u.data(), want.data(), (int64_t)n);
    TANDEM_GPU_OR_SKIP(gpu);
    float* d_g = gpu->put(g);
    ASSERT_EQ(cuda::swiglu(d_g, gpu->put(u), d_g, (int64_t)n, nullptr), "");
    expect_close(gpu->get(d_g, n), want, 1e-6f, "swiglu");
}

// The residual add and the row gather of the LM head's inputs: exact.
TEST(CudaKernels, AddAndGatherRowsAreExact) {
    const int64_t n_rows = 7, width = 300;
    const auto x = randn((size_t)(n_rows * width), 13), y = randn((size_t)(n_rows * width), 14);
    std::vector<float> sum(x.size());
    for (size_t i = 0; i < x.size(); ++i) sum[i] = x[i] + y[i];
    const std::vector<int32_t> rows = {6, 0, 3};
    std::vector<float> picked;
    for (int32_t r : rows) picked.insert(picked.end(), sum.begin() + r * width, sum.begin() + (r + 1) * width);
    TANDEM_GPU_OR_SKIP(gpu);
    float* d_x = gpu->put(x);
    ASSERT_EQ(cuda::add(d_x, gpu->put(y), (int64_t)x.size(), nullptr), "");
    EXPECT_EQ(gpu->get(d_x, x.size()), sum);
    float* d_out = gpu->zeros<float>(picked.size());
    ASSERT_EQ(cuda::gather_rows(d_x, gpu->put(rows), (int64_t)rows.size(), width, d_out, nullptr), "");
    EXPECT_EQ(gpu->get(d_out, picked.size()), picked);
}

float bf16_round(float v) { return bf16_to_fp32(fp32_to_bf16(v)); }

// y (n_tok, rows) = x . w^T in double, with both operands rounded to bf16 first when `bf16` (the
// tensor-core kernels' inputs)
std::vector<float> matmul_ref(const std::vector<float>& deq, int64_t rows, int64_t in, const std::vector<float>& x,
                              int64_t n_tok, bool bf16) {
    auto rd = [&](float v) { return bf16 ? bf16_round(v) : v; };
    std::vector<float> want((size_t)(n_tok * rows));
    for (int64_t tk = 0; tk < n_tok; ++tk)
        for (int64_t r = 0; r < rows; ++r) {
            double s = 0;
            for (int64_t i = 0; i < in; ++i) s += (double)rd(deq[r * in + i]) * rd(x[tk * in + i]);
            want[tk * rows + r] = (float)s;
        }
    return want;
}

// GEMV (1 token) and GEMM (3, 11 tokens: a partial tile) against the dequantized weights dotted
// in double: 1e-5 of the largest output (f32 accumulation over 768 products). From
// kMmaMinTokens on (17, 100: a partial tile of tokens and one of rows) matmul runs the tensor-core
// kernel, compared with the bf16-rounded operands: 1e-3 (an element's f32 decode can round to the
// neighbouring bf16 where the reference's does not); matmul_mma is also called directly at 3
// tokens, and at an input width that is not a multiple of its 32-input steps (F16, 300).
TEST(CudaKernels, MatmulMatchesDequantizedReference) {
    const int64_t rows = 70, in = 768;
    static_assert(cuda::kMmaMinTokens > 11 && cuda::kMmaMinTokens <= 17);
    TANDEM_GPU_OR_SKIP(gpu);
    for (DType t : kWeightTypes) {
        const QMatrix w = make_matrix(t, rows, in, 20 + (uint32_t)t);
        for (int64_t n_tok : {1, 3, 11, 17, 100}) {
            const bool mma = n_tok >= cuda::kMmaMinTokens;
            const auto x = randn((size_t)(n_tok * in), 30 + (uint32_t)n_tok);
            const std::vector<float> want = matmul_ref(w.deq, rows, in, x, n_tok, mma);
            float* y = gpu->zeros<float>(want.size());
            ASSERT_EQ(cuda::matmul(t, gpu->put(w.bytes), w.row_bytes, rows, in, gpu->put(x), n_tok, y, nullptr), "");
            expect_close(gpu->get(y, want.size()), want, mma ? 1e-3f : 1e-5f,
                         std::string("matmul ") + std::string(dtype_name(t)) + " x" + std::to_string(n_tok));
        }
        const auto x = randn((size_t)(3 * in), 33);
        float* y = gpu->zeros<float>((size_t)(3 * rows));
        ASSERT_EQ(cuda::matmul_mma(t, gpu->put(w.bytes), w.row_bytes, rows, in, gpu->put(x), 3, y, nullptr), "");
        expect_close(gpu->get(y, (size_t)(3 * rows)), matmul_ref(w.deq, rows, in, x, 3, true), 1e-3f,
                     std::string("matmul_mma ") + std::string(dtype_name(t)) + " x3");
    }
    {
        const int64_t odd_in = 300, n_tok = 40;
        const QMatrix w = make_matrix(DType::F16, rows, odd_in, 25);
        const auto x = randn((size_t)(n_tok * odd_in), 35);
        float* y = gpu->zeros<float>((size_t)(n_tok * rows));
        ASSERT_EQ(cuda::matmul(DType::F16, gpu->put(w.bytes), w.row_bytes, rows, odd_in, gpu->put(x), n_tok, y, nullptr), "");
        expect_close(gpu->get(y, (size_t)(n_tok * rows)), matmul_ref(w.deq, rows, odd_in, x, n_tok, true), 1e-3f,
                     "matmul F16, 300 inputs x40");
    }
    EXPECT_NE(cuda::matmul(DType::Q5_0, nullptr, 0, 1, 32, nullptr, 1, nullptr, nullptr), "");
    EXPECT_NE(cuda::matmul(DType::Q5_0, nullptr, 0, 1, 32, nullptr, 20, nullptr, nullptr), "");
}

// Routed experts on the device: each pair's expert matrix (a stack of 3 experts) times its input
// row, the pairs of one expert in tiles (cuda::expert_tiles: sorted by expert, at most 8 a tile;
// expert 0 has 20 pairs: tiles of 8, 8 and 4), then the weighted sum per token in pair order
// into the residual; against double dots of the dequantized weights (1e-5 of the largest output).
TEST(CudaKernels, ExpertMatmulAndSumMatchTheReference) {
    const int64_t n_exp = 3, rows = 40, in = 512, n_tok = 20;
    // pairs in token order, two per token: expert 0 and one of 1, 2; runs: (token, first pair, pairs)
    std::vector<int32_t> x_row, expert, runs;
    std::vector<float> weight;
    std::mt19937 rng(7);
    for (int32_t t = 0; t < (int32_t)n_tok; ++t) {
        const float w0 = std::uniform_real_distribution<float>(0.2f, 0.8f)(rng);
        x_row.insert(x_row.end(), {t, t});
        expert.insert(expert.end(), {0, 1 + (int32_t)(rng() % 2)});
        weight.insert(weight.end(), {w0, 1.0f - w0});
        runs.insert(runs.end(), {t, 2 * t, 2});
    }
    const int64_t np = (int64_t)x_row.size();
    std::vector<int32_t> order((size_t)np), tiles((size_t)(2 * np));
    const int64_t n_tiles = cuda::expert_tiles(expert.data(), np, order.data(), tiles.data());
    // the tiles: every pair once, one expert per tile, at most 8, in expert order, pairs ascending
    std::vector<int> seen((size_t)np, 0);
    for (int64_t i = 0; i < n_tiles; ++i) {
        const int32_t first = tiles[(size_t)(2 * i)], cnt = tiles[(size_t)(2 * i + 1)];
        ASSERT_GE(cnt, 1);
        ASSERT_LE(cnt, cuda::kExpertTileTokens);
        for (int32_t j = first; j < first + cnt; ++j) {
            ++seen[(size_t)order[(size_t)j]];
            EXPECT_EQ(expert[(size_t)order[(size_t)j]], expert[(size_t)order[(size_t)first]]);
            if (j > 0) {
                EXPECT_TRUE(expert[(size_t)order[(size_t)j - 1]] < expert[(size_t)order[(size_t)j]] ||
                            order[(size_t)j - 1] < order[(size_t)j]);
            }
        }
    }
    EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), np);
    EXPECT_EQ(tiles[1], 8);  // expert 0: 8, 8, 4
    EXPECT_EQ(tiles[3], 8);
    EXPECT_EQ(tiles[5], 4);
    // the tensor-core kernel's tiles: up to 64 pairs (expert 0's 20 in one); 40 pairs over 3
    // experts average under kMmaMinTokens a tile, so expert_tiles_for keeps the narrow ones
    std::vector<int32_t> wide_order((size_t)np), wide_tiles((size_t)(2 * np));
    const int64_t n_wide = cuda::expert_tiles(expert.data(), np, wide_order.data(), wide_tiles.data(), cuda::kMmaTileTokens);
    ASSERT_EQ(n_wide, 3);
    EXPECT_EQ(wide_tiles[1], 20);
    EXPECT_EQ(wide_tiles[3] + wide_tiles[5], 20);
    bool mma = true;
    std::vector<int32_t> o2((size_t)np), t2((size_t)(2 * np));
    EXPECT_EQ(cuda::expert_tiles_for(expert.data(), np, o2.data(), t2.data(), mma), n_tiles);
    EXPECT_FALSE(mma);
    EXPECT_EQ(t2, tiles);
    {  // prefill-like: 150, 100 and 50 pairs -> tiles 64 64 22 | 64 36 | 50, for the mma kernel
        std::vector<int32_t> many;
        for (int i = 0; i < 300; ++i) many.push_back(i % 6 < 3 ? 0 : (i % 6 < 5 ? 1 : 2));
        std::vector<int32_t> mo(many.size()), mt(2 * many.size());
        const int64_t nm = cuda::expert_tiles_for(many.data(), (int64_t)many.size(), mo.data(), mt.data(), mma);
        EXPECT_TRUE(mma);
        ASSERT_EQ(nm, 6);
        const std::vector<int32_t> sizes = {mt[1], mt[3], mt[5], mt[7], mt[9], mt[11]};
        EXPECT_EQ(sizes, (std::vector<int32_t>{64, 64, 22, 64, 36, 50}));
        for (int64_t i = 0; i < nm; ++i)
            for (int32_t j = mt[(size_t)(2 * i)]; j < mt[(size_t)(2 * i)] + mt[(size_t)(2 * i + 1)]; ++j)
                EXPECT_EQ(many[(size_t)mo[(size_t)j]], many[(size_t)mo[(size_t)mt[(size_t)(2 * i)]]]);
    }
    const auto x = randn((size_t)(n_tok * in), 51);
    const auto res = randn((size_t)(n_tok * rows), 52);
    for (DType t : {DType::Q4_K, DType::Q6_K, DType::Q3_K, DType::F16}) {
        const QMatrix w = make_matrix(t, n_exp * rows, in, 60 + (uint32_t)t);
        const size_t eb = w.row_bytes * (size_t)rows;
        std::vector<float> want_y((size_t)(np * rows)), want_out = res;
        for (int64_t p = 0; p < np; ++p)
            for (int64_t r = 0; r < rows; ++r) {
                double s = 0;
                for (int64_t i = 0; i < in; ++i) s += (double)w.deq[(expert[p] * rows + r) * in + i] * x[x_row[p] * in + i];
                want_y[p * rows + r] = (float)s;
            }
        for (int64_t p = 0; p < np; ++p)
            for (int64_t r = 0; r < rows; ++r) want_out[x_row[p] * rows + r] += weight[p] * want_y[p * rows + r];
        std::string why;
        auto gpu = cuda_test::open_gpu(why);
        if (!gpu) GTEST_SKIP() << why << " (GPU part skipped)";
        float* y = gpu->zeros<float>(want_y.size());
        float* out = gpu->put(res);
        ASSERT_EQ(cuda::expert_matmul(t, gpu->put(w.bytes), eb, w.row_bytes, rows, in, gpu->put(x), gpu->put(x_row),
                                      gpu->put(expert), gpu->put(order), gpu->put(tiles), n_tiles, y, nullptr),
                  "");
        expect_close(gpu->get(y, want_y.size()), want_y, 1e-5f, std::string("expert_matmul ") + std::string(dtype_name(t)));
        ASSERT_EQ(cuda::expert_sum(y, gpu->put(runs), (int64_t)runs.size() / 3, gpu->put(weight), rows, out, nullptr), "");
        expect_close(gpu->get(out, want_out.size()), want_out, 1e-5f, std::string("expert_sum ") + std::string(dtype_name(t)));
        // the tensor-core kernel over the wide tiles, against the bf16-rounded operands
        std::vector<float> want_mma((size_t)(np * rows));
        for (int64_t p = 0; p < np; ++p)
            for (int64_t r = 0; r < rows; ++r) {
                double s = 0;
                for (int64_t i = 0; i < in; ++i)
                    s += (double)bf16_round(w.deq[(expert[p] * rows + r) * in + i]) * bf16_round(x[x_row[p] * in + i]);
                want_mma[p * rows + r] = (float)s;
            }
        float* y2 = gpu->zeros<float>(want_mma.size());
        ASSERT_EQ(cuda::expert_matmul_mma(t, gpu->put(w.bytes), eb, w.row_bytes, rows, in, gpu->put(x), gpu->put(x_row),
                                          gpu->put(expert), gpu->put(wide_order), gpu->put(wide_tiles), n_wide, y2,
                                          nullptr),
                  "");
        expect_close(gpu->get(y2, want_mma.size()), want_mma, 1e-3f,
                     std::string("expert_matmul_mma ") + std::string(dtype_name(t)));
    }
}

// Router as Forward::moe does it: softmax, top k (ties to the lower index), renormalised.
TEST(CudaKernels, RouterTopkMatchesForward) {
    for (auto [E, K] : {std::pair<int64_t, int64_t>{128, 8}, {60, 4}, {8, 2}}) {
        const int64_t n_tok = 7;
        auto logits = randn((size_t)(n_tok * E), 40 + (uint32_t)E, 3.0f);
        logits[2 * E + 5] = logits[2 * E + 9] = 50.0f;  // an exact tie at the top of token 2
        std::vector<int32_t> want_ids;
        std::vector<float> want_w;
        for (int64_t t = 0; t < n_tok; ++t) {
            std::vector<float> p(logits.begin() + t * E, logits.begin() + (t + 1) * E);
            ref::softmax(p.data(), E);
            std::vector<int64_t> idx((size_t)E);
            std::iota(idx.begin(), idx.end(), 0);
            std::partial_sort(idx.begin(), idx.begin() + K, idx.end(),
                              [&](int64_t a, int64_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
            float sum = 0;
            for (int64_t j = 0; j < K; ++j) sum += p[idx[j]];
            for (int64_t j = 0; j < K; ++j) want_ids.push_back((int32_t)idx[j]), want_w.push_back(p[idx[j]] / sum);
        }
        EXPECT_EQ(want_ids[2 * K], 5);
        EXPECT_EQ(want_ids[2 * K + 1], 9);
        std::string why;
        auto gpu = cuda_test::open_gpu(why);
        if (!gpu) GTEST_SKIP() << why << " (GPU part skipped)";
        int32_t* ids = gpu->zeros<int32_t>(want_ids.size());
        float* w = gpu->zeros<float>(want_w.size());
        ASSERT_EQ(cuda::router_topk(gpu->put(logits), n_tok, E, K, ids, w, nullptr), "");
        EXPECT_EQ(gpu->get(ids, want_ids.size()), want_ids) << "E " << E;
        expect_close(gpu->get(w, want_w.size()), want_w, 1e-5f, "router weights");
    }
}

// Causal GQA attention of queries q (n_q, H * hd) at positions qpos of sequences qseq over f16
// pools, slot(s, p) = the element offset of sequence s's position p: the reference.
template <typename Slot>
std::vector<float> attention_reference(const std::vector<float>& q, const std::vector<int32_t>& qpos,
                                       const std::vector<int32_t>& qseq, const std::vector<uint16_t>& k_pool,
                                       const std::vector<uint16_t>& v_pool, Slot slot, int64_t H, int64_t Hkv, int64_t hd) {
    const int64_t n_q = (int64_t)qpos.size();
    std::vector<float> want((size_t)(n_q * H * hd), 0.0f);
    for (int64_t t = 0; t < n_q; ++t)
        for (int64_t h = 0; h < H; ++h) {
            const int64_t hk = h / (H / Hkv), n_pos = qpos[t] + 1;
            std::vector<float> sc((size_t)n_pos);
            for (int64_t p = 0; p < n_pos; ++p) {
                float d = 0;
                for (int64_t i = 0; i < hd; ++i)
                    d += q[(t * H + h) * hd + i] * fp16_to_fp32(k_pool[slot(qseq[t], p) + hk * hd + i]);
                sc[p] = d / std::sqrt((float)hd);
            }
            ref::softmax(sc.data(), n_pos);
            for (int64_t p = 0; p < n_pos; ++p)
                for (int64_t i = 0; i < hd; ++i)
                    want[(t * H + h) * hd + i] += sc[p] * fp16_to_fp32(v_pool[slot(qseq[t], p) + hk * hd + i]);
        }
    return want;
}

// Paged KV cache + attention (GQA), as Forward::attention does it on a KvPool: two decode
// sequences on shuffled pages, then a causal prefill of a whole sequence. K/V bytes bit-equal;
// outputs 1e-5 relative.
TEST(CudaKernels, PagedAttentionMatchesForward) {
    for (int64_t hd : {64, 128, 256}) {
        const int64_t n_layer = 2, il = 1, ps = 16, H = 8, Hkv = 2, n_kv = Hkv * hd, n_pages = 8, max_pages = 4;
        // sequence 0 owns pages {5, 2, 7}, sequence 1 pages {0, 3}
        const std::vector<int32_t> tables = {5, 2, 7, -1, 0, 3, -1, -1};
        const std::vector<int64_t> len = {37, 20};
        // every position of both sequences is stored
        std::vector<int32_t> pos, seq;
        for (int s = 0; s < 2; ++s)
            for (int64_t p = 0; p < len[s]; ++p) pos.push_back((int32_t)p), seq.push_back(s);
        const int64_t n_all = (int64_t)pos.size();
        const auto k = randn((size_t)(n_all * n_kv), 50), v = randn((size_t)(n_all * n_kv), 51);
        const size_t pool_elems = (size_t)(n_pages * n_layer * ps * n_kv);
        std::vector<uint16_t> k_pool(pool_elems, 0), v_pool(pool_elems, 0);
        auto slot = [&](int64_t s, int64_t p) {
            return ((size_t)((int64_t)tables[s * max_pages + p / ps] * n_layer + il) * ps + p % ps) * n_kv;
        };
        for (int64_t t = 0; t < n_all; ++t)
            for (int64_t i = 0; i < n_kv; ++i) {
                k_pool[slot(seq[t], pos[t]) + i] = fp32_to_fp16(k[t * n_kv + i]);
                v_pool[slot(seq[t], pos[t]) + i] = fp32_to_fp16(v[t * n_kv + i]);
            }
        // queries: the decode token of each sequence, then all of sequence 1 (prefill, causal)
        std::vector<int32_t> qpos = {(int32_t)len[0] - 1, (int32_t)len[1] - 1}, qseq = {0, 1};
        for (int64_t p = 0; p < len[1]; ++p) qpos.push_back((int32_t)p), qseq.push_back(1);
        const int64_t n_q = (int64_t)qpos.size();
        const auto q = randn((size_t)(n_q * H * hd), 52);
        const std::vector<float> want = attention_reference(q, qpos, qseq, k_pool, v_pool, slot, H, Hkv, hd);
        // tiles of the tiled prefill kernel: single-token tiles (the two decode tokens), then
        // sequence 1's run cut into tiles of 64 / group tokens (host code: checked everywhere)
        const std::vector<int32_t> tiles = cuda::attention_tiles(qpos.data(), qseq.data(), n_q, H / Hkv);
        EXPECT_EQ(tiles, (std::vector<int32_t>{0, 1, 1, 1, 2, 16, 18, 4}));
        std::string why;
        auto gpu = cuda_test::open_gpu(why);
        if (!gpu) GTEST_SKIP() << why << " (GPU part skipped)";
        cuda::KvLayer kv{gpu->zeros<uint16_t>(pool_elems), gpu->zeros<uint16_t>(pool_elems), n_layer, il, ps, n_kv};
        int32_t* d_tables = gpu->put(tables);
        ASSERT_EQ(cuda::kv_store(kv, gpu->put(k), gpu->put(v), gpu->put(pos), gpu->put(seq), d_tables, max_pages, n_all,
                                 nullptr), "");
        EXPECT_EQ(gpu->get(kv.k, pool_elems), k_pool) << "K pages, head_dim " << hd;
        EXPECT_EQ(gpu->get(kv.v, pool_elems), v_pool) << "V pages, head_dim " << hd;
        float* out = gpu->zeros<float>(want.size());
        ASSERT_EQ(cuda::attention(kv, gpu->put(q), gpu->put(qpos), gpu->put(qseq), d_tables, max_pages, n_q, H, Hkv, hd,
                                  out, nullptr), "");
        expect_close(gpu->get(out, want.size()), want, 1e-5f, "attention head_dim " + std::to_string(hd));
        // the tiled prefill kernel on the same queries
        float* out_t = gpu->zeros<float>(want.size());
        ASSERT_EQ(cuda::attention_tiled(kv, gpu->put(q), gpu->put(qpos), gpu->put(qseq), d_tables, max_pages, gpu->put(tiles),
                                        (int64_t)tiles.size() / 2, H, Hkv, hd, out_t, nullptr),
                  "");
        expect_close(gpu->get(out_t, want.size()), want, 1e-5f, "tiled attention head_dim " + std::to_string(hd));
        // on tensor cores (Q and P rounded to f16): 4e-3 of the largest output; head_dim 256 refused
        float* out_m = gpu->zeros<float>(want.size());
        const std::string ks = cuda::attention_mma(kv, gpu->put(q), gpu->put(qpos), gpu->put(qseq), d_tables, max_pages,
                                                   gpu->put(tiles), (int64_t)tiles.size() / 2, H, Hkv, hd, out_m, nullptr);
        if (!cuda::attention_mma_fits(hd)) {
            EXPECT_NE(ks, "") << "head_dim " << hd;
            continue;
        }
        ASSERT_EQ(ks, "");
        expect_close(gpu->get(out_m, want.size()), want, 4e-3f, "attention_mma head_dim " + std::to_string(hd));
    }
}

// Split-K decode attention (flash-decoding): four sequences of 1500, 700, 33 and 1 positions on
// shuffled pages, one decode token each, GQA groups of 4 and 16, cut into 1 to 64 parts (empty
// parts for the short sequences, the plan split_parts() makes for 132 SMs among them): the
// reference's output, 1e-5 relative (fp32 sums in another order).
TEST(CudaKernels, SplitDecodeAttentionMatchesForward) {
    const std::vector<int64_t> len = {1500, 700, 33, 1};
    const int64_t ps = 16, n_layer = 2, il = 1, max_pages = 94;
    std::vector<int32_t> tables(len.size() * max_pages, 0);
    std::vector<int32_t> order;
    for (int64_t s = 0; s < (int64_t)len.size(); ++s)
        for (int64_t i = 0; i < (len[s] + ps - 1) / ps; ++i) order.push_back((int32_t)order.size());
    const int64_t n_pages = (int64_t)order.size();
    std::shuffle(order.begin(), order.end(), std::mt19937(3));
    for (int64_t s = 0, next = 0; s < (int64_t)len.size(); ++s)
        for (int64_t i = 0; i < (len[s] + ps - 1) / ps; ++i) tables[s * max_pages + i] = order[next++];
    const std::vector<int32_t> qseq = {0, 1, 2, 3};
    std::vector<int32_t> qpos;
    for (int64_t l : len) qpos.push_back((int32_t)l - 1);
    const int64_t plan = cuda::split_parts(4, 2, len[0], 132);
    EXPECT_EQ(plan, 4);  // 4 tokens x 2 KV heads x 4 parts < 264 blocks; 1500 positions keep 4 parts of 256+
    for (int64_t hd : {64, 128, 256})
        for (int64_t H : {8, 32}) {
            const int64_t Hkv = 2, n_kv = Hkv * hd;
            const size_t pool_elems = (size_t)(n_pages * n_layer * ps * n_kv);
            std::vector<uint16_t> k_pool(pool_elems), v_pool(pool_elems);
            const auto kf = randn(pool_elems, 60 + (uint32_t)hd), vf = randn(pool_elems, 61 + (uint32_t)hd);
            for (size_t i = 0; i < pool_elems; ++i) k_pool[i] = fp32_to_fp16(kf[i]), v_pool[i] = fp32_to_fp16(vf[i]);
            auto slot = [&](int64_t s, int64_t p) {
                return ((size_t)((int64_t)tables[s * max_pages + p / ps] * n_layer + il) * ps + p % ps) * n_kv;
            };
            const auto q = randn((size_t)(4 * H * hd), 62);
            const std::vector<float> want = attention_reference(q, qpos, qseq, k_pool, v_pool, slot, H, Hkv, hd);
            std::string why;
            auto gpu = cuda_test::open_gpu(why);
            if (!gpu) GTEST_SKIP() << why << " (GPU part skipped)";
            const cuda::KvLayer kv{gpu->put(k_pool), gpu->put(v_pool), n_layer, il, ps, n_kv};
            const float* d_q = gpu->put(q);
            const int32_t *d_pos = gpu->put(qpos), *d_seq = gpu->put(qseq), *d_tables = gpu->put(tables);
            float* part_o = gpu->zeros<float>((size_t)(64 * 4 * H * hd));
            float* part_ml = gpu->zeros<float>((size_t)(64 * 4 * H * 2));
            for (int64_t parts : {(int64_t)1, (int64_t)2, plan, (int64_t)64}) {
                float* out = gpu->zeros<float>(want.size());
                ASSERT_EQ(cuda::attention_split(kv, d_q, d_pos, d_seq, d_tables, max_pages, 4, H, Hkv, hd, parts, part_o,
                                                part_ml, out, nullptr),
                          "");
                expect_close(gpu->get(out, want.size()), want, 1e-5f,
                             "split attention head_dim " + std::to_string(hd) + ", " + std::to_string(H / Hkv) +
                                 " heads per kv head, " + std::to_string(parts) + " parts");
            }
            // refused: a group past kSplitMaxGroup, more parts than the scratch holds
            EXPECT_NE(cuda::attention_split(kv, d_q, d_pos, d_seq, d_tables, max_pages, 4, 64, 2, hd, 1, part_o, part_ml,
                                            part_o, nullptr),
                      "");
            EXPECT_NE(cuda::attention_split(kv, d_q, d_pos, d_seq, d_tables, max_pages, 8, H, Hkv, hd, 64, part_o,
                                            part_ml, part_o, nullptr),
                      "");
        }
}

// W8A8 as the CPU's int8 path does it (Forward::linear_i8): activations quantized per token
// (dynamic, and static with an offset), exact int32 dots, each row's dequantization.
TEST(CudaKernels, Int8MatmulMatchesTheCpuInt8Path) {
    const int64_t rows = 37, in = 512 + 12;  // not a multiple of the warp's 128-element stride
    const auto wf = randn((size_t)(rows * in), 70, 0.05f);
    std::vector<int8_t> wq((size_t)(rows * in));
    std::vector<float> wscale((size_t)rows), zero((size_t)rows);
    std::vector<int32_t> wsum((size_t)rows, 0);
    for (int64_t r = 0; r < rows; ++r) {
        wscale[r] = ref::quantize_weight_row_i8(wf.data() + r * in, wq.data() + r * in, in);
        for (int64_t k = 0; k < in; ++k) wsum[r] += wq[r * in + k];
        zero[r] = (float)(r % 5) - 2.0f;
    }
    // 1 and 9 tokens: DP4A; 17 and 100: int8 tensor cores (matmul_i8_mma, also called directly below)
    for (int64_t n_tok : {1, 9, 17, 100}) {
        auto x = randn((size_t)(n_tok * in), 71 + (uint32_t)n_tok, 2.0f);
        x[3] = 40.0f;  // an outlier: clamped by the static range
        const float in_scale = 6.0f / 127.0f, in_offset = -3.0f;
        struct Case {
            const char* name;
            bool dynamic;
            bool zero;
        };
        for (const Case& c : {Case{"dynamic", true, false}, Case{"dynamic, zero points", true, true}, Case{"static", false, false}}) {
            std::vector<int8_t> xq((size_t)(n_tok * in));
            std::vector<float> xs((size_t)n_tok, 1.0f), want((size_t)(n_tok * rows));
            std::vector<int32_t> xsum((size_t)n_tok, 0), acc((size_t)rows), bias((size_t)rows);
            std::vector<float> deq((size_t)rows);
            for (int64_t r = 0; r < rows; ++r) {
                bias[r] = (int32_t)std::nearbyint(-in_offset * (float)wsum[r]);
                deq[r] = in_scale * wscale[r];
            }
            for (int64_t t = 0; t < n_tok; ++t) {
                int8_t* q = xq.data() + t * in;
                if (c.dynamic) xs[t] = ref::quantize_act_dynamic(x.data() + t * in, q, in);
                else ref::quantize_act_static(x.data() + t * in, q, in, in_scale, in_offset);
                for (int64_t k = 0; k < in; ++k) xsum[t] += q[k];
                ref::gemv_i8(wq.data(), (size_t)in, rows, in, q, acc.data());
                for (int64_t r = 0; r < rows; ++r) {
                    float& y = want[t * rows + r];
                    if (!c.dynamic) y = (float)((int64_t)acc[r] + bias[r]) * deq[r];
                    else if (c.zero) y = ((float)acc[r] - zero[r] * (float)xsum[t]) * xs[t] * wscale[r];
                    else y = (float)acc[r] * xs[t] * wscale[r];
                }
            }
            std::string why;
            auto gpu = cuda_test::open_gpu(why);
            if (!gpu) GTEST_SKIP() << why << " (GPU part skipped)";
            int8_t* d_xq = gpu->zeros<int8_t>(xq.size());
            float* d_xs = gpu->zeros<float>((size_t)n_tok);
            int32_t* d_sum = gpu->zeros<int32_t>((size_t)n_tok);
            ASSERT_EQ(cuda::quantize_i8(gpu->put(x), n_tok, in, c.dynamic, in_scale, in_offset, d_xq, d_xs, d_sum, nullptr), "");
            EXPECT_EQ(gpu->get(d_xq, xq.size()), xq) << c.name;
            EXPECT_EQ(gpu->get(d_sum, (size_t)n_tok), xsum) << c.name;
            if (c.dynamic) {
                EXPECT_EQ(gpu->get(d_xs, (size_t)n_tok), xs) << c.name;
            }
            cuda::I8Rows rw;
            rw.scale = gpu->put(c.dynamic ? wscale : deq);
            if (!c.dynamic) rw.bias = gpu->put(bias);
            if (c.zero) rw.zero = gpu->put(zero);
            float* y = gpu->zeros<float>(want.size());
            const int8_t* d_wq = gpu->put(wq);
            ASSERT_EQ(cuda::matmul_i8(d_wq, (size_t)in, rows, in, d_xq, d_xs, d_sum, n_tok, rw, y, nullptr), "");
            expect_close(gpu->get(y, want.size()), want, 1e-6f,
                         std::string("matmul_i8 ") + c.name + ", " + std::to_string(n_tok) + " tokens");
            // the tensor-core kernel at every size (a partial tile of rows and tokens; the inputs'
            // last 12 past the 64-byte steps)
            float* ym = gpu->zeros<float>(want.size());
            ASSERT_EQ(cuda::matmul_i8_mma(d_wq, (size_t)in, rows, in, d_xq, d_xs, d_sum, n_tok, rw, ym, nullptr), "");
            expect_close(gpu->get(ym, want.size()), want, 1e-6f,
                         std::string("matmul_i8_mma ") + c.name + ", " + std::to_string(n_tok) + " tokens");
        }
    }
}

TEST(CudaKernels, ArgmaxTakesTheLowerIndexOnTies) {
    const int64_t n_vocab = 151936, n_tok = 3;
    auto logits = randn((size_t)(n_vocab * n_tok), 60);
    logits[1 * n_vocab + 70000] = logits[1 * n_vocab + 123] = 99.0f;
    std::vector<int32_t> want;
    for (int64_t t = 0; t < n_tok; ++t)
        want.push_back((int32_t)(std::max_element(logits.begin() + t * n_vocab, logits.begin() + (t + 1) * n_vocab) -
                                 (logits.begin() + t * n_vocab)));
    EXPECT_EQ(want[1], 123);
    TANDEM_GPU_OR_SKIP(gpu);
    int32_t* ids = gpu->zeros<int32_t>(n_tok);
    ASSERT_EQ(cuda::argmax(gpu->put(logits), n_tok, n_vocab, ids, nullptr), "");
    EXPECT_EQ(gpu->get(ids, n_tok), want);
}

TEST(CudaBackend, ArenaStreamsPinnedAndUpload) {
    TANDEM_GPU_OR_SKIP(gpu);
    auto a = gpu->be->make_arena(4096);
    ASSERT_TRUE(a.ok()) << a.error().message;
    auto p1 = (*a)->alloc(100, "x");
    auto p2 = (*a)->alloc(100, "y");
    ASSERT_TRUE(p1.ok() && p2.ok());
    EXPECT_EQ((uintptr_t)*p2 % 256, 0u);
    auto big = (*a)->alloc(8192, "blk.0.attn_q.weight");
    ASSERT_FALSE(big.ok());
    EXPECT_NE(big.error().message.find("blk.0.attn_q.weight"), std::string::npos);
    auto s = gpu->be->make_stream();
    ASSERT_TRUE(s.ok()) << s.error().message;
    auto pin = gpu->be->alloc_pinned(1024);
    ASSERT_TRUE(pin.ok()) << pin.error().message;
    std::vector<uint8_t> src(1024);
    std::iota(src.begin(), src.end(), 0);
    std::copy(src.begin(), src.end(), (uint8_t*)*pin);
    auto dev = backend::upload_tensor(*gpu->be, **a, "t", *pin, 1024, s->get());
    ASSERT_TRUE(dev.ok()) << dev.error().message;
    std::vector<uint8_t> back(1024);
    ASSERT_TRUE(gpu->be->download(back.data(), *dev, 1024, s->get()).ok());
    ASSERT_TRUE((*s)->synchronize().ok());
    EXPECT_EQ(back, src);
    gpu->be->free_pinned(*pin);
}

}  // namespace
}  // namespace tandem
