// NEON kernels for ARMv8.0-A cores without SDOT (Cortex-A53/A72, ...): the kernels of
// neon_kernels.h compiled with -march=armv8-a, the dot products done by widening multiplies.
#include "kernels/cpu/arm/neon_kernels.h"

#if defined(__ARM_FEATURE_DOTPROD)
#error "neon_v8.cpp must be compiled for plain ARMv8-A (-march=armv8-a)"
#endif

namespace tandem::cpu {

void fill_neon_v8(KernelTable& t) { fill_neon_kernels(t); }

}  // namespace tandem::cpu
