// cuBLASLt as the fast path of the gemm kernel, loaded with dlopen at run time
// (CI and the build have no cuBLAS; a GPU machine has it, e.g. inside
// PyTorch's CUDA wheels): RLFARM_CUBLASLT names the library file, else the
// sonames libcublasLt.so.13, .so.12 and .so are tried. RLFARM_CUDA_GEMM=own
// turns it off (read at every call, so tests can run both paths), and a
// product it cannot take (mixed operand dtypes, a grouped batch, no algorithm
// for the shapes or alignments) falls back to the engine's own kernels.
//
// The declarations below are cuBLASLt's C API (cublasLt.h), written out here
// because the header is not installed where rlfarm is built; the layouts
// come from plan_cublaslt (plan.cpp), which the CPU tests check.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "../core/shared_library.h"
#include "../ops/kernels.h"
#include "check.h"
#include "cublaslt.h"
#include "plan.h"

namespace rlfarm::cuda {
namespace {

// Values of cublasLt.h's enums that are used here.
constexpr int kStatusSuccess = 0, kStatusNotSupported = 15;  // cublasStatus_t
constexpr int kComputeF32 = 68, kComputeF32FastBf16 = 75;  // cublasComputeType_t
constexpr int kR32F = 0, kR16BF = 14;                      // cudaDataType_t
constexpr int kOpN = 0, kOpT = 1;                          // cublasOperation_t
constexpr int kDescTransA = 3, kDescTransB = 4, kDescEpilogue = 7, kDescBiasPointer = 8;
constexpr int kLayoutBatchCount = 5, kLayoutStridedBatchOffset = 6;
constexpr int kPrefMaxWorkspace = 1, kPrefMinAlignA = 5, kPrefMinAlignB = 6, kPrefMinAlignC = 7, kPrefMinAlignD = 8;
constexpr uint32_t kEpilogueDefault = 1, kEpilogueBias = 4;
constexpr size_t kWorkspaceBytes = size_t(32) << 20;

struct HeuristicResult {
  uint64_t algo[8];
  size_t workspace_size;
  int state;
  float waves;
  int reserved[4];
};

struct Api {
  int (*create)(void**);
  int (*desc_create)(void**, int, int);
  int (*desc_set)(void*, int, const void*, size_t);
  int (*desc_destroy)(void*);
  int (*layout_create)(void**, int, uint64_t, uint64_t, int64_t);
  int (*layout_set)(void*, int, const void*, size_t);
  int (*layout_destroy)(void*);
  int (*pref_create)(void**);
  int (*pref_set)(void*, int, const void*, size_t);
  int (*pref_destroy)(void*);
  int (*heuristic)(void*, void*, void*, void*, void*, void*, void*, int, HeuristicResult*, int*);
  int (*matmul)(void*, void*, const void*, const void*, void*, const void*, void*, const void*, const void*, void*, void*,
                void*, const void*, void*, size_t, void*);
  void* handle = nullptr;
  std::string library;
  std::string why;  // empty when loaded
};

const Api& api() {
  static Api a;
  static std::once_flag once;
  std::call_once(once, [] {
    const SharedLibrary found =
        open_first({std::getenv("RLFARM_CUBLASLT"), "libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"});
    void* lib = found.handle;
    if (lib == nullptr) {
      a.why = "cuBLASLt not found (tried " + found.tried + "; set RLFARM_CUBLASLT to its file)";
      return;
    }
    a.library = found.name;
    const bool ok = bind(lib, "cublasLtCreate", a.create) && bind(lib, "cublasLtMatmulDescCreate", a.desc_create) &&
                    bind(lib, "cublasLtMatmulDescSetAttribute", a.desc_set) &&
                    bind(lib, "cublasLtMatmulDescDestroy", a.desc_destroy) &&
                    bind(lib, "cublasLtMatrixLayoutCreate", a.layout_create) &&
                    bind(lib, "cublasLtMatrixLayoutSetAttribute", a.layout_set) &&
                    bind(lib, "cublasLtMatrixLayoutDestroy", a.layout_destroy) &&
                    bind(lib, "cublasLtMatmulPreferenceCreate", a.pref_create) &&
                    bind(lib, "cublasLtMatmulPreferenceSetAttribute", a.pref_set) &&
                    bind(lib, "cublasLtMatmulPreferenceDestroy", a.pref_destroy) &&
                    bind(lib, "cublasLtMatmulAlgoGetHeuristic", a.heuristic) && bind(lib, "cublasLtMatmul", a.matmul);
    if (!ok) {
      a.why = a.library + " lacks a cublasLt function rlfarm needs";
      return;
    }
    if (a.create(&a.handle) != kStatusSuccess) a.why = a.library + ": cublasLtCreate failed";
  });
  return a;
}

bool turned_off() {
  const char* env = std::getenv("RLFARM_CUDA_GEMM");
  return env != nullptr && std::strcmp(env, "own") == 0;
}

uint32_t alignment(const void* p) {
  const uintptr_t v = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && v % a != 0) a /= 2;
  return a;
}

// Destroys what cuBLASLt made for one call.
struct Descriptors {
  const Api& api;
  void *op = nullptr, *a = nullptr, *b = nullptr, *c = nullptr, *pref = nullptr;
  ~Descriptors() {
    if (pref) api.pref_destroy(pref);
    for (void* l : {a, b, c}) {
      if (l) api.layout_destroy(l);
    }
    if (op) api.desc_destroy(op);
  }
};

void* workspace() {
  static void* ptr = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    if (cudaMalloc(&ptr, kWorkspaceBytes) != cudaSuccess) {
      cudaGetLastError();
      ptr = nullptr;
    }
  });
  return ptr;
}

}  // namespace

std::string cublaslt_status() {
  if (turned_off()) return "off (RLFARM_CUDA_GEMM=own)";
  const Api& a = api();
  return a.why.empty() ? "cublaslt (" + a.library + ")" : "own kernels: " + a.why;
}

bool cublaslt_gemm(const GemmArgs& g) {
  if (turned_off()) return false;
  const Api& lt = api();
  if (!lt.why.empty()) return false;
  if (g.m <= 0 || g.n <= 0 || g.k <= 0 || g.a.dtype != g.b.dtype) return false;
  if (g.batch > 1 && (g.batch_inner != 1 || g.bias != nullptr)) return false;  // one uniform stride per operand only
  if (g.a.dtype == DType::bf16 && !g.bf16_compute) return false;
  void* ws = workspace();
  if (ws == nullptr) return false;

  const LtGemm p = plan_cublaslt(g.trans_a, g.trans_b, g.m, g.n, g.k, g.a.ld, g.b.ld, g.ldc);
  const int in_type = g.a.dtype == DType::bf16 ? kR16BF : kR32F;
  const int compute = g.a.dtype == DType::f32 && g.bf16_compute ? kComputeF32FastBf16 : kComputeF32;
  Descriptors d{lt};
  bool ok = lt.desc_create(&d.op, compute, kR32F) == kStatusSuccess;
  const int trans_a = p.a.transposed ? kOpT : kOpN, trans_b = p.b.transposed ? kOpT : kOpN;
  const uint32_t epilogue = g.bias != nullptr ? kEpilogueBias : kEpilogueDefault;
  ok = ok && lt.desc_set(d.op, kDescTransA, &trans_a, sizeof(trans_a)) == kStatusSuccess &&
       lt.desc_set(d.op, kDescTransB, &trans_b, sizeof(trans_b)) == kStatusSuccess &&
       lt.desc_set(d.op, kDescEpilogue, &epilogue, sizeof(epilogue)) == kStatusSuccess;
  if (ok && g.bias != nullptr) ok = lt.desc_set(d.op, kDescBiasPointer, &g.bias, sizeof(g.bias)) == kStatusSuccess;
  // cuBLASLt's A is our B, its B our A (plan_cublaslt); C and D are the output.
  ok = ok && lt.layout_create(&d.a, in_type, p.a.rows, p.a.cols, p.a.ld) == kStatusSuccess &&
       lt.layout_create(&d.b, in_type, p.b.rows, p.b.cols, p.b.ld) == kStatusSuccess &&
       lt.layout_create(&d.c, kR32F, p.c.rows, p.c.cols, p.c.ld) == kStatusSuccess;
  if (ok && g.batch > 1) {
    const int32_t count = static_cast<int32_t>(g.batch);
    for (const auto& [layout, stride] : {std::pair{d.a, g.b.outer}, std::pair{d.b, g.a.outer}, std::pair{d.c, g.c_outer}}) {
      ok = ok && lt.layout_set(layout, kLayoutBatchCount, &count, sizeof(count)) == kStatusSuccess &&
           lt.layout_set(layout, kLayoutStridedBatchOffset, &stride, sizeof(stride)) == kStatusSuccess;
    }
  }
  const uint64_t ws_bytes = kWorkspaceBytes;
  const uint32_t align_a = alignment(g.b.data), align_b = alignment(g.a.data), align_c = alignment(g.c);
  ok = ok && lt.pref_create(&d.pref) == kStatusSuccess &&
       lt.pref_set(d.pref, kPrefMaxWorkspace, &ws_bytes, sizeof(ws_bytes)) == kStatusSuccess &&
       lt.pref_set(d.pref, kPrefMinAlignA, &align_a, sizeof(align_a)) == kStatusSuccess &&
       lt.pref_set(d.pref, kPrefMinAlignB, &align_b, sizeof(align_b)) == kStatusSuccess &&
       lt.pref_set(d.pref, kPrefMinAlignC, &align_c, sizeof(align_c)) == kStatusSuccess &&
       lt.pref_set(d.pref, kPrefMinAlignD, &align_c, sizeof(align_c)) == kStatusSuccess;
  HeuristicResult best{};
  int found = 0;
  ok = ok && lt.heuristic(lt.handle, d.op, d.a, d.b, d.c, d.c, d.pref, 1, &best, &found) == kStatusSuccess && found > 0;
  if (!ok) return false;  // the caller's own kernel takes it
  const int status = lt.matmul(lt.handle, d.op, &g.alpha, g.b.data, d.a, g.a.data, d.b, &g.beta, g.c, d.c, g.c, d.c,
                               best.algo, ws, kWorkspaceBytes, nullptr);
  // Not supported (e.g. a bias pointer the algorithm cannot take): nothing ran, the own kernel takes it.
  if (status == kStatusNotSupported) return false;
  RLF_CHECK(status == kStatusSuccess, "gemm: cublasLtMatmul failed with status ", status, " (", g.m, "x", g.n, "x",
            g.k, ", batch ", g.batch, ")");
  RLF_CUDA_CHECK_LAUNCH("gemm (cuBLASLt)");
  return true;
}

}  // namespace rlfarm::cuda
