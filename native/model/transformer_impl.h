// What the transformer's two source files share: transformer.cpp (forward,
// backward, the layer) and generate.cpp (sampling with a KV cache). Not for
// use outside native/model.
#pragma once

#include <cstdint>
#include <cstring>
#include <new>
#include <vector>

#include "../core/error.h"
#include "../cpu/gemm.h"
#include "block_impl.h"
#include "layers.h"
#include "transformer.h"

namespace rlfarm::model {

// Grows a buffer (never shrinks it), turning allocation failure into an Error.
template <typename V>
void reserve(V& v, size_t n, const char* what) {
  if (v.size() >= n) return;
  try {
    v.resize(n);
  } catch (const std::bad_alloc&) {
    fail("out of memory allocating ", what, " (", n * sizeof(typename V::value_type), " bytes)");
  }
}

// y[M, N] (+)= x[M, K] W^T (+ b) for W stored [N, K] and an optional bias b[N], as nn.Linear.
inline void linear(const float* x, int64_t M, int64_t K, const float* w, int64_t N, float* y, int64_t ldy,
                   bool accumulate, const float* b = nullptr) {
  cpu::sgemm_bias(false, true, M, N, K, 1.0f, x, K, w, K, accumulate ? 1.0f : 0.0f, y, ldy, b);
}


// The CPU's layer ops for block_forward and block_backward (block_impl.h).
struct CpuOps {
  const ModelConfig& c;
  const RopeTable& rope_table;

  void norm_forward(const float* x, const float* w, const float* b, float* y, float* stats, int64_t rows, int64_t dim,
                    float eps) {
    model::norm_forward(x, w, b, y, stats, rows, dim, eps);
  }
  void norm_reapply(const float* x, const float* w, const float* b, const float* stats, float* y, int64_t rows,
                    int64_t dim) {
    model::norm_reapply(x, w, b, stats, y, rows, dim);
  }
  void norm_backward(const float* dy, const float* x, const float* w, bool has_bias, const float* stats, float* dx,
                     float* dw, float* db, int64_t rows, int64_t dim) {
    model::norm_backward(dy, x, w, has_bias, stats, dx, dw, db, rows, dim);
  }
  void linear(const float* x, int64_t M, int64_t K, const float* w, int64_t N, float* y, int64_t ldy, bool accumulate,
              const float* b) {
    model::linear(x, M, K, w, N, y, ldy, accumulate, b);
  }
  void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
            int64_t ldb, float beta, float* C, int64_t ldc) {
    cpu::sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
  void bias_grad(const float* dy, int64_t ld, float* db, int64_t rows, int64_t cols) {
    model::bias_grad(dy, ld, db, rows, cols);
  }
  void rope(float* x, int64_t rows, int64_t ld, int64_t heads, const int32_t* positions, bool inverse) {
    rope_table.apply(x, rows, ld, heads, positions, inverse);
  }
  void attention_forward(const AttentionArgs& a) { model::attention_forward(a); }
  void attention_backward(const AttentionGradArgs& a) { model::attention_backward(a); }
  void gelu(const float* x, float* y, int64_t n) { model::gelu(x, y, n); }
  void gelu_backward(const float* x, const float* dy, float* dx, int64_t n) { model::gelu_backward(x, dy, dx, n); }
  void swiglu(const float* gu, float* y, int64_t rows, int64_t hidden) { model::swiglu(gu, y, rows, hidden); }
  void swiglu_backward(const float* gu, const float* dy, float* dgu, int64_t rows, int64_t hidden) {
    model::swiglu_backward(gu, dy, dgu, rows, hidden);
  }
  void copy(float* dst, const float* src, int64_t n) { std::memcpy(dst, src, sizeof(float) * n); }
  void store_kv(const float* qkv, int64_t batch, int64_t queries, float* cache_k, float* cache_v, int64_t slots,
                const int32_t* query_slot) {
    const int64_t kv = c.kv_dim(), qkv_dim = c.qkv_dim();
    for (int64_t r = 0; r < batch; ++r) {
      for (int64_t i = 0; i < queries; ++i) {
        const float* row = qkv + (r * queries + i) * qkv_dim;
        const int64_t slot = (query_slot != nullptr ? query_slot[r] : 0) + i;
        std::memcpy(cache_k + (r * slots + slot) * kv, row + c.q_dim(), sizeof(float) * kv);
        std::memcpy(cache_v + (r * slots + slot) * kv, row + c.q_dim() + kv, sizeof(float) * kv);
      }
    }
  }
};

struct Transformer::Saved {
  int64_t batch = 0, steps = 0, rows = 0;
  bool train = false;
  int64_t slices = 1;  // per-layer activation copies: layers when training, else 1
  std::vector<int32_t> tokens, positions;
  std::vector<uint8_t> key_valid;
  bool masked = false;
  // Residual stream: x_in of layer l at slot 2l, x_mid at 2l + 1, the final at
  // 2 layers (training); all in slot 0 when not training.
  Buffer x, stats;
  Buffer qkv, lse, att, pre;
  Buffer final_normed;
  Buffer normed, act;  // scratch
  // Backward's scratch, kept between calls (fresh pages cost more than the math).
  Buffer dnf, dx, dact, dpre, datt, dqkv, dhidden;
  // The LM head's chunk of gathered hidden states and logits, kept between
  // calls: fresh 2 MB pages each step cost a few percent of a small model's step.
  Buffer head_hidden, head_logits;
  float temperature = 1;
  bool entropy = false;
  bool action_values = false;  // values were on the log-prob grid

  int64_t x_slot(int64_t i) const { return train ? i : 0; }
  int64_t layer_slot(int64_t l) const { return train ? l : 0; }
};

}  // namespace rlfarm::model
