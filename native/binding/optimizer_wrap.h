// The N-API class behind ts/model/optim.ts: one model::AdamW (its moments and
// decay ranges, made once), stepped through NativeModel.adamwStep.
#pragma once

#include <napi.h>

#include <memory>

#include "call_count.h"

namespace rlfarm::model {
class AdamW;
class Transformer;
}  // namespace rlfarm::model

namespace rlfarm::binding {

class NativeAdamW : public Napi::ObjectWrap<NativeAdamW> {
 public:
  RLFARM_COUNTED_METHODS(NativeAdamW)
  static Napi::Function Define(Napi::Env env);
  // new NativeAdamW(model, { beta1, beta2, eps, weightDecay, decay: bool[] per parameter })
  explicit NativeAdamW(const Napi::CallbackInfo& info);

  // The optimizer a JavaScript value holds; errors name `what`.
  static NativeAdamW& FromValue(const Napi::Value& value, const char* what);

  const model::Transformer* owner() const { return owner_; }
  const std::shared_ptr<model::AdamW>& state() const { return state_; }
  // The process group of a sharded optimizer; undefined when it is not sharded.
  Napi::Value Group(Napi::Env env) const;

 private:
  // moments() -> { m, v, begin, end }: views of the moments of [begin, end) (padded with zeros),
  // brought up to date from a cuda model's device
  Napi::Value Moments(const Napi::CallbackInfo& info);
  // shard(group): keeps the moments of this rank's ZeRO-1 shard only, from now on
  Napi::Value Shard(const Napi::CallbackInfo& info);

  std::shared_ptr<model::AdamW> state_;
  const model::Transformer* owner_ = nullptr;
  Napi::ObjectReference model_;  // the model outlives its optimizer
  Napi::ObjectReference group_;
};

}  // namespace rlfarm::binding
