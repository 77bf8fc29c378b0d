// The GEMM driver: argument checks, empty and trivial products, the choice of
// backend, OpenBLAS loaded at run time, and the split of C over the pool.
#include "gemm.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdlib>

#include "../core/error.h"
#include "../core/thread_pool.h"
#include "../ops/kernels.h"
#include "gemm_kernel.h"

#if defined(__unix__) || defined(__APPLE__)
#include <dlfcn.h>
#define RLFARM_HAS_DLOPEN 1
#endif

namespace rlfarm::cpu {
namespace {

// ---------------------------------------------------------------------------
// OpenBLAS, found at run time. The constants and the signature are cblas.h's
// for OpenBLAS's default build (32-bit integers), declared here so that
// building needs no header and running needs no library.

constexpr int kCblasRowMajor = 101, kCblasNoTrans = 111, kCblasTrans = 112;
using CblasSgemm = void (*)(int order, int trans_a, int trans_b, int M, int N, int K, float alpha, const float* A,
                            int lda, const float* B, int ldb, float beta, float* C, int ldc);
using OpenblasSetNumThreads = void (*)(int threads);

constexpr const char* kOpenblasLibrary = "libopenblas.so.0";

struct OpenBlas {
  CblasSgemm sgemm = nullptr;
  std::string error;  // why it is unavailable; empty when loaded
};

const OpenBlas& openblas() {
  static const OpenBlas lib = [] {
    OpenBlas out;
#if RLFARM_HAS_DLOPEN
    // Loaded once and never closed: the functions stay valid for the process.
    void* handle = dlopen(kOpenblasLibrary, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char* why = dlerror();
      out.error = why ? why : std::string("dlopen(") + kOpenblasLibrary + ") failed";
      return out;
    }
    out.sgemm = reinterpret_cast<CblasSgemm>(dlsym(handle, "cblas_sgemm"));
    if (!out.sgemm) {
      out.error = std::string(kOpenblasLibrary) + " has no cblas_sgemm";
      return out;
    }
    // rlfarm's pool splits C over threads; OpenBLAS threads on top of it would
    // oversubscribe the cores and spin while the pool works (see gemm.h).
    const auto set_threads = reinterpret_cast<OpenblasSetNumThreads>(dlsym(handle, "openblas_set_num_threads"));
    if (set_threads) set_threads(1);
#else
    out.error = "loading OpenBLAS at run time needs dlopen, which this platform lacks";
#endif
    return out;
  }();
  return lib;
}

// ---------------------------------------------------------------------------
// Backend selection.

enum class Backend : int { builtin = 0, openblas = 1 };
const char* const kBackendNames[] = {"builtin", "openblas"};

// `context` starts any error message: "RLFARM_GEMM: " or "".
Backend parse_backend(const std::string& name, const char* context) {
  for (int i = 0; i < 2; ++i) {
    if (name == kBackendNames[i]) return static_cast<Backend>(i);
  }
  fail(context, "gemm backend '", name, "' is unknown; expected builtin or openblas");
}

void require_available(Backend backend, const char* context) {
  if (backend == Backend::openblas && !openblas().sgemm) {
    fail(context, "the openblas gemm backend is unavailable: ", openblas().error);
  }
}

Backend initial_backend() {
  if (const char* env = std::getenv("RLFARM_GEMM")) {
    const Backend forced = parse_backend(env, "RLFARM_GEMM: ");
    require_available(forced, "RLFARM_GEMM: ");
    return forced;
  }
  return Backend::builtin;  // the faster one on the transformer shapes (bench/RESULTS.md)
}

std::atomic<int>& active_backend() {
  static std::atomic<int> backend{static_cast<int>(initial_backend())};
  return backend;
}

// ---------------------------------------------------------------------------
// Arguments and trivial products.

GemmProblem checked_problem(const char* op, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                            const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                            int64_t ldc) {
  RLF_CHECK(M >= 0 && N >= 0 && K >= 0, op, ": sizes must be >= 0; got M = ", M, ", N = ", N, ", K = ", K);
  const int64_t a_row = trans_a ? M : K, b_row = trans_b ? K : N;
  RLF_CHECK(lda >= std::max<int64_t>(1, a_row), op, ": lda = ", lda, " is shorter than a row of A (", a_row, ")");
  RLF_CHECK(ldb >= std::max<int64_t>(1, b_row), op, ": ldb = ", ldb, " is shorter than a row of B (", b_row, ")");
  RLF_CHECK(ldc >= std::max<int64_t>(1, N), op, ": ldc = ", ldc, " is shorter than a row of C (", N, ")");
  const bool writes_c = M > 0 && N > 0;
  const bool reads_ab = writes_c && K > 0 && alpha != 0.0f;
  RLF_CHECK(!writes_c || C, op, ": C is null");
  RLF_CHECK(!reads_ab || (A && B), op, ": ", A ? "B" : "A", " is null");
  return GemmProblem{trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
}

// C[i, j] += bias[j] over the problem's block of C (for the paths that do not
// add it in the kernel).
void add_bias_rows(const GemmProblem& p) {
  if (!p.bias) return;
  for (int64_t i = 0; i < p.M; ++i) {
    float* row = p.C + i * p.ldc;
    for (int64_t j = 0; j < p.N; ++j) row[j] += p.bias[j];
  }
}

// Whether the kernels have anything to multiply; when not, C = beta * C.
bool has_products(const GemmProblem& p) { return p.K > 0 && p.alpha != 0.0f; }

void scale_c(const GemmProblem& p) {
  if (p.beta == 1.0f) return;
  for (int64_t i = 0; i < p.M; ++i) {
    float* row = p.C + i * p.ldc;
    if (p.beta == 0.0f) {
      std::fill(row, row + p.N, 0.0f);  // not 0 * C: C may hold NaN
    } else {
      for (int64_t j = 0; j < p.N; ++j) row[j] *= p.beta;
    }
  }
}

// ---------------------------------------------------------------------------
// Running products.

// Below this many flops a thread is not worth waking (about 20 us of work).
constexpr double kMinFlopsPerThread = 4.0e6;

double flops(const GemmProblem& p) { return 2.0 * static_cast<double>(p.M) * static_cast<double>(p.N) * p.K; }

// How one call runs its products: the backend and the builtin kernel, read
// once so that a concurrent switch cannot mix two of them in one call.
class Runner {
 public:
  Runner() : backend_(static_cast<Backend>(active_backend().load())), kernel_(builtin_gemm_kernel()) {}

  // The whole product on the calling thread.
  void serial(const GemmProblem& p) const {
    if (backend_ == Backend::builtin) {
      kernel_.run(p);
      return;
    }
    constexpr int64_t kMax = INT_MAX;
    RLF_CHECK(p.M <= kMax && p.N <= kMax && p.K <= kMax && p.lda <= kMax && p.ldb <= kMax && p.ldc <= kMax,
              "sgemm: the openblas backend takes sizes and strides below 2^31; got M = ", p.M, ", N = ", p.N,
              ", K = ", p.K);
    openblas().sgemm(kCblasRowMajor, p.trans_a ? kCblasTrans : kCblasNoTrans, p.trans_b ? kCblasTrans : kCblasNoTrans,
                     static_cast<int>(p.M), static_cast<int>(p.N), static_cast<int>(p.K), p.alpha, p.A,
                     static_cast<int>(p.lda), p.B, static_cast<int>(p.ldb), p.beta, p.C, static_cast<int>(p.ldc));
    add_bias_rows(p);
  }

  // The product on the pool. builtin shares it out itself (gemm_parallel in
  // gemm_impl.h: B packed once, rows of C claimed in chunks). OpenBLAS, held
  // to one thread, gets a grid of blocks of C, one per thread, that depends
  // only on the shape and the pool size: in whole register tiles, and among
  // grids of that size the one whose blocks pack the least of A and B (each
  // block packs its rows of A and its columns of B, so it minimises rows +
  // columns).
  void parallel(const GemmProblem& p) const {
    const int64_t parts = parts_for(flops(p));
    if (parts == 1) {
      serial(p);
      return;
    }
    if (backend_ == Backend::builtin) {
      kernel_.run_parallel(p);
      return;
    }
    const int64_t row_tiles = (p.M + kernel_.tile_rows - 1) / kernel_.tile_rows;
    const int64_t col_tiles = (p.N + kernel_.tile_cols - 1) / kernel_.tile_cols;
    int64_t grid_rows = 1, grid_cols = 1;
    double best_cost = 0;
    for (int64_t r = 1; r <= parts; ++r) {
      const int64_t c = parts / r;
      if (r > row_tiles || c > col_tiles) continue;
      const double cost = static_cast<double>(p.M) / r + static_cast<double>(p.N) / c;
      if (r * c > grid_rows * grid_cols || (r * c == grid_rows * grid_cols && cost < best_cost)) {
        grid_rows = r;
        grid_cols = c;
        best_cost = cost;
      }
    }
    if (grid_rows * grid_cols == 1) {
      serial(p);
      return;
    }
    parallel_for(grid_rows * grid_cols, 1, [&](int64_t begin, int64_t end) {
      for (int64_t block = begin; block < end; ++block) {
        const int64_t r = block / grid_cols, c = block % grid_cols;
        const int64_t row0 = std::min(p.M, row_tiles * r / grid_rows * kernel_.tile_rows);
        const int64_t row1 = std::min(p.M, row_tiles * (r + 1) / grid_rows * kernel_.tile_rows);
        const int64_t col0 = std::min(p.N, col_tiles * c / grid_cols * kernel_.tile_cols);
        const int64_t col1 = std::min(p.N, col_tiles * (c + 1) / grid_cols * kernel_.tile_cols);
        if (row0 < row1 && col0 < col1) serial(sub_problem(p, row0, row1 - row0, col0, col1 - col0));
      }
    });
  }

  // How many threads `work` flops deserve.
  static int64_t parts_for(double work) {
    return std::clamp<int64_t>(static_cast<int64_t>(work / kMinFlopsPerThread), 1, thread_count());
  }

 private:
  Backend backend_;
  GemmKernel kernel_;
};

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm_bias(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, nullptr);
}

void sgemm_bias(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const float* bias) {
  GemmProblem p = checked_problem("sgemm", trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  if (M == 0 || N == 0) return;
  p.bias = bias;
  if (!has_products(p)) {
    scale_c(p);
    add_bias_rows(p);
    return;
  }
  Runner().parallel(p);
}

void sgemm_batched(int64_t batch, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b,
                   float beta, float* C, int64_t ldc, int64_t stride_c) {
  RLF_CHECK(batch >= 0, "sgemm_batched: batch must be >= 0; got ", batch);
  const GemmProblem first =
      checked_problem("sgemm_batched", trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  if (batch == 0 || M == 0 || N == 0) return;
  // A and B may be shared by every product (stride 0); the Cs must not overlap.
  RLF_CHECK(stride_a >= 0 && stride_b >= 0, "sgemm_batched: strides must be >= 0; got stride_a = ", stride_a,
            ", stride_b = ", stride_b);
  RLF_CHECK(batch == 1 || stride_c >= (M - 1) * ldc + N, "sgemm_batched: stride_c = ", stride_c,
            " makes the products' Cs overlap (one C spans ", (M - 1) * ldc + N, " floats)");
  if (!has_products(first)) {
    for (int64_t i = 0; i < batch; ++i) {
      GemmProblem p = first;
      p.C = C + i * stride_c;
      scale_c(p);
    }
    return;
  }
  const auto item = [&](int64_t i) {
    GemmProblem p = first;
    p.A = A + i * stride_a;
    p.B = B + i * stride_b;
    p.C = C + i * stride_c;
    return p;
  };
  const Runner runner;
  if (batch < thread_count() && Runner::parts_for(flops(first)) > 1) {
    // Too few products to share out, each big enough to split: one at a time.
    for (int64_t i = 0; i < batch; ++i) runner.parallel(item(i));
    return;
  }
  const int64_t parts = Runner::parts_for(flops(first) * static_cast<double>(batch));
  parallel_for(batch, (batch + parts - 1) / parts, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) runner.serial(item(i));
  });
}

std::string gemm_backend() { return kBackendNames[active_backend().load()]; }

std::vector<std::string> gemm_backends_available() {
  std::vector<std::string> out{kBackendNames[static_cast<int>(Backend::builtin)]};
  if (openblas().sgemm) out.push_back(kBackendNames[static_cast<int>(Backend::openblas)]);
  return out;
}

void set_gemm_backend(const std::string& name) {
  const Backend backend = parse_backend(name, "");
  require_available(backend, "");
  active_backend().store(static_cast<int>(backend));
}

// The gemm kernel's signature (ops/kernels.h) over sgemm: f32 operands only.
void gemm(const GemmArgs& g) {
  RLF_CHECK(!g.bf16_compute, "gemm: bf16 tensor-core products run on CUDA only; the cpu multiplies f32");
  RLF_CHECK(g.a.dtype == DType::f32 && g.b.dtype == DType::f32, "gemm: the cpu multiplies f32 operands; got a ",
            dtype_name(g.a.dtype), " and b ", dtype_name(g.b.dtype));
  const float* A = static_cast<const float*>(g.a.data);
  const float* B = static_cast<const float*>(g.b.data);
  if (g.batch == 1) {
    sgemm_bias(g.trans_a, g.trans_b, g.m, g.n, g.k, g.alpha, A, g.a.ld, B, g.b.ld, g.beta, g.c, g.ldc, g.bias);
    return;
  }
  RLF_CHECK(g.bias == nullptr, "gemm: a bias is for a single product; got a batch of ", g.batch);
  if (g.batch_inner == 1) {
    sgemm_batched(g.batch, g.trans_a, g.trans_b, g.m, g.n, g.k, g.alpha, A, g.a.ld, g.a.outer, B, g.b.ld, g.b.outer,
                  g.beta, g.c, g.ldc, g.c_outer);
    return;
  }
  const auto at = [&](const GemmOperand& o, int64_t z) {
    return (z / g.batch_inner) * o.outer + ((z % g.batch_inner) / o.group) * o.inner;
  };
  parallel_for(g.batch, 1, [&](int64_t z0, int64_t z1) {
    for (int64_t z = z0; z < z1; ++z) {
      sgemm(g.trans_a, g.trans_b, g.m, g.n, g.k, g.alpha, A + at(g.a, z), g.a.ld, B + at(g.b, z), g.b.ld, g.beta,
            g.c + (z / g.batch_inner) * g.c_outer + (z % g.batch_inner) * g.c_inner, g.ldc);
    }
  });
}

}  // namespace rlfarm::cpu
