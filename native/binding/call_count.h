// A count of the calls JavaScript makes into the addon (functions, methods,
// accessors, model constructors): a debug measure of how often the training
// loops cross the native boundary, read as backend().nativeCalls. Every entry
// point is registered through Counted, so a new one is counted too.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>

namespace rlfarm::binding {

// All threads of the process (the main thread and worker_threads) together.
inline std::atomic<uint64_t> native_calls{0};

inline void count_native_call() { native_calls.fetch_add(1, std::memory_order_relaxed); }

// A function or static method that counts its calls.
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value CountedFunction(const Napi::CallbackInfo& info) {
  count_native_call();
  return F(info);
}

}  // namespace rlfarm::binding

// Declares, inside an ObjectWrap class T, CountedMethod<&T::M>: method (or
// getter) M, counting its calls. A member of T itself, since a method pointer
// given to InstanceMethod must be one of T's.
#define RLFARM_COUNTED_METHODS(T)                               \
  template <Napi::Value (T::*M)(const Napi::CallbackInfo&)>    \
  Napi::Value CountedMethod(const Napi::CallbackInfo& info) {   \
    ::rlfarm::binding::count_native_call();                     \
    return (this->*M)(info);                                    \
  }

namespace rlfarm::binding {

}  // namespace rlfarm::binding
