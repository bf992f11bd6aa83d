// The AVX2 packed kernels (avx2_packed_kernels.h) with AVX-VNNI: compiled with -mavxvnni, only
// called after cpu_features() reports avx_vnni.
#include "kernels/cpu/x86/avx2_packed_kernels.h"

#if !defined(__AVXVNNI__)
#error "avx2_vnni_packed.cpp must be compiled with -mavxvnni"
#endif

namespace tandem::cpu {

void fill_avx2_vnni_packed(KernelTable& t) { fill_avx2_packed_kernels(t); }

}  // namespace tandem::cpu
