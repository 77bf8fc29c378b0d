#include "weights.h"

#include <algorithm>
#include <cstring>

#include "../core/error.h"

namespace rlfarm::model {

void load_parameter(Transformer& model, const std::string& name, const Tensor& bytes, const std::string& dtype,
                    const Shape& shape, bool transpose) {
  const ParamInfo* p = model.layout().find(name);
  RLF_CHECK(p != nullptr, "tensor ", name, ": the model has no such parameter");
  Shape expected = p->shape;
  if (transpose) std::reverse(expected.begin(), expected.end());
  RLF_CHECK(shape == expected, "tensor ", name, ": shape ", shape_str(shape), " does not match the config's ",
            shape_str(expected));
  size_t width;
  if (dtype == "F32") width = 4;
  else if (dtype == "BF16" || dtype == "F16") width = 2;
  else fail("tensor ", name, ": dtype ", dtype, " is not supported (F32, BF16 and F16 are)");
  check_usable(bytes, "loadParameter");
  RLF_CHECK(bytes.dtype == DType::u8 && bytes.device().is_cpu() && static_cast<size_t>(bytes.numel()) == p->numel * width,
            "tensor ", name, ": expected ", p->numel * width, " bytes of ", dtype, "; got ", bytes.numel());
  const uint8_t* src = bytes.data<uint8_t>();
  float* dst = const_cast<float*>(model.params().data<float>()) + p->offset;
  const bool bf16 = dtype == "BF16";
  const auto read = [&](size_t i) -> float {
    if (width == 4) {
      float f;
      std::memcpy(&f, src + 4 * i, 4);
      return f;
    }
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    return bf16 ? bf16_to_float(h) : f16_to_float(h);
  };
  if (!transpose) {
    for (size_t i = 0; i < p->numel; ++i) dst[i] = read(i);
  } else {  // stored [in, out] -> kept [out, in]
    const int64_t rows = p->shape[0], cols = p->shape[1];
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) dst[r * cols + c] = read(static_cast<size_t>(c * rows + r));
    }
  }
}

Tensor read_parameter(Transformer& model, const std::string& name, bool transpose, bool from_grads) {
  const ParamInfo* p = model.layout().find(name);
  RLF_CHECK(p != nullptr, "parameter ", name, ": the model has no such parameter");
  const Tensor& buffer = from_grads ? model.grads() : model.params();
  Tensor slice = view(buffer, static_cast<int64_t>(p->offset), p->shape);
  if (!transpose) return slice;
  const int64_t rows = p->shape[0], cols = p->shape[1];
  Tensor out = empty({cols, rows}, DType::f32, Device::host());
  const float* s = slice.data<float>();
  float* d = out.data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) d[c * rows + r] = s[r * cols + c];
  }
  return out;
}

}  // namespace rlfarm::model
