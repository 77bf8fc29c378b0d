// The per-token and per-pair formulas of the RLHF losses, written once and
// compiled into both backends (__host__ __device__ under nvcc), so the CPU and
// CUDA kernels differ only in how they loop and reduce. The formulas and their
// sources are in docs/math.md; each returns its gradient as well.
//
// NaN rule: a NaN input gives a NaN loss and gradient for that token or pair
// (clamps are written so NaN passes through); masked tokens are skipped by the
// callers with a select, never multiplied by 0.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels.h"

#include "../core/host_device.h"

namespace rlfarm::math {

// Clamp to [lo, hi]; NaN stays NaN (both comparisons are false).
RLF_HD float clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

RLF_HD float sigmoid(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
  const float e = expf(x);
  return e / (1.0f + e);
}

// log(sigmoid(x)) without overflow for large |x|.
RLF_HD float log_sigmoid(float x) {
  return x >= 0.0f ? -log1pf(expf(-x)) : x - log1pf(expf(x));
}

template <typename M>
RLF_HD bool mask_at(const void* mask, int64_t i) {
  return static_cast<const M*>(mask)[i] != M(0);
}

// ---- KL penalty, l = log pi - log pi_ref ----
constexpr float kLogRatioClamp = 20.0f;

RLF_HD float kl_estimate(float logp, float ref_logp, KlEstimator estimator, float clamp) {
  const float l = logp - ref_logp;
  float kl;
  if (estimator == KlEstimator::k1) {
    kl = l;
  } else if (estimator == KlEstimator::k2) {
    kl = 0.5f * l * l;
  } else {
    const float lc = clampf(l, -kLogRatioClamp, kLogRatioClamp);
    kl = expf(-lc) - 1.0f + lc;
  }
  if (clamp > 0.0f) kl = clampf(kl, -clamp, clamp);
  return kl;
}

// d kl_estimate / d logp. Zero where a clamp holds the value constant.
RLF_HD float kl_grad(float logp, float ref_logp, KlEstimator estimator, float clamp) {
  const float l = logp - ref_logp;
  if (clamp > 0.0f) {
    const float kl = kl_estimate(logp, ref_logp, estimator, 0.0f);
    if (kl > clamp || kl < -clamp) return 0.0f;
  }
  if (estimator == KlEstimator::k1) return l == l ? 1.0f : l;
  if (estimator == KlEstimator::k2) return l;
  if (l != l) return l;
  if (l < -kLogRatioClamp || l > kLogRatioClamp) return 0.0f;
  return 1.0f - expf(-l);  // d(e^-l - 1 + l)/dl
}

// ---- PPO reward shaping for one token: r = -beta kl, plus the sequence score at its last token ----
// Written as alpha * kl + (score or 0) so that it equals ops.add(kl, broadcastRows(scores, last), { alpha: -beta }).
RLF_HD float shaped_reward(float kl, float neg_kl_coef, bool last, float score) {
  return neg_kl_coef * kl + (last ? score : 0.0f);
}

// ---- PPO clipped policy loss for one token ----
struct PpoToken {
  float loss, grad;  // grad = d loss / d logp
  bool clipped;      // the clipped surrogate was the larger term
  bool clipped_low;  // ... at the lower bound (ratio < 1 - clip_low with A < 0)
  bool clipped_high; // ... at the upper bound (ratio > 1 + clip_high with A > 0)
  bool dual_clipped;
  float log_ratio;
};

RLF_HD PpoToken ppo_token(float logp, float old_logp, float advantage, float clip_low, float clip_high,
                          float dual_clip) {
  PpoToken t;
  t.log_ratio = logp - old_logp;
  const float lr = clampf(t.log_ratio, -kLogRatioClamp, kLogRatioClamp);
  const float ratio = expf(lr);
  const float unclipped = -advantage * ratio;
  const float clipped = -advantage * clampf(ratio, 1.0f - clip_low, 1.0f + clip_high);
  t.clipped = clipped > unclipped;
  t.clipped_low = t.clipped && advantage < 0.0f;
  t.clipped_high = t.clipped && advantage > 0.0f;
  t.dual_clipped = false;
  if (t.clipped) {
    t.loss = clipped;
    t.grad = 0.0f;  // the clipped ratio is constant here
  } else {
    t.loss = unclipped;
    const bool saturated = t.log_ratio <= -kLogRatioClamp || t.log_ratio >= kLogRatioClamp;
    t.grad = saturated ? 0.0f : unclipped;  // d(-A e^l)/dl = -A e^l
  }
  if (dual_clip > 0.0f && advantage < 0.0f) {
    const float cap = -dual_clip * advantage;
    if (t.loss > cap) {
      t.loss = cap;
      t.grad = 0.0f;
      t.dual_clipped = true;
    }
  }
  return t;
}

// ---- clipped value loss for one token ----
struct ValueToken {
  float loss, grad;
  bool clipped;
};

RLF_HD ValueToken value_token(float value, float old_value, float ret, float clip) {
  const float err = value - ret;
  ValueToken t{0.5f * err * err, err, false};
  const float delta = value - old_value;
  // Inside the clip range the clipped value is the value itself; testing the
  // range (not old + delta, which rounds) keeps the two terms exactly equal there.
  if (clip < 0.0f || !(delta > clip || delta < -clip)) return t;
  const float clipped_err = old_value + (delta > 0.0f ? clip : -clip) - ret;
  const float clipped_loss = 0.5f * clipped_err * clipped_err;
  if (clipped_loss > t.loss) {
    t.loss = clipped_loss;
    t.grad = 0.0f;  // the clipped value does not depend on value
    t.clipped = true;
  }
  return t;
}

// ---- DPO family for one preference pair ----
struct DpoPair {
  float loss;
  float d_chosen, d_rejected;  // d loss / d log pi(chosen), d log pi(rejected)
  float chosen_reward, rejected_reward;
};

// pc, pr: policy sequence log-probs; rc, rr: reference (0 when reference-free);
// lc, lr: response lengths (ipo, simpo); eps: label smoothing.
RLF_HD DpoPair dpo_pair(DpoVariant variant, float pc, float pr, float rc, float rr, float lc, float lr, float beta,
                        float eps, float gamma) {
  const float dc = pc - rc, dr = pr - rr, h = dc - dr;
  DpoPair out;
  out.chosen_reward = beta * dc;
  out.rejected_reward = beta * dr;
  switch (variant) {
    case DpoVariant::sigmoid: {  // cDPO when eps > 0
      const float x = beta * h;
      out.loss = -(1.0f - eps) * log_sigmoid(x) - eps * log_sigmoid(-x);
      const float dh = beta * (-(1.0f - eps) * sigmoid(-x) + eps * sigmoid(x));
      out.d_chosen = dh;
      out.d_rejected = -dh;
      break;
    }
    case DpoVariant::robust: {
      const float x = beta * h;
      out.loss = (-(1.0f - eps) * log_sigmoid(x) + eps * log_sigmoid(-x)) / (1.0f - 2.0f * eps);
      const float dh = beta * (-(1.0f - eps) * sigmoid(-x) - eps * sigmoid(x)) / (1.0f - 2.0f * eps);
      out.d_chosen = dh;
      out.d_rejected = -dh;
      break;
    }
    case DpoVariant::hinge: {
      const float x = beta * h;
      const bool active = x < 1.0f;
      out.loss = active ? 1.0f - x : (x == x ? 0.0f : x);
      out.d_chosen = active ? -beta : (x == x ? 0.0f : x);
      out.d_rejected = -out.d_chosen;
      break;
    }
    case DpoVariant::ipo: {
      const float u = dc / lc - dr / lr - 1.0f / (2.0f * beta);
      out.loss = u * u;
      out.d_chosen = 2.0f * u / lc;
      out.d_rejected = -2.0f * u / lr;
      out.chosen_reward = beta * dc / lc;
      out.rejected_reward = beta * dr / lr;
      break;
    }
    case DpoVariant::bco_pair: {
      out.loss = -log_sigmoid(beta * dc) - log_sigmoid(-beta * dr);
      out.d_chosen = -beta * sigmoid(-beta * dc);
      out.d_rejected = beta * sigmoid(beta * dr);
      break;
    }
    case DpoVariant::sppo_hard: {
      const float a = dc - 1.0f / (2.0f * beta), b = dr + 1.0f / (2.0f * beta);
      out.loss = a * a + b * b;
      out.d_chosen = 2.0f * a;
      out.d_rejected = 2.0f * b;
      break;
    }
    case DpoVariant::nca_pair: {
      out.loss = -log_sigmoid(beta * dc) - 0.5f * log_sigmoid(-beta * dc) - 0.5f * log_sigmoid(-beta * dr);
      out.d_chosen = -beta * sigmoid(-beta * dc) + 0.5f * beta * sigmoid(beta * dc);
      out.d_rejected = 0.5f * beta * sigmoid(beta * dr);
      break;
    }
    case DpoVariant::apo_zero: {
      const float sc = sigmoid(beta * dc), sr = sigmoid(beta * dr);
      out.loss = 1.0f - sc + sr;
      out.d_chosen = -beta * sc * (1.0f - sc);
      out.d_rejected = beta * sr * (1.0f - sr);
      break;
    }
    case DpoVariant::simpo: {  // no reference; length-normalised log-probs and a target margin gamma
      const float ac = pc / lc, ar = pr / lr;
      const float x = beta * (ac - ar) - gamma;
      out.loss = -(1.0f - eps) * log_sigmoid(x) - eps * log_sigmoid(-x);
      const float dx = -(1.0f - eps) * sigmoid(-x) + eps * sigmoid(x);
      out.d_chosen = dx * beta / lc;
      out.d_rejected = -dx * beta / lr;
      out.chosen_reward = beta * ac;
      out.rejected_reward = beta * ar;
      break;
    }
  }
  return out;
}

// The sum of n values in double, in index order (as JavaScript adds them).
RLF_HD double ordered_sum(const float* x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i];
  return s;
}

// ---- Bradley-Terry reward-model loss for one pair ----
struct RewardPair {
  float loss, d_chosen, d_rejected;
};

RLF_HD RewardPair reward_pair(float chosen, float rejected, float margin, float center_coef) {
  const float d = chosen - rejected - margin;
  const float s = sigmoid(-d);  // d(-log sigmoid(d))/dd = -sigmoid(-d)
  const float sum = chosen + rejected;
  RewardPair out;
  out.loss = -log_sigmoid(d) + center_coef * sum * sum;
  out.d_chosen = -s + 2.0f * center_coef * sum;
  out.d_rejected = s + 2.0f * center_coef * sum;
  return out;
}

// ---- One pair of a batch of the pair losses (ops.dpoLoss, ops.rewardLoss) ----
// Writes pair i's gradients (divided by the batch, rounded to f32, then
// multiplied by grad_scale: the bits a caller gets scaling the f32 gradient
// in double) and returns its loss, 1 if it ranks the chosen response first,
// and 1 if one of its lengths is not a positive finite number, for the
// caller's sums; one overload per loss, so both backends loop over either
// with one template.
struct PairTerms {
  float loss;
  double correct;
  double invalid;
};

RLF_HD float scaled_gradient(double g, double grad_scale) {
  return static_cast<float>(static_cast<double>(static_cast<float>(g)) * grad_scale);
}

RLF_HD bool positive_length(float v) { return v > 0.0f && v <= 3.4028234663852886e38f; }

RLF_HD PairTerms pair_terms(const DpoLossArgs& a, int64_t i, double inv_batch) {
  const float lc = a.chosen_length ? a.chosen_length[i] : 1.0f;
  const float lr = a.rejected_length ? a.rejected_length[i] : 1.0f;
  const DpoPair p = dpo_pair(a.variant, a.policy_chosen[i], a.policy_rejected[i], a.ref_chosen ? a.ref_chosen[i] : 0.0f,
                             a.ref_rejected ? a.ref_rejected[i] : 0.0f, lc, lr, a.beta, a.label_smoothing, a.gamma);
  a.grad_chosen[i] = scaled_gradient(p.d_chosen * inv_batch, a.grad_scale);
  a.grad_rejected[i] = scaled_gradient(p.d_rejected * inv_batch, a.grad_scale);
  a.chosen_reward[i] = p.chosen_reward;
  a.rejected_reward[i] = p.rejected_reward;
  return {p.loss, p.chosen_reward > p.rejected_reward ? 1.0 : 0.0, positive_length(lc) && positive_length(lr) ? 0.0 : 1.0};
}

RLF_HD PairTerms pair_terms(const RewardLossArgs& a, int64_t i, double inv_batch) {
  const float margin = a.margin ? a.margin[i] : a.margin_scalar;
  const RewardPair p = reward_pair(a.chosen[i], a.rejected[i], margin, a.center_coef);
  a.grad_chosen[i] = scaled_gradient(p.d_chosen * inv_batch, a.grad_scale);
  a.grad_rejected[i] = scaled_gradient(p.d_rejected * inv_batch, a.grad_scale);
  return {p.loss, a.chosen[i] > a.rejected[i] ? 1.0 : 0.0, 0.0};
}

}  // namespace rlfarm::math
