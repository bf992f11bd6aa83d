// The AVX-512 packed kernels (avx512_packed_kernels.h) with AVX512-VBMI: compiled with
// -mavx512vbmi, only called after cpu_features() reports it.
#include "kernels/cpu/x86/avx512_packed_kernels.h"

#if !defined(__AVX512VBMI__)
#error "avx512_vbmi_packed.cpp must be compiled with -mavx512vbmi"
#endif

namespace tandem::cpu {

void fill_avx512_vbmi_packed(KernelTable& t) { fill_avx512_packed_kernels(t); }

}  // namespace tandem::cpu
