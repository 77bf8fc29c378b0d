// Conversion of a tensor to another dtype on its own device. It is an op (it
// runs a CPU or CUDA kernel), so it lives above core, which only stores tensors.
#pragma once

#include "../core/tensor.h"

namespace rlfarm {

// A copy of t as `dtype` (t itself when it already has that dtype).
Tensor cast(const Tensor& t, DType dtype);

}  // namespace rlfarm
