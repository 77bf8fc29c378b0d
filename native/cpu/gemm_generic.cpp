// The builtin GEMM for any CPU: plain C++ over the scalar vector layer, the
// fallback the vector versions are tested against.
#include "gemm_impl.h"

RLFARM_DEFINE_GEMM_KERNEL
