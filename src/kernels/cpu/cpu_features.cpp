#include "kernels/cpu/cpu_features.h"

#include <thread>

#if defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace tandem::cpu {
namespace {

CpuFeatures detect() {
    CpuFeatures f;
    f.n_cores = (int)std::max(1u, std::thread::hardware_concurrency());
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (__get_cpuid(0, &a, &b, &c, &d)) f.intel = b == 0x756e6547 && d == 0x49656e69 && c == 0x6c65746e;  // "GenuineIntel"
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    const bool osxsave = c & (1u << 27);
    f.fma = c & (1u << 12);
    f.f16c = c & (1u << 29);
    unsigned long long xcr0 = 0;
    if (osxsave) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = ((unsigned long long)hi << 32) | lo;
    }
    const bool os_avx = (xcr0 & 0x6) == 0x6;              // SSE + AVX state
    const bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;  // opmask + ZMM state
    if (!os_avx) f.fma = f.f16c = false;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        f.avx2 = os_avx && (b & (1u << 5));
        if (os_avx512) {
            f.avx512f = b & (1u << 16);
            f.avx512dq = b & (1u << 17);
            f.avx512bw = b & (1u << 30);
            f.avx512vl = b & (1u << 31);
            f.avx512vnni = c & (1u << 11);
            f.avx512vbmi = c & (1u << 1);
        }
        // AMX: tile config + tile data state in XCR0; Linux hands the 8 KiB tile data state
        // out per process on request (ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA = 18)
        const bool os_amx = (xcr0 & 0x60000) == 0x60000;
        if (os_amx && (d & (1u << 24)) && (d & (1u << 25))) {
#if defined(__linux__)
            f.amx_int8 = syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18) == 0;
            f.amx_bf16 = f.amx_int8 && (d & (1u << 22));
#endif
        }
    }
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) {
        f.avxvnni = os_avx && (a & (1u << 4));
        f.avx512bf16 = os_avx512 && (a & (1u << 5));
    }
#elif defined(__aarch64__) && defined(__linux__)
    const unsigned long hw = getauxval(AT_HWCAP);
    f.neon = hw & HWCAP_ASIMD;
    f.dotprod = hw & HWCAP_ASIMDDP;
    f.fp16 = hw & HWCAP_ASIMDHP;
#endif
    return f;
}

}  // namespace

std::string CpuFeatures::describe() const {
    std::string s;
    auto add = [&](bool on, const char* name) {
        if (!on) return;
        if (!s.empty()) s += " ";
        s += name;
    };
    add(avx2, "avx2");
    add(fma, "fma");
    add(f16c, "f16c");
    add(avx512f, "avx512f");
    add(avx512bw, "avx512bw");
    add(avx512vl, "avx512vl");
    add(avx512vnni, "avx512_vnni");
    add(avx512vbmi, "avx512_vbmi");
    add(avx512bf16, "avx512_bf16");
    add(avxvnni, "avx_vnni");
    add(amx_int8, "amx_int8");
    add(amx_bf16, "amx_bf16");
    add(neon, "neon");
    add(dotprod, "dotprod");
    add(fp16, "fp16");
    return s.empty() ? "none" : s;
}

const CpuFeatures& cpu_features() {
    static const CpuFeatures f = detect();
    return f;
}

}  // namespace tandem::cpu
