// NEON kernels for ARMv8.2-A cores with the dot-product extension (SDOT) and FP16 (Cortex-A55/
// A76 and later, Neoverse, Apple M): compiled with -march=armv8.2-a+dotprod+fp16, only called
// after cpu_features() reports asimddp and asimdhp. The kernels are in neon_kernels.h.
#include "kernels/cpu/arm/neon_kernels.h"

#if !defined(__ARM_FEATURE_DOTPROD)
#error "neon.cpp must be compiled with the dot-product extension (-march=armv8.2-a+dotprod+fp16)"
#endif

namespace tandem::cpu {

void fill_neon(KernelTable& t) { fill_neon_kernels(t); }

}  // namespace tandem::cpu
