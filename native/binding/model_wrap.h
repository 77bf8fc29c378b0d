// The N-API class behind ts/model/model.ts.
#pragma once

#include <napi.h>

#include "call_count.h"

#include <memory>

namespace rlfarm::model {
class Transformer;
}

namespace rlfarm::binding {

// cudaPlan(config, batch, steps, precision, train, sms) for JavaScript (native/cuda/plan.h).
Napi::Value CudaPlan(const Napi::CallbackInfo& info);

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  RLFARM_COUNTED_METHODS(NativeModel)
  static Napi::Function Define(Napi::Env env);
  explicit NativeModel(const Napi::CallbackInfo& info);
  ~NativeModel() override;

  // Marks the model as running `what` (null: idle); async calls set it until they settle.
  void SetBusy(const char* what) { busy_ = what; }

 private:
  void CheckIdle(const char* op) const;
  Napi::Value ParameterInfo(const Napi::CallbackInfo& info);
  Napi::Value Params(const Napi::CallbackInfo& info);
  Napi::Value Grads(const Napi::CallbackInfo& info);
  Napi::Value ZeroGrad(const Napi::CallbackInfo& info);
  Napi::Value InitRandom(const Napi::CallbackInfo& info);
  Napi::Value LoadParameter(const Napi::CallbackInfo& info);
  Napi::Value ReadParameter(const Napi::CallbackInfo& info);
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value Backward(const Napi::CallbackInfo& info);
  Napi::Value Generate(const Napi::CallbackInfo& info);
  Napi::Value AdamWStep(const Napi::CallbackInfo& info);
  Napi::Value GradNorm(const Napi::CallbackInfo& info);

  std::unique_ptr<model::Transformer> model_;
  const char* busy_ = nullptr;
};

}  // namespace rlfarm::binding
