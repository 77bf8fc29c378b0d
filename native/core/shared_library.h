// Libraries loaded at run time with dlopen (cuBLASLt, NCCL): found where they
// are installed, never needed to build or to load the addon.
#pragma once

#include <dlfcn.h>

#include <string>
#include <vector>

namespace rlfarm {

struct SharedLibrary {
  void* handle = nullptr;  // null when none of the names loaded
  std::string name;        // the one that loaded
  std::string tried;       // "a, b, c": every name tried, in order
  std::string error;       // dlerror() of the last that failed
};

// The first of `names` that dlopen loads (empty names are skipped).
inline SharedLibrary open_first(const std::vector<const char*>& names) {
  SharedLibrary out;
  for (const char* name : names) {
    if (name == nullptr || *name == '\0') continue;
    out.tried += std::string(out.tried.empty() ? "" : ", ") + name;
    out.handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (out.handle != nullptr) {
      out.name = name;
      return out;
    }
    const char* e = dlerror();
    out.error = e ? e : "";
  }
  return out;
}

// Points fn at `name` in lib; false when the library lacks it.
template <typename F>
bool bind(void* lib, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  return fn != nullptr;
}

}  // namespace rlfarm
