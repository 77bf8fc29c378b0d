// The kernels behind ops.*: one argument struct per op, implemented once for the
// CPU (native/cpu) and once for CUDA (native/cuda) with the same signature.
// Arguments are already validated by native/ops/ops.cpp; pointers live on the
// backend's device. Scalar results go to `stats`, a few floats on that device.
#pragma once

#include <cstdint>

#include "../core/tensor.h"

namespace rlfarm {

// A mask over tokens: f32, i32 or u8; nonzero means the token counts.
struct MaskRef {
  const void* data = nullptr;
  DType dtype = DType::f32;
};

struct LogprobsArgs {
  const void* logits;  // [rows, vocab], f32 or bf16
  DType logits_dtype;
  const int32_t* targets;  // [rows], each in [0, vocab)
  int64_t rows, vocab;
  float inv_temperature;
  float* logp;          // [rows]
  float* entropy;       // [rows] or null
  int32_t* bad_target;  // CUDA only: set to the first row whose target is out of range
};

struct LogprobsBackwardArgs {
  const void* logits;  // [rows, vocab], f32 or bf16
  DType logits_dtype;
  const int32_t* targets;
  int64_t rows, vocab;
  float inv_temperature;
  const float* grad_logp;     // [rows] or null
  const float* grad_entropy;  // [rows] or null
  void* dlogits;              // [rows, vocab], dtype of logits; may be the logits buffer (in place)
  int32_t* bad_target;
};

struct GaeArgs {
  const float* rewards;  // [rows, steps]
  const float* values;   // [rows, steps]
  MaskRef mask;          // [rows, steps]
  int64_t rows, steps;
  float gamma, lambda;
  float* advantages;  // [rows, steps]
  float* returns;     // [rows, steps]
};

struct WhitenArgs {
  const float* x;
  MaskRef mask;
  int64_t n;
  bool shift_mean;
  float* out;
};

enum class KlEstimator : int { k1 = 1, k2 = 2, k3 = 3 };

struct KlPenaltyArgs {
  const float* logp;
  const float* ref_logp;
  MaskRef mask;
  int64_t n;
  KlEstimator estimator;
  float clamp;  // bound on |kl|; 0 = none
  float* kl;    // or null
  float* grad;  // d kl / d logp, or null
};

// PPO's per-token rewards in one pass: kl = the KL estimate (0 off the mask),
// rewards = -kl_coef * kl, plus the row's score where last_mask is nonzero.
struct ShapeRewardsArgs {
  const float* logp;      // [rows, steps]
  const float* ref_logp;  // [rows, steps]
  MaskRef mask;           // [rows, steps]
  MaskRef last_mask;      // [rows, steps], the dtype of mask
  const float* scores;    // [rows]
  int64_t rows, steps;
  KlEstimator estimator;
  float clamp;        // as KlPenaltyArgs
  float neg_kl_coef;  // -kl_coef
  float* kl;          // [rows, steps]
  float* rewards;     // [rows, steps]
};

enum class Aggregate : int { token_mean = 0, seq_mean = 1 };

struct PpoPolicyLossArgs {
  const float* logp;        // [rows, steps]
  const float* old_logp;    // [rows, steps]
  const float* advantages;  // [rows, steps]
  MaskRef mask;
  int64_t rows, steps;
  float clip_low, clip_high;
  float dual_clip;  // c > 1, or 0 for none
  Aggregate aggregate;
  float* grad;   // [rows, steps]: d loss / d logp
  float* stats;  // [loss, clipFraction, approxKl, dualClipFraction, clipLowFraction, clipHighFraction]
};
constexpr int kPpoStats = 6;

struct ValueLossArgs {
  const float* values;
  const float* old_values;
  const float* returns;
  MaskRef mask;
  int64_t n;
  float clip;    // epsilon of the value clip; < 0 for none
  float* grad;   // d loss / d values
  float* stats;  // [loss, clipFraction]
};
constexpr int kValueStats = 2;

enum class DpoVariant : int {
  sigmoid = 0,
  robust,
  hinge,
  ipo,
  bco_pair,
  sppo_hard,
  nca_pair,
  apo_zero,
  simpo,
};
const char* dpo_variant_name(DpoVariant variant);

struct DpoLossArgs {
  const float* policy_chosen;    // [batch] sequence log-probs
  const float* policy_rejected;  // [batch]
  const float* ref_chosen;       // [batch] or null (reference-free, simpo)
  const float* ref_rejected;     // [batch] or null
  const float* chosen_length;    // [batch] or null; needed by ipo and simpo
  const float* rejected_length;  // [batch] or null
  int64_t batch;
  DpoVariant variant;
  float beta, label_smoothing, gamma;
  double grad_scale;       // multiplies the gradients after their rounding to f32
  float* grad_chosen;      // grad_scale * d mean-loss / d policy_chosen
  float* grad_rejected;    // grad_scale * d mean-loss / d policy_rejected
  float* chosen_reward;    // implicit reward of chosen
  float* rejected_reward;  // implicit reward of rejected
  float* stats;            // [loss, accuracy, lengths that are not positive and finite]
  static constexpr int kStats = 3;
};

struct RewardLossArgs {
  const float* chosen;    // [batch]
  const float* rejected;  // [batch]
  const float* margin;    // [batch] or null
  float margin_scalar;    // used when margin is null
  int64_t batch;
  float center_coef;
  double grad_scale;  // as DpoLossArgs's
  float* grad_chosen;
  float* grad_rejected;
  float* stats;  // [loss, accuracy]
  static constexpr int kStats = 2;
};

// out = alpha * a + beta * b (b may be null: out = alpha * a), or a * b.
enum class ElementwiseOp : int { axpby = 0, mul = 1 };
struct ElementwiseArgs {
  const float* a;
  const float* b;
  float* out;
  int64_t n;
  ElementwiseOp op;
  float alpha, beta;
};

// out[r] = sum over c of x[r, c] where mask[r, c] is nonzero (every c without a mask).
struct RowSumArgs {
  const float* x;
  MaskRef mask;  // data null: no mask
  int64_t rows, cols;
  float* out;
};

// *out = the sum of x[0..n) in double, in index order: an op's statistic,
// reduced where the values are so that one double comes back to the host.
struct OrderedSumArgs {
  const float* x;
  int64_t n;
  double* out;  // one double on the backend's device
};

// out[r, c] = values[r] where mask[r, c] is nonzero, else 0.
struct RowBroadcastArgs {
  const float* values;
  MaskRef mask;
  int64_t rows, cols;
  float* out;
};

struct CastArgs {
  const void* src;
  DType src_dtype;
  void* dst;
  DType dst_dtype;
  int64_t n;
};

// One operand of a GEMM: a row-major matrix with row stride ld, f32 or bf16
// (bf16 on CUDA only). Matrix z of a batch starts at
//   (z / batch_inner) * outer + ((z % batch_inner) / group) * inner
// elements in, so a batch over (row b, head h) can read a grouped kv head
// (group = heads per kv head) without copies; outer = inner = 0 shares one matrix.
struct GemmOperand {
  const void* data;
  DType dtype = DType::f32;
  int64_t ld;
  int64_t outer = 0, inner = 0, group = 1;
};

// C = alpha * op(A) op(B) + beta * C (+ bias[n] on every row), C [m, n] f32,
// for each of the batch's matrices (C's offsets as an operand's, group 1).
// bf16_compute (CUDA only): operands rounded to bf16 and multiplied on tensor
// cores with fp32 accumulation; else fp32 (both operands f32).
struct GemmArgs {
  bool trans_a = false, trans_b = false;
  int64_t m, n, k;
  int64_t batch = 1, batch_inner = 1;
  float alpha = 1, beta = 0;
  GemmOperand a, b;
  float* c;
  int64_t ldc, c_outer = 0, c_inner = 0;
  const float* bias = nullptr;  // [n], batch 1 only
  bool bf16_compute = false;
};

#define RLFARM_KERNEL_DECLS                                  \
  void logprobs(const LogprobsArgs& a);                      \
  void logprobs_backward(const LogprobsBackwardArgs& a);     \
  void gae(const GaeArgs& a);                                \
  void whiten(const WhitenArgs& a);                          \
  void kl_penalty(const KlPenaltyArgs& a);                   \
  void shape_rewards(const ShapeRewardsArgs& a);             \
  void ppo_policy_loss(const PpoPolicyLossArgs& a);          \
  void value_loss(const ValueLossArgs& a);                   \
  void dpo_loss(const DpoLossArgs& a);                       \
  void reward_loss(const RewardLossArgs& a);                 \
  void elementwise(const ElementwiseArgs& a);                \
  void row_sum(const RowSumArgs& a);                         \
  void ordered_sum(const OrderedSumArgs& a);                 \
  void row_broadcast(const RowBroadcastArgs& a);             \
  void cast(const CastArgs& a);                              \
  void gemm(const GemmArgs& a);

namespace cpu {
RLFARM_KERNEL_DECLS
}
namespace cuda {
RLFARM_KERNEL_DECLS
}

}  // namespace rlfarm
