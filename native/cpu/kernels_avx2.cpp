// Log-prob kernels for CPUs with AVX2 and FMA; built with -mavx2 -mfma.
#if !defined(__AVX2__) || !defined(__FMA__)
#error "kernels_avx2.cpp must be compiled with -mavx2 -mfma"
#endif
#include "logprobs_impl.h"

RLFARM_DEFINE_LOGPROBS_ENTRIES
