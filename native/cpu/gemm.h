// Single-precision matrix multiply for the CPU backend, the product the
// transformer engine stands on. Row-major everywhere.
//
// Two implementations, chosen at run time:
//   builtin   cache-blocked, packed, register-tiled kernels compiled for
//             AVX-512, AVX2+FMA and plain C++ (gemm_impl.h), picked by the
//             active SIMD level (dispatch.h)
//   openblas  cblas_sgemm from libopenblas.so.0, loaded with dlopen on first
//             use, so that the addon neither needs its headers to build nor
//             the library to run
// RLFARM_GEMM=builtin|openblas or set_gemm_backend() forces one; otherwise the
// default is builtin (measured faster on the transformer shapes, see
// bench/RESULTS.md "GEMM").
//
// Threads: with builtin, each depth block and column block of B is packed once
// into a buffer the pool's threads share, and the rows of C are claimed in
// small chunks as threads come free, so a thread the host delays holds up only
// its chunk. OpenBLAS is held to one thread of its own so that it never
// competes with the pool, and C is cut into one block per thread by a rule
// that depends only on M, N, K and the pool size. Products too small to share
// out, and products called from inside a pool task, run on the calling thread.
//
// Determinism: results are bit-identical from run to run. With the builtin
// kernel they also do not depend on the thread count (each element is summed
// in the same order whichever block it falls in); with OpenBLAS they may, since
// OpenBLAS picks its kernels by the block's shape.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rlfarm::cpu {

// C[M,N] = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T as the flag says.
// A is stored [M,K] (or [K,M] when trans_a), B is stored [K,N] (or [N,K] when
// trans_b); lda/ldb/ldc are the row strides of the stored matrices. beta == 0
// means C is not read (it may hold NaN); alpha == 0 or K == 0 leaves beta * C.
// Throws rlfarm::Error on negative sizes or strides shorter than a row.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// sgemm, then C[i, j] += bias[j] for every row (a Linear layer's bias): the
// builtin kernel adds it while the tile is still in registers, sparing a pass
// over C. The sums are rounded as sgemm followed by a separate add would round
// them, so the result is the same bit for bit. A null bias is plain sgemm.
void sgemm_bias(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const float* bias);

// `batch` independent products with the same shapes, matrix i at A + i*stride_a
// etc. (per-head attention). Parallel over the batch, each product on one
// thread, when the batch can keep the pool busy.
void sgemm_batched(int64_t batch, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b,
                   float beta, float* C, int64_t ldc, int64_t stride_c);

std::string gemm_backend();                       // "builtin" or "openblas"
std::vector<std::string> gemm_backends_available();  // "builtin", and "openblas" when it loads
// Throws when `name` is unknown or the backend is unavailable (the message says why).
void set_gemm_backend(const std::string& name);

}  // namespace rlfarm::cpu
