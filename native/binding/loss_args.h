// The arguments of PPO's policy loss and of the value loss after their first
// tensor, as ops.ppoPolicyLoss and ops.valueLoss take them and as a model
// forward's ppoLoss and valueLoss carry them (the forward computes the loss in
// its own worker, on the outputs it just made); and their results as
// JavaScript objects. One conversion serves both entry points.
#pragma once

#include <napi.h>

#include <cstdint>
#include <functional>
#include <string>

#include "../ops/ops.h"

namespace rlfarm::binding {

// The i-th argument (0-based) of the list being read.
using ArgAt = std::function<Napi::Value(uint32_t)>;

struct PpoLossArgs {
  Tensor old_logp, advantages, mask;
  double clip_low = 0, clip_high = 0, dual_clip = 0;
  Aggregate aggregate = Aggregate::token_mean;
  double grad_scale = 1;
};
// Eight values: oldLogp, advantages, mask, clipLow, clipHigh, dualClip,
// aggregate, gradScale. `prefix` starts every name in errors
// ("ops.ppoPolicyLoss: ", "model.forward: ppoLoss.").
PpoLossArgs ppo_loss_args(const ArgAt& arg, const std::string& prefix);
ops::PpoPolicyLossResult ppo_policy_loss(const Tensor& logp, const PpoLossArgs& a, const Tensor& entropy);
Napi::Object ppo_loss_object(Napi::Env env, const ops::PpoPolicyLossResult& r, bool with_entropy);

struct ValueLossArgs {
  Tensor old_values, returns, mask;
  double clip = 0, grad_scale = 1;
};
// Five values: oldValues, returns, mask, clip (< 0: none), gradScale.
ValueLossArgs value_loss_args(const ArgAt& arg, const std::string& prefix);
ops::ValueLossResult value_loss(const Tensor& values, const ValueLossArgs& a);
Napi::Object value_loss_object(Napi::Env env, const ops::ValueLossResult& r);

}  // namespace rlfarm::binding
