#include "dispatch.h"

#include <atomic>
#include <cstdlib>

#include "../core/error.h"
#include "../core/kernels.h"
#include "gemm_kernel.h"

#if defined(__x86_64__) || defined(_M_X64)
#define RLFARM_X86 1
#endif

namespace rlfarm::cpu {

#define RLFARM_DECLARE_ISA(isa)                                  \
  namespace isa {                                                \
  void logprobs_entry(const LogprobsArgs& a);                    \
  void logprobs_backward_entry(const LogprobsBackwardArgs& a);   \
  GemmKernel gemm_kernel();                                      \
  }
RLFARM_DECLARE_ISA(generic)
#if RLFARM_X86
RLFARM_DECLARE_ISA(avx2)
RLFARM_DECLARE_ISA(avx512)
#endif

namespace {

enum Level { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };
const char* const kNames[] = {"generic", "avx2", "avx512"};

bool supported(Level level) {
#if RLFARM_X86
  __builtin_cpu_init();
  switch (level) {
    case kGeneric: return true;
    case kAvx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("fma");
  }
  return false;
#else
  return level == kGeneric;
#endif
}

Level parse(const std::string& name) {
  for (int i = 0; i < 3; ++i) {
    if (name == kNames[i]) return static_cast<Level>(i);
  }
  fail("simd level '", name, "' is unknown; expected generic, avx2 or avx512");
}

Level initial_level() {
  if (const char* env = std::getenv("RLFARM_SIMD")) {
    const Level forced = parse(env);
    RLF_CHECK(supported(forced), "RLFARM_SIMD=", env, ": this CPU does not support it");
    return forced;
  }
  if (supported(kAvx512)) return kAvx512;
  if (supported(kAvx2)) return kAvx2;
  return kGeneric;
}

std::atomic<int>& active() {
  static std::atomic<int> level{initial_level()};
  return level;
}

}  // namespace

std::string simd_level() { return kNames[active().load()]; }

std::vector<std::string> simd_levels_supported() {
  std::vector<std::string> out;
  for (int i = 0; i < 3; ++i) {
    if (supported(static_cast<Level>(i))) out.push_back(kNames[i]);
  }
  return out;
}

void set_simd_level(const std::string& level) {
  const Level parsed = parse(level);
  RLF_CHECK(supported(parsed), "simd level '", level, "' is not supported by this CPU or build");
  active().store(parsed);
}

void logprobs(const LogprobsArgs& a) {
  switch (active().load()) {
#if RLFARM_X86
    case kAvx512: return avx512::logprobs_entry(a);
    case kAvx2: return avx2::logprobs_entry(a);
#endif
    default: return generic::logprobs_entry(a);
  }
}

void logprobs_backward(const LogprobsBackwardArgs& a) {
  switch (active().load()) {
#if RLFARM_X86
    case kAvx512: return avx512::logprobs_backward_entry(a);
    case kAvx2: return avx2::logprobs_backward_entry(a);
#endif
    default: return generic::logprobs_backward_entry(a);
  }
}

GemmKernel builtin_gemm_kernel() {
  switch (active().load()) {
#if RLFARM_X86
    case kAvx512: return avx512::gemm_kernel();
    case kAvx2: return avx2::gemm_kernel();
#endif
    default: return generic::gemm_kernel();
  }
}

}  // namespace rlfarm::cpu
