#include "optimizer_wrap.h"

#include "../core/error.h"
#include "../distributed/zero.h"
#include "../model/optimizer.h"
#include "../model/transformer.h"
#include "distributed_wrap.h"
#include "model_wrap.h"
#include "tensor_wrap.h"

namespace rlfarm::binding {

Napi::Function NativeAdamW::Define(Napi::Env env) {
  return DefineClass(env, "NativeAdamW",
                     {
                         InstanceMethod<&NativeAdamW::CountedMethod<&NativeAdamW::Moments>>("moments"),
                         InstanceMethod<&NativeAdamW::CountedMethod<&NativeAdamW::Shard>>("shard"),
                     });
}

NativeAdamW::NativeAdamW(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeAdamW>(info) {
  count_native_call();  // `new NativeAdamW(model, options)` from JavaScript
  const Napi::Env env = info.Env();
  const bool is_model = info[0].IsObject() && info[0].As<Napi::Object>().InstanceOf(addon_data(env).model_constructor.Value());
  RLF_CHECK(is_model, "AdamW: expected a model");
  RLF_CHECK(info[1].IsObject(), "AdamW: options must be an object");
  const Napi::Object o = info[1].As<Napi::Object>();
  model::AdamWOptions options;
  options.beta1 = number_arg(o.Get("beta1"), "AdamW: beta1");
  options.beta2 = number_arg(o.Get("beta2"), "AdamW: beta2");
  options.eps = number_arg(o.Get("eps"), "AdamW: eps");
  options.weight_decay = number_arg(o.Get("weightDecay"), "AdamW: weightDecay");
  RLF_CHECK(o.Get("decay").IsArray(), "AdamW: decay must be an array of one boolean per parameter");
  const Napi::Array flags = o.Get("decay").As<Napi::Array>();
  std::vector<bool> decay(flags.Length());
  for (uint32_t i = 0; i < flags.Length(); ++i) decay[i] = bool_arg(flags.Get(i), "AdamW: decay");
  owner_ = &NativeModel::Unwrap(info[0].As<Napi::Object>())->transformer();
  state_ = std::make_shared<model::AdamW>(owner_->layout(), decay, options);
  model_ = Napi::Persistent(info[0].As<Napi::Object>());
}

NativeAdamW& NativeAdamW::FromValue(const Napi::Value& value, const char* what) {
  const Napi::Env env = value.Env();
  const Napi::FunctionReference& constructor = addon_data(env).optimizer_constructor;
  RLF_CHECK(value.IsObject() && value.As<Napi::Object>().InstanceOf(constructor.Value()), what,
            ": expected an AdamW optimizer");
  return *Unwrap(value.As<Napi::Object>());
}

Napi::Value NativeAdamW::Group(Napi::Env env) const { return group_.IsEmpty() ? env.Undefined() : group_.Value(); }

Napi::Value NativeAdamW::Moments(const Napi::CallbackInfo& info) {
  // A cuda model's moments live on its device between steps: its host copy is
  // brought up to date, and read again by the next step (the views may be written).
  NativeModel::Unwrap(model_.Value())->SyncMomentsToHost("AdamW.state");
  state_->host_moments_changed = true;
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("m", NativeTensor::Wrap(info.Env(), state_->m()));
  out.Set("v", NativeTensor::Wrap(info.Env(), state_->v()));
  out.Set("begin", static_cast<double>(state_->begin()));
  out.Set("end", static_cast<double>(state_->end()));
  return out;
}

Napi::Value NativeAdamW::Shard(const Napi::CallbackInfo& info) {
  RLF_CHECK(group_.IsEmpty(), "AdamW.shard: this optimizer is already sharded");
  const auto [rank, world_size] = GroupPlace(info[0], "AdamW.shard");
  const distributed::Shard s = distributed::shard_of(state_->total(), rank, world_size);
  state_->set_shard(s.begin, s.end, s.block);
  group_ = Napi::Persistent(info[0].As<Napi::Object>());
  return info.Env().Undefined();
}

}  // namespace rlfarm::binding
