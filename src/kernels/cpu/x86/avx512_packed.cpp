// The AVX-512 packed kernels (avx512_packed_kernels.h), compiled with the avx512.cpp flags: for
// the AVX-512 CPUs without VBMI (Skylake-SP, Cascade Lake).
#include "kernels/cpu/x86/avx512_packed_kernels.h"

#if defined(__AVX512VBMI__)
#error "avx512_packed.cpp is for the CPUs without AVX512-VBMI: compiled without -mavx512vbmi"
#endif

namespace tandem::cpu {

void fill_avx512_packed(KernelTable& t) { fill_avx512_packed_kernels(t); }

}  // namespace tandem::cpu
