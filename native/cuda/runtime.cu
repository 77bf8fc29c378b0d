// Devices, memory and copies on CUDA. The runtime is linked statically, so the
// addon loads on machines with no driver; there, device_count() is 0 and
// unavailable_reason() says why.
#include <cstdlib>
#include <mutex>
#include <string>

#include "../core/cuda_runtime.h"
#include "check.h"
#include "cublaslt.h"

#ifndef RLFARM_CUDA_ARCHS
#define RLFARM_CUDA_ARCHS ""
#endif

namespace rlfarm::cuda {
namespace {

struct Probe {
  int count = 0;
  std::string reason;
};

const Probe& probe() {
  static Probe result;
  static std::once_flag once;
  std::call_once(once, [] {
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
      result.count = 0;
      result.reason = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(err);
      cudaGetLastError();  // clear the sticky-free error so later calls start clean
    } else {
      result.count = n;
      if (n == 0) result.reason = "the CUDA driver reports no devices";
    }
  });
  return result;
}

}  // namespace

bool sync_after_launch() {
  static const bool enabled = [] {
    const char* env = std::getenv("RLFARM_CUDA_SYNC");
    return env != nullptr && env[0] == '1';
  }();
  return enabled;
}

bool compiled() { return true; }
std::string compiled_archs() { return RLFARM_CUDA_ARCHS; }
int device_count() { return probe().count; }
std::string unavailable_reason() { return probe().reason; }

DeviceInfo device_info(int index) {
  RLF_CHECK(index >= 0 && index < device_count(), "cuda:", index, " does not exist (", device_count(),
            " CUDA device(s))");
  cudaDeviceProp prop;
  RLF_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  return DeviceInfo{index, prop.name, prop.totalGlobalMem, prop.major, prop.minor, prop.multiProcessorCount};
}

std::string gemm_backend() { return cublaslt_status(); }

void set_device(int device) { RLF_CUDA_CHECK(cudaSetDevice(device)); }

void* malloc(int device, size_t bytes) {
  set_device(device);
  void* ptr = nullptr;
  const cudaError_t err = cudaMalloc(&ptr, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();
    size_t free_bytes = 0, total = 0;
    cudaMemGetInfo(&free_bytes, &total);
    fail("cuda:", device, ": cannot allocate ", bytes, " bytes (", cudaGetErrorString(err), "; ", free_bytes,
         " of ", total, " bytes free)");
  }
  return ptr;
}

void free(int device, void* ptr) noexcept {
  if (ptr == nullptr) return;
  if (cudaSetDevice(device) == cudaSuccess) cudaFree(ptr);
  cudaGetLastError();
}

void copy_to_device(int device, void* dst, const void* src, size_t bytes) {
  set_device(device);
  RLF_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

void copy_to_host(int device, void* dst, const void* src, size_t bytes) {
  set_device(device);
  RLF_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

void copy_device_to_device(int device, void* dst, const void* src, size_t bytes) {
  set_device(device);
  RLF_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
}

void memset_zero(int device, void* ptr, size_t bytes) {
  set_device(device);
  RLF_CUDA_CHECK(cudaMemset(ptr, 0, bytes));
}

void synchronize(int device) {
  set_device(device);
  RLF_CUDA_CHECK(cudaDeviceSynchronize());
}

void* stream_create(int device) {
  set_device(device);
  cudaStream_t stream = nullptr;
  RLF_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  return stream;
}

void stream_destroy(int device, void* stream) noexcept {
  if (stream == nullptr) return;
  if (cudaSetDevice(device) == cudaSuccess) cudaStreamDestroy(static_cast<cudaStream_t>(stream));
  cudaGetLastError();
}

bool stream_done(int device, void* stream) {
  set_device(device);
  const cudaError_t err = cudaStreamQuery(static_cast<cudaStream_t>(stream));
  if (err == cudaErrorNotReady) {
    cudaGetLastError();  // not an error: clear it so the next check does not see it
    return false;
  }
  RLF_CUDA_CHECK(err);
  return true;
}

}  // namespace rlfarm::cuda
