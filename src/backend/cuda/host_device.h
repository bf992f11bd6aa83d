// Functions compiled both by nvcc for the device and by the host compiler (so that host tests
// check the same code the kernels run): TANDEM_HD marks them, TANDEM_UNROLL asks for full unrolling.
#pragma once
#if defined(__CUDACC__)
#define TANDEM_HD __host__ __device__ __forceinline__
#define TANDEM_UNROLL _Pragma("unroll")  // (chunks stay in registers only when fully unrolled)
#else
#define TANDEM_HD inline
#define TANDEM_UNROLL
#endif
