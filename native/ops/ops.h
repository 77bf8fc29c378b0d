// The RLHF ops as the rest of rlfarm calls them: inputs are checked (every
// failure names the op, the argument, what was expected and what came), outputs
// are allocated on the inputs' device, and the CPU or CUDA kernel runs.
// Optional tensors are passed as undefined Tensors.
#pragma once

#include <vector>

#include "kernels.h"
#include "../core/tensor.h"

namespace rlfarm::ops {

struct LogprobsResult {
  Tensor logp, entropy;  // entropy undefined unless asked for
};
// logits [..., V] (f32 or bf16), targets [...] i32 -> logp [...] f32.
LogprobsResult logprobs(const Tensor& logits, const Tensor& targets, double temperature, bool entropy);
// -> dlogits, shaped and typed as logits.
Tensor logprobs_backward(const Tensor& logits, const Tensor& targets, const Tensor& grad_logp,
                         const Tensor& grad_entropy, double temperature);

struct GaeResult {
  Tensor advantages, returns;
};
GaeResult gae(const Tensor& rewards, const Tensor& values, const Tensor& mask, double gamma, double lambda);

Tensor whiten(const Tensor& x, const Tensor& mask, bool shift_mean);

Tensor kl_penalty(const Tensor& logp, const Tensor& ref_logp, const Tensor& mask, KlEstimator estimator,
                  double clamp);
// d kl_penalty / d logp (0 for masked tokens and where a clamp holds).
Tensor kl_penalty_grad(const Tensor& logp, const Tensor& ref_logp, const Tensor& mask, KlEstimator estimator,
                       double clamp);

struct ShapeRewardsResult {
  Tensor kl, rewards;
};
// PPO's per-token rewards in one call: logp, ref_logp, mask, last_mask [B, T]
// (last_mask of mask's dtype), scores [B] -> kl (the KL estimate, 0 off the
// mask) and rewards = -kl_coef * kl, plus each row's score where last_mask is set.
ShapeRewardsResult shape_rewards(const Tensor& logp, const Tensor& ref_logp, const Tensor& mask, const Tensor& scores,
                                 const Tensor& last_mask, double kl_coef, KlEstimator estimator, double clamp);

// alpha * a + beta * b (b undefined: alpha * a), element-wise, f32 of one shape.
Tensor add(const Tensor& a, const Tensor& b, double alpha, double beta);
Tensor mul(const Tensor& a, const Tensor& b);
// x [..., T] -> [...]: sums over the last dimension where mask (shaped like x) is nonzero.
Tensor row_sum(const Tensor& x, const Tensor& mask);
// values [...] and mask [..., T] -> [..., T]: values broadcast along the last dimension where mask is nonzero.
Tensor broadcast_rows(const Tensor& values, const Tensor& mask);

// x [B, ...] -> [rows.size(), ...]: the rows `rows` of each tensor, copied
// (a minibatch of a rollout's tensors in one call).
std::vector<Tensor> select_rows(const std::vector<Tensor>& xs, const std::vector<int64_t>& rows);

// Per row of the f32 tensors xs (each [B, T], shaped like mask): the masked
// token count, then for each x its masked sum and sum of squares: [B, 1 + 2k].
Tensor row_moments(const std::vector<Tensor>& xs, const Tensor& mask);

struct PpoPolicyLossResult {
  double loss;
  Tensor grad;
  double clip_fraction, approx_kl, dual_clip_fraction, clip_low_fraction, clip_high_fraction;
  double tokens;        // the mask's sum
  double entropy_mean;  // the masked mean of `entropy`, when given (else 0)
};
// grad_scale multiplies the gradient (a data-parallel rank's share of the
// minibatch); `entropy` (shaped like logp, may be undefined) is only measured.
PpoPolicyLossResult ppo_policy_loss(const Tensor& logp, const Tensor& old_logp, const Tensor& advantages,
                                    const Tensor& mask, double clip_low, double clip_high, double dual_clip,
                                    Aggregate aggregate, double grad_scale = 1, const Tensor& entropy = Tensor{});

struct ValueLossResult {
  double loss;
  Tensor grad;
  double clip_fraction;
};
// clip < 0: no value clipping. grad_scale multiplies the gradient (the value coefficient).
ValueLossResult value_loss(const Tensor& values, const Tensor& old_values, const Tensor& returns,
                           const Tensor& mask, double clip, double grad_scale = 1);

struct DpoInputs {
  Tensor policy_chosen, policy_rejected, ref_chosen, ref_rejected, chosen_length, rejected_length;
};
struct DpoOptions {
  DpoVariant variant = DpoVariant::sigmoid;
  double beta = 0.1, label_smoothing = 0.0, gamma = 0.0;
  bool reference_free = false;
  double grad_scale = 1.0;  // multiplies the gradients (e.g. 1 / gradient-accumulation steps)
};
struct DpoLossResult {
  double loss;
  Tensor grad_chosen, grad_rejected, chosen_reward, rejected_reward;
  double accuracy;
};
DpoLossResult dpo_loss(const DpoInputs& in, const DpoOptions& options);
DpoVariant parse_dpo_variant(const std::string& name);

struct RewardLossResult {
  double loss;
  Tensor grad_chosen, grad_rejected;
  double accuracy;
};
// margin: a [B] tensor, or undefined to use margin_scalar for every pair.
RewardLossResult reward_loss(const Tensor& chosen, const Tensor& rejected, const Tensor& margin,
                             double margin_scalar, double center_coef, double grad_scale = 1.0);

// xs [B_i, ...] (one dtype, device and row shape) -> [sum of B_i, ...]: the rows of each in turn, copied.
Tensor concat(const std::vector<Tensor>& xs);
// The sum of an f32 tensor's values, added in order in double on its device
// (as JavaScript adds an array's values): one double comes back to the host.
double total(const Tensor& x);

struct MatmulOptions {
  bool trans_a = false, trans_b = false;
  double alpha = 1.0, beta = 0.0;
  // The product's sizes; -1 takes them from the shapes of op(a) and op(b).
  // Given, they select the top-left blocks of the tensors, whose row lengths
  // then act as leading dimensions (how submatrices are multiplied).
  int64_t m = -1, n = -1, k = -1;
};
// c = alpha * op(a) * op(b) + beta * c through the gemm kernel of the
// tensors' device (kernels.h): on the cpu f32 tensors through cpu::sgemm; on
// CUDA a and b may also be bf16 (tensor cores, fp32 accumulation), c is f32.
// For tests and benchmarks of the GEMMs. 2-D tensors are one
// product; 3-D ones [batch, rows, cols] a batch through cpu::sgemm_batched,
// where a 2-D a or b is shared by every product. With c undefined the result
// is a new tensor (beta must then be 0); otherwise it is written into c
// (beta == 0: c is not read), which is returned.
// A defined bias (f32 [N], 2-D products only) is added to every row after the
// product, through cpu::sgemm_bias.
Tensor matmul(const Tensor& a, const Tensor& b, const Tensor& c, const MatmulOptions& options,
              const Tensor& bias = Tensor());

}  // namespace rlfarm::ops
