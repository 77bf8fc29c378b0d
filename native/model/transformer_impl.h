// What the transformer's two source files share: transformer.cpp (forward,
// backward, the layer) and generate.cpp (sampling with a KV cache). Not for
// use outside native/model.
#pragma once

#include <cstdint>
#include <new>
#include <vector>

#include "../core/error.h"
#include "../cpu/gemm.h"
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

// Hugging Face's positions for padded batches: cumsum(mask) - 1, at least 0;
// valid[i] is 1 where the mask is (every token without a mask).
void positions_from_mask(const Tensor& mask, int64_t batch, int64_t steps, std::vector<int32_t>& positions,
                         std::vector<uint8_t>& valid);

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

  int64_t x_slot(int64_t i) const { return train ? i : 0; }
  int64_t layer_slot(int64_t l) const { return train ? l : 0; }
};

}  // namespace rlfarm::model
