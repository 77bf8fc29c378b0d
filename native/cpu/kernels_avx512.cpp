// Vector kernels (log-probs, element-wise) for CPUs with AVX-512 F/BW/VL/DQ; built with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma.
#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || !defined(__AVX512DQ__)
#error "kernels_avx512.cpp must be compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma"
#endif
#include "elementwise_impl.h"
#include "logprobs_impl.h"

RLFARM_DEFINE_LOGPROBS_ENTRIES
RLFARM_DEFINE_ELEMENTWISE_ENTRIES
