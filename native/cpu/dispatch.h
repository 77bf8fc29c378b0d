// Which vector instruction set the CPU log-prob kernels use. Chosen at load
// time from what the processor supports; RLFARM_SIMD=generic|avx2|avx512 or
// set_simd_level() forces one (to compare them, or to rule one out).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rlfarm::cpu {

std::string simd_level();
std::vector<std::string> simd_levels_supported();
// Throws when `level` is unknown or this CPU (or build) does not support it.
void set_simd_level(const std::string& level);

// Element-wise kernels of the transformer engine, at the active level. Each
// covers one contiguous range; callers split work over threads.
void gelu_forward(const float* x, float* y, int64_t n);
void gelu_backward(const float* x, const float* dy, float* dx, int64_t n);  // dx = dy gelu'(x)
void swiglu_forward(const float* gate, const float* up, float* y, int64_t n);
void swiglu_backward(const float* gate, const float* up, const float* dy, float* dgate, float* dup, int64_t n);
// Softmax of a row in place (-inf -> 0); returns its log-sum-exp (-inf for an all -inf row, left all 0).
float softmax_row(float* s, int64_t n);
// s = exp(s - shift) in place.
void exp_shift(float* s, int64_t n, float shift);

}  // namespace rlfarm::cpu
