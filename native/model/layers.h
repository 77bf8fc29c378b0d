// The building blocks of the CPU transformer, forward and backward, on raw
// row-major float buffers. Each splits its work over the thread pool with a
// partition that depends only on the shapes, and every reduction (weight and
// bias gradients) adds its partial sums in a fixed order, so results are
// bit-identical run to run.
#pragma once

#include <cstdint>
#include <vector>

#include "config.h"

namespace rlfarm::model {

// LayerNorm (with bias) when `b` is given, else RMSNorm. stats holds per row
// [mean, rstd] (mean unused for RMSNorm).
void norm_forward(const float* x, const float* w, const float* b, float* y, float* stats, int64_t rows, int64_t dim,
                  float eps);
// The forward's output again from its saved stats (for backward, which needs
// a norm's output but does not keep it).
void norm_reapply(const float* x, const float* w, const float* b, const float* stats, float* y, int64_t rows,
                  int64_t dim);
// dx, dw and db (when the forward had a bias) accumulate the gradients.
void norm_backward(const float* dy, const float* x, const float* w, bool has_bias, const float* stats, float* dx,
                   float* dw, float* db, int64_t rows, int64_t dim);

// db += sum over rows of dy[r, :]
void bias_grad(const float* dy, int64_t ld, float* db, int64_t rows, int64_t cols);

// x[i] = table[tokens[i]] (+ positions table[positions[i]]).
void embed(const int32_t* tokens, const int32_t* positions, const float* token_table, const float* position_table,
           float* x, int64_t rows, int64_t dim);
// table[ids[i]] += dx[i]
void embed_backward(const int32_t* ids, const float* dx, float* dtable, int64_t rows, int64_t dim);

void gelu(const float* x, float* y, int64_t n);
void gelu_backward(const float* x, const float* dy, float* dx, int64_t n);
// gate_up rows are [gate | up] (2 * hidden wide): y = silu(gate) * up.
void swiglu(const float* gate_up, float* y, int64_t rows, int64_t hidden);
void swiglu_backward(const float* gate_up, const float* dy, float* dgate_up, int64_t rows, int64_t hidden);

// cos and sin of position * inv_freq[i], for i < head_dim / 2, as Hugging Face
// computes them (including llama3 and linear rope scaling).
class RopeTable {
 public:
  explicit RopeTable(const ModelConfig& config);
  // Makes the table cover positions [0, n).
  void ensure(int64_t n);
  // Rotates `heads` consecutive head vectors in each row (rotate_half
  // convention); inverse rotates back (the backward of the forward rotation).
  void apply(float* x, int64_t rows, int64_t ld, int64_t heads, const int32_t* positions, bool inverse) const;
  // The tables, [positions covered, head_dim / 2] each (the CUDA engine copies them to the device).
  const float* cos_table() const { return cos_.data(); }
  const float* sin_table() const { return sin_.data(); }
  int64_t positions_covered() const { return size_; }

 private:
  int64_t head_dim_;
  std::vector<double> inv_freq_;
  std::vector<float> cos_, sin_;
  int64_t size_ = 0;
};

// Causal attention with a key mask, per (row b, head h):
//   S = scale * Q K^T; query i sits at slot query_slot[b] + i and sees keys at
//   slots <= its own whose key_valid entry is nonzero; O = softmax(S) V.
// Q row i of (b, h) is at q + b * q_batch + i * q_ld + h * head_dim; K and V
// rows of slot s for kv head g at k + b * kv_batch + s * kv_ld + g * head_dim.
struct AttentionArgs {
  int64_t batch, heads, kv_heads, head_dim;
  int64_t queries;        // per row
  int64_t key_slots;      // per row (key_valid is [batch, key_slots])
  const float* q;
  int64_t q_ld, q_batch;
  const float* k;
  const float* v;
  int64_t kv_ld, kv_batch;
  const int32_t* query_slot;  // [batch], null: 0
  const uint8_t* key_valid;   // [batch, key_slots], null: all valid
  float* out;                 // like q, with out_ld, out_batch
  int64_t out_ld, out_batch;
  float* lse;                 // [batch, heads, queries], or null
  float scale;
};
void attention_forward(const AttentionArgs& a);

// Gradients of attention_forward (queries == key_slots, query_slot 0): dq,
// dk, dv are written (not added), laid out like q, k, v.
struct AttentionGradArgs {
  AttentionArgs fwd;  // the forward's inputs, out and lse
  const float* dout;  // like out
  float* dq;
  float* dk;
  float* dv;  // dk, dv share kv_ld / kv_batch; dq uses q_ld / q_batch
};
void attention_backward(const AttentionGradArgs& a);

}  // namespace rlfarm::model
