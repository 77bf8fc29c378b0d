// Error checks for CUDA calls: every runtime call and every launch goes through
// RLF_CUDA_CHECK, which throws rlfarm::Error naming the call, never aborts.
#pragma once

#include <cuda_runtime.h>

#include "../core/error.h"

namespace rlfarm::cuda {
// Set RLFARM_CUDA_SYNC=1 to synchronize after every launch, so that a fault
// is reported by the kernel that caused it rather than by a later call.
bool sync_after_launch();
}  // namespace rlfarm::cuda

#define RLF_CUDA_CHECK(expr)                                                                    \
  do {                                                                                          \
    const cudaError_t rlf_err_ = (expr);                                                        \
    if (rlf_err_ != cudaSuccess) {                                                              \
      ::rlfarm::fail("CUDA error: ", cudaGetErrorString(rlf_err_), " (", #expr, " at ", __FILE__, \
                     ":", __LINE__, ")");                                                       \
    }                                                                                           \
  } while (0)

// After a kernel launch: launch errors always, execution errors when asked.
#define RLF_CUDA_CHECK_LAUNCH(name)                                                             \
  do {                                                                                          \
    const cudaError_t rlf_err_ = cudaGetLastError();                                            \
    if (rlf_err_ != cudaSuccess) {                                                              \
      ::rlfarm::fail("CUDA error launching ", name, ": ", cudaGetErrorString(rlf_err_));         \
    }                                                                                           \
    if (::rlfarm::cuda::sync_after_launch()) {                                                  \
      const cudaError_t rlf_sync_ = cudaDeviceSynchronize();                                    \
      if (rlf_sync_ != cudaSuccess) {                                                           \
        ::rlfarm::fail("CUDA error in ", name, ": ", cudaGetErrorString(rlf_sync_));             \
      }                                                                                         \
    }                                                                                           \
  } while (0)
