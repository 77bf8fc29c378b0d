// Vector kernels (log-probs, element-wise) for CPUs with AVX2 and FMA; built with -mavx2 -mfma.
#if !defined(__AVX2__) || !defined(__FMA__)
#error "kernels_avx2.cpp must be compiled with -mavx2 -mfma"
#endif
#include "elementwise_impl.h"
#include "logprobs_impl.h"

RLFARM_DEFINE_LOGPROBS_ENTRIES
RLFARM_DEFINE_ELEMENTWISE_ENTRIES
