// RLF_HD marks a function written once for the host and the device: under
// nvcc __host__ __device__ (and inlined), elsewhere a plain inline function.
#pragma once

#if defined(__CUDACC__)
#define RLF_HD __host__ __device__ __forceinline__
#else
#define RLF_HD inline
#endif
