// CPU features relevant to the kernels, detected once (x86: cpuid + OS support of the registers;
// aarch64 Linux: the kernel's HWCAP bits).
#pragma once

#include <string>

namespace tandem::cpu {

struct CpuFeatures {
    bool avx2 = false, fma = false, f16c = false;
    bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
    bool avx512vnni = false, avx512bf16 = false, avx512vbmi = false, avxvnni = false;
    bool amx_int8 = false;  // AMX-TILE + AMX-INT8, enabled by the OS and granted to this process
    bool amx_bf16 = false;  // AMX-BF16 as well (with the same grant)
    bool neon = false, dotprod = false, fp16 = false;  // aarch64: asimd, asimddp, asimdhp
    bool intel = false;  // x86 vendor GenuineIntel
    int n_cores = 1;  // hardware threads available to this process

    bool has_avx2() const { return avx2 && fma && f16c; }
    bool has_avx512() const { return avx512f && avx512bw && avx512vl && avx512dq && avx512vnni && has_avx2(); }
    bool has_neon_dotprod() const { return neon && dotprod && fp16; }
    std::string describe() const;
};

const CpuFeatures& cpu_features();

}  // namespace tandem::cpu
