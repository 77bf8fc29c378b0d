// The N-API class behind ts/model/model.ts.
#pragma once

#include <napi.h>

#include "call_count.h"

#include <memory>

namespace rlfarm::model {
class Transformer;
}
namespace rlfarm::cuda {
class Engine;
}

namespace rlfarm::binding {

// cudaPlan(config, batch, steps, precision, train, sms) for JavaScript (native/cuda/plan.h).
Napi::Value CudaPlan(const Napi::CallbackInfo& info);
Napi::Value CudaGeneratePlan(const Napi::CallbackInfo& info);
// cublasltPlan(transA, transB, m, n, k, lda, ldb, ldc): cuBLASLt's layouts of a product (plan_cublaslt).
Napi::Value CublasltPlan(const Napi::CallbackInfo& info);

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  RLFARM_COUNTED_METHODS(NativeModel)
  static Napi::Function Define(Napi::Env env);
  explicit NativeModel(const Napi::CallbackInfo& info);
  ~NativeModel() override;

  // Marks the model as running `what` (null: idle); async calls set it until they settle.
  void SetBusy(const char* what) { busy_ = what; }
  const model::Transformer& transformer() const { return *model_; }
  // Once the model is idle: on a cuda model, the device's AdamW moments into
  // their optimizer's host copy, if they changed there since. `op` names the caller.
  void SyncMomentsToHost(const char* op);

 private:
  void CheckIdle(const char* op) const;
  Napi::Value ParameterInfo(const Napi::CallbackInfo& info);
  Napi::Value Params(const Napi::CallbackInfo& info);
  Napi::Value Grads(const Napi::CallbackInfo& info);
  Napi::Value DeviceGrads(const Napi::CallbackInfo& info);
  Napi::Value ZeroGrad(const Napi::CallbackInfo& info);
  Napi::Value InitRandom(const Napi::CallbackInfo& info);
  Napi::Value LoadParameter(const Napi::CallbackInfo& info);
  Napi::Value ReadParameter(const Napi::CallbackInfo& info);
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value Backward(const Napi::CallbackInfo& info);
  Napi::Value ReduceGradients(const Napi::CallbackInfo& info);
  Napi::Value Generate(const Napi::CallbackInfo& info);
  Napi::Value AdamWStep(const Napi::CallbackInfo& info);
  Napi::Value GradNorm(const Napi::CallbackInfo& info);
  Napi::Value ToDevice(const Napi::CallbackInfo& info);
  Napi::Value Placement(const Napi::CallbackInfo& info);

  // On a cuda model: the host copy of the parameters (model_'s buffer) to the
  // engine when it changed there, and the engine's parameters back to it.
  void SyncToDevice();
  void SyncToHost();

  std::unique_ptr<model::Transformer> model_;
  // The CUDA engine when the model lives on a GPU; model_ then holds the
  // layout and a host copy of the parameters, synced on demand.
  std::shared_ptr<cuda::Engine> engine_;  // shared with device views of its gradients
  bool host_dirty_ = false;  // the host copy may differ from the device's (loaded, or handed out as a view)
  const char* busy_ = nullptr;
};

}  // namespace rlfarm::binding
