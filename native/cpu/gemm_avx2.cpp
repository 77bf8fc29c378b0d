// The builtin GEMM for CPUs with AVX2 and FMA (6x16 register tile); built with -mavx2 -mfma.
#if !defined(__AVX2__) || !defined(__FMA__)
#error "gemm_avx2.cpp must be compiled with -mavx2 -mfma"
#endif
#include "gemm_impl.h"

RLFARM_DEFINE_GEMM_KERNEL
