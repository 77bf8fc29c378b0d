#include "dispatch.h"

#include <atomic>
#include <cstdlib>

#include "../core/error.h"
#include "../ops/kernels.h"
#include "gemm_kernel.h"

#if defined(__x86_64__) || defined(_M_X64)
#define RLFARM_X86 1
#endif

namespace rlfarm::cpu {

#define RLFARM_DECLARE_ISA(isa)                                                                      \
  namespace isa {                                                                                    \
  void logprobs_entry(const LogprobsArgs& a);                                                        \
  void logprobs_backward_entry(const LogprobsBackwardArgs& a);                                       \
  void gelu_forward_entry(const float* x, float* y, int64_t n);                                      \
  void gelu_backward_entry(const float* x, const float* dy, float* dx, int64_t n);                   \
  void swiglu_forward_entry(const float* g, const float* u, float* y, int64_t n);                    \
  void swiglu_backward_entry(const float* g, const float* u, const float* dy, float* dg, float* du, int64_t n); \
  float softmax_row_entry(float* s, int64_t n);                                                      \
  void exp_shift_entry(float* s, int64_t n, float shift);                                            \
  GemmKernel gemm_kernel();                                                                          \
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

// The kernels of one instruction set.
struct IsaKernels {
  void (*logprobs)(const LogprobsArgs&);
  void (*logprobs_backward)(const LogprobsBackwardArgs&);
  void (*gelu_forward)(const float*, float*, int64_t);
  void (*gelu_backward)(const float*, const float*, float*, int64_t);
  void (*swiglu_forward)(const float*, const float*, float*, int64_t);
  void (*swiglu_backward)(const float*, const float*, const float*, float*, float*, int64_t);
  float (*softmax_row)(float*, int64_t);
  void (*exp_shift)(float*, int64_t, float);
  GemmKernel (*gemm_kernel)();
};

#define RLFARM_ISA_TABLE(isa)                                                                        \
  IsaKernels {                                                                                       \
    isa::logprobs_entry, isa::logprobs_backward_entry, isa::gelu_forward_entry, isa::gelu_backward_entry, \
        isa::swiglu_forward_entry, isa::swiglu_backward_entry, isa::softmax_row_entry, isa::exp_shift_entry, \
        isa::gemm_kernel                                                                             \
  }

const IsaKernels& kernels() {
#if RLFARM_X86
  static const IsaKernels table[] = {RLFARM_ISA_TABLE(generic), RLFARM_ISA_TABLE(avx2), RLFARM_ISA_TABLE(avx512)};
#else
  static const IsaKernels table[] = {RLFARM_ISA_TABLE(generic)};
#endif
  return table[active().load()];
}

void logprobs(const LogprobsArgs& a) { kernels().logprobs(a); }
void logprobs_backward(const LogprobsBackwardArgs& a) { kernels().logprobs_backward(a); }
void gelu_forward(const float* x, float* y, int64_t n) { kernels().gelu_forward(x, y, n); }
void gelu_backward(const float* x, const float* dy, float* dx, int64_t n) { kernels().gelu_backward(x, dy, dx, n); }
void swiglu_forward(const float* g, const float* u, float* y, int64_t n) { kernels().swiglu_forward(g, u, y, n); }
void swiglu_backward(const float* g, const float* u, const float* dy, float* dg, float* du, int64_t n) {
  kernels().swiglu_backward(g, u, dy, dg, du, n);
}
float softmax_row(float* s, int64_t n) { return kernels().softmax_row(s, n); }
void exp_shift(float* s, int64_t n, float shift) { kernels().exp_shift(s, n, shift); }
GemmKernel builtin_gemm_kernel() { return kernels().gemm_kernel(); }


}  // namespace rlfarm::cpu
