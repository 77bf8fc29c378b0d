// Element-wise kernels of the transformer engine that need exp (GELU-tanh,
// SiLU, softmax), written once over simd.h and compiled per instruction set
// like logprobs_impl.h. Each works on one contiguous range; the caller splits
// the work over threads.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "../model/nn_math.h"
#include "../ops/kernels.h"
#include "simd.h"

namespace rlfarm::cpu::RLF_ISA {

namespace ew {

using model::math::kGeluCubic;  // the constants of the scalar forms (model/nn_math.h)
using model::math::kSqrt2OverPi;

// tanh(u) = 1 - 2 / (1 + e^{2u}); exact limits at +-inf.
inline VF vtanh(VF u) { return vset(1.0f) - vset(2.0f) / (vset(1.0f) + vexp(u + u)); }
inline VF vsigmoid(VF x) { return vset(1.0f) / (vset(1.0f) + vexp(vset(0.0f) - x)); }

inline VF gelu(VF x) {
  const VF u = vset(kSqrt2OverPi) * fma(vset(kGeluCubic) * x, x * x, x);
  return vset(0.5f) * x * (vset(1.0f) + vtanh(u));
}

inline VF gelu_grad(VF x) {
  const VF x2 = x * x;
  const VF u = vset(kSqrt2OverPi) * fma(vset(kGeluCubic) * x, x2, x);
  const VF t = vtanh(u);
  const VF du = vset(kSqrt2OverPi) * fma(vset(3.0f * kGeluCubic), x2, vset(1.0f));
  // d/dx 0.5 x (1 + t) = 0.5 (1 + t) + 0.5 x (1 - t^2) du
  return vset(0.5f) * (vset(1.0f) + t + x * (vset(1.0f) - t * t) * du);
}

// Applies f to n floats from `in` to `out` (out may equal in); the lanes past
// the end of the last partial vector hold `fill`.
template <typename F>
inline void map1(const float* in, float* out, int64_t n, F f, float fill = 0.0f) {
  int64_t i = 0;
  for (; i + kWidth <= n; i += kWidth) vstore(out + i, f(vload(in + i)));
  if (i < n) {
    const int rest = static_cast<int>(n - i);
    vstore_partial(out + i, f(vload_partial(in + i, rest, fill)), rest);
  }
}

template <typename F>
inline void map2(const float* a, const float* b, float* out, int64_t n, F f) {
  int64_t i = 0;
  for (; i + kWidth <= n; i += kWidth) vstore(out + i, f(vload(a + i), vload(b + i)));
  if (i < n) {
    const int rest = static_cast<int>(n - i);
    vstore_partial(out + i, f(vload_partial(a + i, rest, 0.0f), vload_partial(b + i, rest, 0.0f)), rest);
  }
}

}  // namespace ew

inline void gelu_forward_impl(const float* x, float* y, int64_t n) { ew::map1(x, y, n, ew::gelu); }

inline void gelu_backward_impl(const float* x, const float* dy, float* dx, int64_t n) {
  ew::map2(x, dy, dx, n, [](VF xv, VF g) { return g * ew::gelu_grad(xv); });
}

// y = silu(gate) * up
inline void swiglu_forward_impl(const float* gate, const float* up, float* y, int64_t n) {
  ew::map2(gate, up, y, n, [](VF g, VF u) { return g * ew::vsigmoid(g) * u; });
}

// dgate = dy up silu'(gate), dup = dy silu(gate), silu'(g) = s (1 + g (1 - s)), s = sigmoid(g)
inline void swiglu_backward_impl(const float* gate, const float* up, const float* dy, float* dgate, float* dup,
                                 int64_t n) {
  int64_t i = 0;
  auto step = [](VF g, VF u, VF d, VF& dg, VF& du) {
    const VF s = ew::vsigmoid(g);
    du = d * g * s;
    dg = d * u * s * (vset(1.0f) + g * (vset(1.0f) - s));
  };
  for (; i + kWidth <= n; i += kWidth) {
    VF dg, du;
    step(vload(gate + i), vload(up + i), vload(dy + i), dg, du);
    vstore(dgate + i, dg);
    vstore(dup + i, du);
  }
  if (i < n) {
    const int rest = static_cast<int>(n - i);
    VF dg, du;
    step(vload_partial(gate + i, rest, 0.0f), vload_partial(up + i, rest, 0.0f), vload_partial(dy + i, rest, 0.0f), dg,
         du);
    vstore_partial(dgate + i, dg, rest);
    vstore_partial(dup + i, du, rest);
  }
}

// Softmax of one row in place (-inf entries become 0); returns the row's
// log-sum-exp, or -inf when every entry is -inf (the row is then all 0).
inline float softmax_row_impl(float* s, int64_t n) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  VF m = vset(-kInf);
  int64_t i = 0;
  for (; i + kWidth <= n; i += kWidth) m = vmax_keep_nan(m, vload(s + i));
  if (i < n) m = vmax_keep_nan(m, vload_partial(s + i, static_cast<int>(n - i), -kInf));
  const float mx = hmax(m);
  if (mx == -kInf) {
    for (int64_t j = 0; j < n; ++j) s[j] = 0.0f;
    return -kInf;
  }
  const VF vm = vset(mx);
  VF sum = vset(0.0f);
  ew::map1(
      s, s, n,
      [&](VF x) {
        const VF e = vexp(x - vm);
        sum = sum + e;
        return e;
      },
      -kInf);  // padding lanes add exp(-inf) = 0
  const float total = hsum(sum);
  const VF inv = vset(1.0f / total);
  ew::map1(s, s, n, [&](VF x) { return x * inv; });
  return mx + std::log(total);
}

// s = exp(s - shift) in place; exp(-inf) = 0.
inline void exp_shift_impl(float* s, int64_t n, float shift) {
  const VF vs = vset(shift);
  ew::map1(s, s, n, [&](VF x) { return vexp(x - vs); });
}

}  // namespace rlfarm::cpu::RLF_ISA

#define RLFARM_DEFINE_ELEMENTWISE_ENTRIES                                                                      \
  namespace rlfarm::cpu::RLF_ISA {                                                                             \
  void gelu_forward_entry(const float* x, float* y, int64_t n) { gelu_forward_impl(x, y, n); }                 \
  void gelu_backward_entry(const float* x, const float* dy, float* dx, int64_t n) {                            \
    gelu_backward_impl(x, dy, dx, n);                                                                          \
  }                                                                                                            \
  void swiglu_forward_entry(const float* g, const float* u, float* y, int64_t n) { swiglu_forward_impl(g, u, y, n); } \
  void swiglu_backward_entry(const float* g, const float* u, const float* dy, float* dg, float* du, int64_t n) { \
    swiglu_backward_impl(g, u, dy, dg, du, n);                                                                 \
  }                                                                                                            \
  float softmax_row_entry(float* s, int64_t n) { return softmax_row_impl(s, n); }                              \
  void exp_shift_entry(float* s, int64_t n, float shift) { exp_shift_impl(s, n, shift); }                      \
  }
