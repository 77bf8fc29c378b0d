// The N-API face of rlfarm::Tensor. The binding is thin: it converts
// arguments, calls the core, and wraps results; the core knows nothing of Node.
#pragma once

#include <napi.h>

#include <initializer_list>
#include <utility>

#include "call_count.h"

#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "../core/tensor.h"

namespace rlfarm::binding {

// Per-environment state (the main thread and each worker_thread load the addon
// separately). References to JavaScript memory must be released on their own
// thread; a release from elsewhere is queued and done on the next call.
struct EnvState {
  napi_env env = nullptr;
  std::thread::id thread;
  std::mutex mutex;
  std::vector<napi_ref> pending_releases;
  bool alive = true;

  void release(napi_ref ref);
  void drain();
};

struct AddonData {
  Napi::FunctionReference tensor_constructor;
  // The classes other native objects are given (an optimizer's model, its process group).
  Napi::FunctionReference model_constructor, group_constructor, optimizer_constructor;
  std::shared_ptr<EnvState> state;
  // The environment is going away: references into it are no longer released.
  ~AddonData() {
    std::lock_guard<std::mutex> lock(state->mutex);
    state->alive = false;
    state->pending_releases.clear();
  }
};

AddonData& addon_data(Napi::Env env);

class NativeTensor : public Napi::ObjectWrap<NativeTensor> {
 public:
  RLFARM_COUNTED_METHODS(NativeTensor)
  static Napi::Function Define(Napi::Env env);
  static Napi::Object Wrap(Napi::Env env, Tensor tensor);
  // The tensor behind a JavaScript value; throws a TypeError naming `what` otherwise.
  static const Tensor& FromValue(const Napi::Value& value, const char* what);
  // Like FromValue, but undefined and null give an undefined Tensor.
  static Tensor FromOptional(const Napi::Value& value, const char* what);

  explicit NativeTensor(const Napi::CallbackInfo& info);
  ~NativeTensor() override;

  // The tensor; throws when it was disposed.
  const Tensor& Get() const;

 private:
  static Napi::Value FromTypedArray(const Napi::CallbackInfo& info);
  static Napi::Value Empty(const Napi::CallbackInfo& info);
  static Napi::Value Zeros(const Napi::CallbackInfo& info);
  Napi::Value GetShape(const Napi::CallbackInfo& info);
  Napi::Value GetDType(const Napi::CallbackInfo& info);
  Napi::Value GetDevice(const Napi::CallbackInfo& info);
  Napi::Value GetByteOffset(const Napi::CallbackInfo& info);
  Napi::Value StorageView(const Napi::CallbackInfo& info);
  Napi::Value To(const Napi::CallbackInfo& info);
  Napi::Value Clone(const Napi::CallbackInfo& info);
  Napi::Value Reshape(const Napi::CallbackInfo& info);
  Napi::Value Rows(const Napi::CallbackInfo& info);
  Napi::Value Cast(const Napi::CallbackInfo& info);
  Napi::Value SharesStorage(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value GetDisposed(const Napi::CallbackInfo& info);
  void ReleaseStorage(Napi::Env env);

  Tensor tensor;  // undefined once disposed
  int64_t accounted_bytes_ = 0;
};

Shape shape_from_js(const Napi::Value& value, const char* what);
std::string string_arg(const Napi::Value& value, const char* what);
double number_arg(const Napi::Value& value, const char* what);
bool bool_arg(const Napi::Value& value, const char* what);
// A result object of named tensors (undefined ones left out), e.g. an op's or a forward's outputs.
Napi::Object tensors_object(Napi::Env env, std::initializer_list<std::pair<const char*, Tensor>> fields);

}  // namespace rlfarm::binding
