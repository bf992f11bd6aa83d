// Model::pack_for_cpu: the load-time repacking of the CPU-resident matrices into the packed
// layouts of kernels/reference/packed.h.
#include <atomic>
#include <chrono>
#include <memory>

#include "core/log.h"
#include "core/thread_pool.h"
#include "kernels/cpu/kernels.h"
#include "kernels/reference/packed.h"
#include "model/model.h"

namespace tandem {

Status Model::pack_for_cpu(ThreadPool& pool, bool experts_only) {
    if (packed_.data()) return {};  // done already
    const cpu::KernelTable& k = cpu::kernels();
    const cpu::KernelTable& generic = cpu::kernels_for(cpu::Isa::generic);
    std::vector<Tensor*> todo;
    auto consider = [&](Tensor& t) {
        const int ti = (int)t.type;
        if (!t.data || !ref::has_packed_layout(t.type) || !k.packed_gemm[ti]) return;
        if (k.isa != cpu::Isa::generic && k.packed_gemm[ti] == generic.packed_gemm[ti]) return;  // reference only
        if (t.ne[1] % ref::kPackRows != 0) return;  // groups must not straddle two experts
        todo.push_back(&t);
    };
    for (LayerWeights& l : layers_) {
        for (Tensor* t : {&l.ffn_gate_exps, &l.ffn_up_exps, &l.ffn_down_exps}) consider(*t);
        if (!experts_only)
            for (Tensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_gate, &l.ffn_up, &l.ffn_down}) consider(*t);
    }
    if (!experts_only) consider(output_);  // when tied, token_embd_ keeps its GGUF blocks for the lookups
    if (todo.empty()) return {};

    // one buffer: tensor i at offsets[i]; groups numbered across tensors for one parallel pass
    std::vector<size_t> offsets;
    std::vector<int64_t> first_group{0};
    size_t total = 0;
    for (Tensor* t : todo) {
        t->packed_group_bytes = ref::packed_group_bytes(t->type, t->ne[0]);
        offsets.push_back(total);
        total += (size_t)(t->n_rows() / ref::kPackRows) * t->packed_group_bytes;
        total = (total + 63) & ~(size_t)63;
        first_group.push_back(first_group.back() + t->n_rows() / ref::kPackRows);
    }
    const bool loud = total >= (1ull << 30);  // seconds of work: say so
    if (loud)
        log::info("repacking {} matrices ({:.2f} GiB) for the {} kernels...", todo.size(), (double)total / (1ull << 30),
                  cpu::isa_name(k.isa));
    const auto t0 = std::chrono::steady_clock::now();
    TANDEM_ASSIGN(packed_, AnonBuffer::allocate(total));
    uint8_t* base = packed_.data();
    // The kernels read the packed copies from now on: the GGUF blocks they came from leave this
    // process's resident set as soon as their last group is packed (without this the model counts
    // twice: 6.5 GB for the 3.4 GB bench model; and both copies at once while packing). They stay
    // mapped: whatever still reads them (the embedding lookups of a tied output, uploads, tools)
    // faults them back in from the file.
    std::unique_ptr<std::atomic<int64_t>[]> left(new std::atomic<int64_t>[todo.size()]);
    for (size_t i = 0; i < todo.size(); ++i) left[i] = first_group[i + 1] - first_group[i];
    std::atomic<size_t> released{0};
    pool.parallel_for(first_group.back(), 64, [&](int64_t b, int64_t e) {
        size_t i = 0;
        for (int64_t g = b; g < e; ++g) {
            while (g >= first_group[i + 1]) ++i;
            const Tensor& t = *todo[i];
            const int64_t gl = g - first_group[i];
            ref::pack_group(t.type, t.row(gl * ref::kPackRows), t.row_bytes, t.ne[0],
                            base + offsets[i] + (size_t)gl * t.packed_group_bytes);
            if (left[i].fetch_sub(1) == 1) released += file_.release_pages(t.data, t.n_bytes());
        }
    });
    for (size_t i = 0; i < todo.size(); ++i) todo[i]->packed = base + offsets[i];
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (loud) log::info("repacked in {:.1f} s ({:.2f} GiB of GGUF pages released)", s, (double)released.load() / (1ull << 30));
    else log::debug("repacked {} matrices ({} MiB) in {:.2f} s, {} MiB of GGUF pages released", todo.size(), total >> 20, s,
                    released.load() >> 20);
    return {};
}

}  // namespace tandem
