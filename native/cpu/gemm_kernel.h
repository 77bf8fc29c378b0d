// What the GEMM driver (gemm.cpp) and the per-ISA builtin kernels
// (gemm_generic.cpp, gemm_avx2.cpp, gemm_avx512.cpp) share. The driver checks
// arguments, handles empty and trivial products and splits C over threads; a
// kernel computes one block of C on the calling thread.
#pragma once

#include <cstdint>

namespace rlfarm::cpu {

// C[M,N] = alpha * op(A) * op(B) + beta * C (+ bias[j] on every row when bias
// is set), row-major, as sgemm_bias in gemm.h. The kernels see only M, N, K > 0
// and alpha != 0.
struct GemmProblem {
  bool trans_a, trans_b;
  int64_t M, N, K;
  float alpha;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float beta;
  float* C;
  int64_t ldc;
  const float* bias = nullptr;  // [N], added after the product
};

// The problem restricted to rows [row, row + rows) and columns [col, col + cols) of C.
inline GemmProblem sub_problem(const GemmProblem& p, int64_t row, int64_t rows, int64_t col, int64_t cols) {
  GemmProblem s = p;
  s.M = rows;
  s.N = cols;
  s.A = p.trans_a ? p.A + row : p.A + row * p.lda;
  s.B = p.trans_b ? p.B + col * p.ldb : p.B + col;
  s.C = p.C + row * p.ldc + col;
  if (p.bias) s.bias = p.bias + col;
  return s;
}

// One builtin kernel: the product on the calling thread, the product shared
// out over rlfarm's pool (parallel_for), and its register tile (rows x cols
// of C). Both compute every element of C the same way.
struct GemmKernel {
  void (*run)(const GemmProblem& p);
  void (*run_parallel)(const GemmProblem& p);
  int tile_rows, tile_cols;
};

// The kernel for the active SIMD level (dispatch.cpp). Read once per call, so
// that a concurrent set_simd_level() cannot mix two kernels in one product.
GemmKernel builtin_gemm_kernel();

}  // namespace rlfarm::cpu
