// What the core needs from the CUDA runtime. Implemented in native/cuda/runtime.cu
// when the CUDA backend is built, and in native/cuda/absent.cpp otherwise (where
// every call that needs a device throws a clear error).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace rlfarm::cuda {

struct DeviceInfo {
  int index;
  std::string name;
  size_t total_memory;
  int major, minor;
  int multiprocessors;
};

bool compiled();                  // was the CUDA backend built into this addon
std::string compiled_archs();     // e.g. "80;86;89;90", empty when not built
int device_count();               // 0 when there is no driver or no device
std::string unavailable_reason(); // why device_count() is 0, for error messages
DeviceInfo device_info(int index);

void* malloc(int device, size_t bytes);
void free(int device, void* ptr) noexcept;
void copy_to_device(int device, void* dst, const void* src, size_t bytes);
void copy_to_host(int device, void* dst, const void* src, size_t bytes);
void copy_device_to_device(int device, void* dst, const void* src, size_t bytes);
void memset_zero(int device, void* ptr, size_t bytes);
void synchronize(int device);
// Which GEMM runs CUDA products: "cublaslt (<library>)" or why the engine's own kernels do.
std::string gemm_backend();
// Makes `device` current for the kernels that follow on this thread.
void set_device(int device);
// A non-blocking stream of its own on `device`, for work beside the engine's
// (NCCL's collectives), polled rather than waited on so a caller can time out.
void* stream_create(int device);
void stream_destroy(int device, void* stream) noexcept;
// Whether everything queued on `stream` has finished; throws on a CUDA error.
bool stream_done(int device, void* stream);

}  // namespace rlfarm::cuda
