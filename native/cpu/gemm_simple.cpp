// A plain, threaded matrix multiply: the correctness baseline of the engine.
#include <algorithm>
#include <vector>

#include "../core/thread_pool.h"
#include "gemm.h"

namespace rlfarm::cpu {

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  parallel_for(M, std::max<int64_t>(1, 65536 / std::max<int64_t>(1, N * K)), [&](int64_t m0, int64_t m1) {
    std::vector<float> row(N);
    for (int64_t i = m0; i < m1; ++i) {
      std::fill(row.begin(), row.end(), 0.0f);
      for (int64_t k = 0; k < K; ++k) {
        const float a = trans_a ? A[k * lda + i] : A[i * lda + k];
        if (trans_b) {
          for (int64_t j = 0; j < N; ++j) row[j] += a * B[j * ldb + k];
        } else {
          const float* b = B + k * ldb;
          for (int64_t j = 0; j < N; ++j) row[j] += a * b[j];
        }
      }
      float* c = C + i * ldc;
      for (int64_t j = 0; j < N; ++j) c[j] = alpha * row[j] + (beta == 0.0f ? 0.0f : beta * c[j]);
    }
  });
}

}  // namespace rlfarm::cpu
