#include "cast.h"

#include "../core/cuda_runtime.h"
#include "kernels.h"

namespace rlfarm {

Tensor cast(const Tensor& t, DType dtype) {
  check_usable(t, "cast");
  if (t.dtype == dtype) return t;
  Tensor out = empty(t.shape, dtype, t.device());
  CastArgs args{t.raw(), t.dtype, out.raw(), dtype, t.numel()};
  if (t.device().is_cpu()) {
    cpu::cast(args);
  } else {
    cuda::set_device(t.device().index);
    cuda::cast(args);
  }
  return out;
}

}  // namespace rlfarm
