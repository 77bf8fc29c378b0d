#include "loss_args.h"

#include "../core/error.h"
#include "tensor_wrap.h"

namespace rlfarm::binding {
namespace {

double number_at(const ArgAt& arg, uint32_t i, const std::string& name) { return number_arg(arg(i), name.c_str()); }

// The three tensors both losses take first: two inputs and the mask.
void read_tensors(const ArgAt& arg, const std::string& prefix, const char* first, const char* second, Tensor& a, Tensor& b,
                  Tensor& mask) {
  a = NativeTensor::FromValue(arg(0), (prefix + first).c_str());
  b = NativeTensor::FromValue(arg(1), (prefix + second).c_str());
  mask = NativeTensor::FromValue(arg(2), (prefix + "mask").c_str());
}

}  // namespace

PpoLossArgs ppo_loss_args(const ArgAt& arg, const std::string& prefix) {
  PpoLossArgs a;
  read_tensors(arg, prefix, "oldLogp", "advantages", a.old_logp, a.advantages, a.mask);
  a.clip_low = number_at(arg, 3, prefix + "clipLow");
  a.clip_high = number_at(arg, 4, prefix + "clipHigh");
  a.dual_clip = number_at(arg, 5, prefix + "dualClip");
  const std::string aggregate = string_arg(arg(6), (prefix + "aggregate").c_str());
  if (aggregate == "token-mean") a.aggregate = Aggregate::token_mean;
  else if (aggregate == "seq-mean") a.aggregate = Aggregate::seq_mean;
  else fail(prefix, "aggregate must be 'token-mean' or 'seq-mean'; got '", aggregate, "'");
  a.grad_scale = number_at(arg, 7, prefix + "gradScale");
  return a;
}

ops::PpoPolicyLossResult ppo_policy_loss(const Tensor& logp, const PpoLossArgs& a, const Tensor& entropy) {
  return ops::ppo_policy_loss(logp, a.old_logp, a.advantages, a.mask, a.clip_low, a.clip_high, a.dual_clip, a.aggregate,
                              a.grad_scale, entropy);
}

Napi::Object ppo_loss_object(Napi::Env env, const ops::PpoPolicyLossResult& r, bool with_entropy) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("tokens", r.tokens);
  if (with_entropy) out.Set("entropy", r.entropy_mean);
  out.Set("loss", r.loss);
  out.Set("grad", NativeTensor::Wrap(env, r.grad));
  out.Set("clipFraction", r.clip_fraction);
  out.Set("approxKl", r.approx_kl);
  out.Set("dualClipFraction", r.dual_clip_fraction);
  out.Set("clipLowFraction", r.clip_low_fraction);
  out.Set("clipHighFraction", r.clip_high_fraction);
  return out;
}

ValueLossArgs value_loss_args(const ArgAt& arg, const std::string& prefix) {
  ValueLossArgs a;
  read_tensors(arg, prefix, "oldValues", "returns", a.old_values, a.returns, a.mask);
  a.clip = number_at(arg, 3, prefix + "clip");
  a.grad_scale = number_at(arg, 4, prefix + "gradScale");
  return a;
}

ops::ValueLossResult value_loss(const Tensor& values, const ValueLossArgs& a) {
  return ops::value_loss(values, a.old_values, a.returns, a.mask, a.clip, a.grad_scale);
}

Napi::Object value_loss_object(Napi::Env env, const ops::ValueLossResult& r) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("loss", r.loss);
  out.Set("grad", NativeTensor::Wrap(env, r.grad));
  out.Set("clipFraction", r.clip_fraction);
  return out;
}

}  // namespace rlfarm::binding
