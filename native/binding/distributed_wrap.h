// The N-API class behind ts/distributed/index.ts.
#pragma once

#include <napi.h>

namespace rlfarm::binding {

Napi::Function DefineProcessGroup(Napi::Env env);

}  // namespace rlfarm::binding
