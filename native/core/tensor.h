// Tensors of the native core: a dtype, a shape and a device over reference-counted
// storage. Tensors are always contiguous (row-major); a reshape shares storage.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "host_device.h"

namespace rlfarm {

enum class DType : uint8_t { f32, bf16, i32, u8 };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);
// Throws, naming `what`, when `name` is not one of f32, bf16, i32, u8.
DType parse_dtype(const std::string& name, const char* what);

struct Device {
  enum Kind : uint8_t { cpu, cuda } kind = cpu;
  int index = 0;  // CUDA ordinal; 0 for the CPU

  static Device host() { return Device{cpu, 0}; }
  static Device gpu(int index) { return Device{cuda, index}; }
  bool operator==(const Device& other) const { return kind == other.kind && index == other.index; }
  bool operator!=(const Device& other) const { return !(*this == other); }
  bool is_cpu() const { return kind == cpu; }
  bool is_cuda() const { return kind == cuda; }
  std::string name() const;  // "cpu" or "cuda:0"
};

// Parses "cpu", "cuda" (device 0) or "cuda:N"; throws naming `what` otherwise.
Device parse_device(const std::string& name, const char* what);

// Whoever owns memory that a Storage only borrows (the binding keeps its
// reference to a JavaScript ArrayBuffer here). Dropped with the Storage.
struct StorageOwner {
  virtual ~StorageOwner() = default;
  // Says why the memory can no longer be used (a detached ArrayBuffer), or "".
  virtual std::string invalid_reason() const { return {}; }
};

// A block of memory on one device. `release` frees memory the core allocated;
// `owner` keeps borrowed memory alive. Either runs when the last tensor or view
// referring to the storage is gone.
struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device;
  std::function<void()> release;
  std::shared_ptr<StorageOwner> owner;

  Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage();
};
using StoragePtr = std::shared_ptr<Storage>;

constexpr size_t kHostAlignment = 64;

StoragePtr allocate(Device device, size_t bytes);
// Host memory kept for reuse after tensors are freed, and giving it back.
size_t host_cache_bytes();
void empty_host_cache();
// Wraps host memory the core does not own, kept alive by `owner`.
StoragePtr wrap_host(void* data, size_t bytes, std::shared_ptr<StorageOwner> owner);

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& shape);
int64_t shape_numel(const Shape& shape);

struct Tensor {
  StoragePtr storage;
  size_t offset = 0;  // bytes into storage
  DType dtype = DType::f32;
  Shape shape;

  bool defined() const { return storage != nullptr; }
  int ndim() const { return static_cast<int>(shape.size()); }
  int64_t numel() const { return shape_numel(shape); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  Device device() const { return storage ? storage->device : Device::host(); }
  void* raw() const { return static_cast<char*>(storage->data) + offset; }
  template <typename T>
  T* data() const { return static_cast<T*>(raw()); }
  int64_t size(int dim) const { return shape[dim < 0 ? dim + ndim() : dim]; }
  // "f32 [4, 16] on cpu"
  std::string describe() const;
};

// Throws when the tensor's memory was taken away (a detached ArrayBuffer).
void check_usable(const Tensor& t, const char* what);

// A tensor over part of `base`'s storage (no copy): `offset` elements of
// base's dtype in, holding `shape`.
Tensor view(const Tensor& base, int64_t offset, const Shape& shape);
// The bytes [byte_offset, ...) of a u8 tensor seen as `dtype` elements of
// `shape`: a view when the address suits the dtype's alignment, else a copy.
Tensor view_bytes_as(const Tensor& bytes, int64_t byte_offset, DType dtype, const Shape& shape);
// The bytes of a file, mapped copy-on-write (writes never reach the file), as u8 [size].
Tensor map_file(const std::string& path);

Tensor empty(const Shape& shape, DType dtype, Device device);
Tensor zeros(const Shape& shape, DType dtype, Device device);
Tensor to_device(const Tensor& t, Device device);
// Copies src's elements into dst (same dtype and element count; either may be
// a view, on any device).
void copy_into(const Tensor& dst, const Tensor& src);
Tensor clone(const Tensor& t);
Tensor reshape(const Tensor& t, const Shape& shape);
// Rows [start, end) of t ([B, ...]) as a view of its memory (no copy).
Tensor row_view(const Tensor& t, int64_t start, int64_t end);

// A float's bits and back; the device has intrinsics for what the host does with memcpy.
RLF_HD uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t bits;
  static_assert(sizeof(bits) == sizeof(f), "float is 32 bits");
  __builtin_memcpy(&bits, &f, 4);
  return bits;
#endif
}
RLF_HD float float_from_bits(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
#endif
}

// bfloat16 <-> float32 with round-to-nearest-even; NaN stays NaN. Shared by
// both backends so a cast gives the same bits on the CPU and the GPU.
RLF_HD uint16_t float_to_bf16(float f) {
  uint32_t bits = float_bits(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}
// IEEE half -> float32 (safetensors F16 checkpoints).
inline float f16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu, bits;
  if (exponent == 0x1fu) {
    bits = sign | 0x7f800000u | (mantissa << 13);  // inf, NaN
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    exponent = 113;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --exponent;
    }
    bits = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}
RLF_HD float bf16_to_float(uint16_t h) { return float_from_bits(static_cast<uint32_t>(h) << 16); }

}  // namespace rlfarm
