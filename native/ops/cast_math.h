// One element of ops.cast, written once for both backends (__host__ __device__
// under nvcc): the CPU and CUDA kernels differ only in how they loop, so a cast
// gives the same bits on either device.
#pragma once

#include <cstdint>

#include "kernels.h"

#include "../core/host_device.h"

namespace rlfarm::math {

RLF_HD float load_as_float(const void* p, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::f32: return static_cast<const float*>(p)[i];
    case DType::bf16: return bf16_to_float(static_cast<const uint16_t*>(p)[i]);
    case DType::i32: return static_cast<float>(static_cast<const int32_t*>(p)[i]);
    case DType::u8: return static_cast<float>(static_cast<const uint8_t*>(p)[i]);
  }
  return 0.0f;
}

RLF_HD void cast_element(const CastArgs& a, int64_t i) {
  // Integer to integer stays exact rather than passing through float.
  if (a.src_dtype == DType::i32 && a.dst_dtype == DType::u8) {
    const int32_t v = static_cast<const int32_t*>(a.src)[i];
    static_cast<uint8_t*>(a.dst)[i] = static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
    return;
  }
  if (a.src_dtype == DType::u8 && a.dst_dtype == DType::i32) {
    static_cast<int32_t*>(a.dst)[i] = static_cast<const uint8_t*>(a.src)[i];
    return;
  }
  const float v = load_as_float(a.src, a.src_dtype, i);
  switch (a.dst_dtype) {
    case DType::f32: static_cast<float*>(a.dst)[i] = v; break;
    case DType::bf16: static_cast<uint16_t*>(a.dst)[i] = float_to_bf16(v); break;
    case DType::i32: {
      // Truncation toward zero, saturated; NaN becomes 0.
      const float c = v != v ? 0.0f : (v < -2147483648.0f ? -2147483648.0f : (v > 2147483520.0f ? 2147483520.0f : v));
      static_cast<int32_t*>(a.dst)[i] = static_cast<int32_t>(c);
      break;
    }
    case DType::u8: {
      const float c = v != v ? 0.0f : (v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v));
      static_cast<uint8_t*>(a.dst)[i] = static_cast<uint8_t>(c);
      break;
    }
  }
}

}  // namespace rlfarm::math
