// The builtin GEMM for CPUs with AVX-512 F/BW/VL/DQ (8x48 register tile);
// built with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma.
#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || !defined(__AVX512DQ__)
#error "gemm_avx512.cpp must be compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma"
#endif
#include "gemm_impl.h"

RLFARM_DEFINE_GEMM_KERNEL
