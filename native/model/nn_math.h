// Per-element math of the transformer, written once for the CPU engine and the
// CUDA kernels (__host__ __device__ under nvcc): the AdamW update, the RoPE
// rotation of a pair, GELU-tanh and SwiGLU with their gradients, and the
// online softmax of the fused attention kernel. The CPU
// optimizer and RoPE call these; the CPU's vector GELU/SwiGLU
// (cpu/elementwise_impl.h) use the same formulas, and test/nn-math.test.ts
// checks these scalar forms through the addon's elementMath entry.
#pragma once

#include <cmath>

#include "../core/host_device.h"

namespace rlfarm::model::math {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;

// tanh(u) = 1 - 2 / (1 + e^{2u}), as the CPU's vector form computes it; exact limits at +-inf.
RLF_HD float tanh_exp(float u) { return 1.0f - 2.0f / (1.0f + expf(u + u)); }

// GELU with the tanh approximation (Hugging Face's gelu_new, GPT-2's activation).
RLF_HD float gelu(float x) {
  const float u = kSqrt2OverPi * (x + kGeluCubic * x * x * x);
  return 0.5f * x * (1.0f + tanh_exp(u));
}

RLF_HD float gelu_grad(float x) {
  const float u = kSqrt2OverPi * (x + kGeluCubic * x * x * x);
  const float t = tanh_exp(u);
  const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x * x);
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}

RLF_HD float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// y = silu(gate) * up
RLF_HD float swiglu(float gate, float up) { return gate * sigmoid(gate) * up; }

RLF_HD void swiglu_grad(float gate, float up, float dy, float& dgate, float& dup) {
  const float s = sigmoid(gate);
  dgate = dy * up * s * (1.0f + gate * (1.0f - s));
  dup = dy * gate * s;
}

// Online softmax, the fused attention's running state: folds score s into the
// running max m and sum l of exp(score - m). Returns the factor that rescales
// what was accumulated under the old max (0 on the first score, m = -inf), and
// sets p = exp(s - m) under the new max. Scores are finite (masked keys are
// never folded).
RLF_HD float online_softmax_fold(float& m, float& l, float s, float& p) {
  const float m_new = fmaxf(m, s);
  const float alpha = expf(m - m_new);
  p = expf(s - m_new);
  l = l * alpha + p;
  m = m_new;
  return alpha;
}

// Rotates the pair (a, b) = (x[i], x[i + half]) by the angle whose cosine is c
// and whose (signed: negative for the inverse rotation) sine is sn.
RLF_HD void rope_rotate(float& a, float& b, float c, float sn) {
  const float a0 = a, b0 = b;
  a = a0 * c - b0 * sn;
  b = b0 * c + a0 * sn;
}

// The scalars of one AdamW step (torch.optim.AdamW), computed once on the host.
struct AdamWScalars {
  float b1, b2, one_minus_b1, one_minus_b2, step_size, bias2_sqrt, eps, decay;
};

inline AdamWScalars adamw_scalars(double lr, double beta1, double beta2, double eps, double weight_decay,
                                  long long step) {
  const double bias1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bias2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  return AdamWScalars{static_cast<float>(beta1),         static_cast<float>(beta2),
                      static_cast<float>(1.0 - beta1),   static_cast<float>(1.0 - beta2),
                      static_cast<float>(lr / bias1),    static_cast<float>(std::sqrt(bias2)),
                      static_cast<float>(eps),           static_cast<float>(1.0 - lr * weight_decay)};
}

// One parameter's update; keep is s.decay where weight decay applies, else 1.
RLF_HD void adamw_update(float& p, float g, float& m, float& v, float keep, const AdamWScalars& s) {
  const float mi = m * s.b1 + s.one_minus_b1 * g;
  const float vi = v * s.b2 + s.one_minus_b2 * g * g;
  m = mi;
  v = vi;
  p = p * keep - s.step_size * (mi / (sqrtf(vi) / s.bias2_sqrt + s.eps));
}

}  // namespace rlfarm::model::math
