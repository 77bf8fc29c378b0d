// Matrix multiply for the CPU engine (row-major).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rlfarm::cpu {

// C[M,N] = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T as the flag says.
// A is stored [M,K] (or [K,M] when trans_a), B is stored [K,N] (or [N,K] when trans_b);
// lda/ldb/ldc are the row strides of the stored matrices. beta == 0 means C is not read.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

}  // namespace rlfarm::cpu
