// The AVX2 packed kernels (avx2_packed_kernels.h), compiled with the avx2.cpp flags.
#include "kernels/cpu/x86/avx2_packed_kernels.h"

#if defined(__AVXVNNI__)
#error "avx2_packed.cpp is the AVX2 table's: compiled without AVX-VNNI"
#endif

namespace tandem::cpu {

void fill_avx2_packed(KernelTable& t) { fill_avx2_packed_kernels(t); }

}  // namespace tandem::cpu
