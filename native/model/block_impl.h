// The transformer block, forward and backward, written once over a backend's
// layer ops: the CPU engine (transformer.cpp, generate.cpp) runs it with
// CpuOps (transformer_impl.h), the CUDA engine (cuda/engine.cu) with its own
// ops over device buffers. Pointers are on the backend's device; an Ops type
// provides, with the CPU's signatures (layers.h, cpu/gemm.h):
//   norm_forward, norm_reapply, norm_backward, linear, gemm (sgemm's
//   arguments), bias_grad, rope(x, rows, ld, heads, positions, inverse),
//   attention_forward, attention_backward, gelu, gelu_backward, swiglu,
//   swiglu_backward, copy(dst, src, n), and
//   store_kv(qkv, batch, queries, cache_k, cache_v, slots, query_slot).
// Plain C++ (nvcc compiles it as host code).
#pragma once

#include <cmath>
#include <cstdint>

#include "config.h"
#include "layers.h"
#include "layout.h"

namespace rlfarm::model {

// Attention of `queries` query rows per batch row, read from qkv rows. Keys and
// values come from the same qkv rows (cache_k null: a forward, or a prefill),
// or from one layer's cache of `slots` slots per row (a decoding step, whose
// queries sit at query_slot[b]).
inline AttentionArgs attention_args(const ModelConfig& c, int64_t batch, int64_t queries, const float* qkv,
                                    const uint8_t* key_valid, float* out, float* lse, const float* cache_k = nullptr,
                                    const float* cache_v = nullptr, int64_t slots = 0,
                                    const int32_t* query_slot = nullptr) {
  AttentionArgs a{};
  a.batch = batch;
  a.heads = c.heads;
  a.kv_heads = c.kv_heads;
  a.head_dim = c.head_dim;
  a.queries = queries;
  a.q = qkv;
  a.q_ld = c.qkv_dim();
  a.q_batch = queries * c.qkv_dim();
  if (cache_k == nullptr) {
    a.key_slots = queries;
    a.k = qkv + c.q_dim();
    a.v = qkv + c.q_dim() + c.kv_dim();
    a.kv_ld = c.qkv_dim();
    a.kv_batch = queries * c.qkv_dim();
  } else {
    a.key_slots = slots;
    a.k = cache_k;
    a.v = cache_v;
    a.kv_ld = c.kv_dim();
    a.kv_batch = slots * c.kv_dim();
    a.query_slot = query_slot;
  }
  a.key_valid = key_valid;
  a.out = out;
  a.out_ld = c.q_dim();
  a.out_batch = queries * c.q_dim();
  a.lse = lse;
  a.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  return a;
}

// The rows one pass of a block works on: `queries` rows for each of `batch`
// sequences, at `positions` [batch * queries]. With a cache (cache_k not
// null: this layer's [batch, slots, kv_dim] keys and values), this pass's
// keys and values are stored in it (query i of row b at slot query_slot[b] +
// i; query_slot null: slot i), and with read_cache attention reads every key
// from it (a decoding step) instead of from this pass's rows.
struct BlockStep {
  int64_t batch, queries;
  const int32_t* positions;
  const uint8_t* key_valid;  // [batch, key slots], or null: all valid
  float* cache_k;
  float* cache_v;
  int64_t slots;
  const int32_t* query_slot;
  bool read_cache;
};

// Where a block reads and writes: x_mid and x_out may be x_in (in place); lse
// may be null (not kept).
struct BlockBuffers {
  float *x_in, *x_mid, *x_out, *stats1, *stats2, *normed, *qkv, *att, *pre, *act, *lse;
};

// One transformer block (attention, then MLP, each with its residual).
template <typename Ops>
void block_forward(Ops& ops, const ModelConfig& c, const LayerOffsets& L, const float* P, const BlockStep& st,
                   const BlockBuffers& b) {
  const int64_t N = st.batch * st.queries, d = c.dim, qkv_dim = c.qkv_dim();
  const bool gpt2 = c.arch == Arch::gpt2;
  const int64_t up_width = gpt2 ? c.hidden : 2 * c.hidden;
  const auto opt = [&](size_t offset) { return offset == kNone ? nullptr : P + offset; };

  // Attention block.
  ops.norm_forward(b.x_in, P + L.norm1_w, opt(L.norm1_b), b.normed, b.stats1, N, d, c.norm_eps);
  ops.linear(b.normed, N, d, P + L.qkv_w, qkv_dim, b.qkv, qkv_dim, false, opt(L.qkv_b));
  if (!gpt2) {
    ops.rope(b.qkv, N, qkv_dim, c.heads, st.positions, false);
    ops.rope(b.qkv + c.q_dim(), N, qkv_dim, c.kv_heads, st.positions, false);
  }
  if (st.cache_k != nullptr) ops.store_kv(b.qkv, st.batch, st.queries, st.cache_k, st.cache_v, st.slots, st.query_slot);
  ops.attention_forward(st.read_cache ? attention_args(c, st.batch, st.queries, b.qkv, st.key_valid, b.att, b.lse,
                                                       st.cache_k, st.cache_v, st.slots, st.query_slot)
                                      : attention_args(c, st.batch, st.queries, b.qkv, st.key_valid, b.att, b.lse));
  if (b.x_mid != b.x_in) ops.copy(b.x_mid, b.x_in, N * d);
  ops.linear(b.att, N, c.q_dim(), P + L.out_w, d, b.x_mid, d, true, opt(L.out_b));

  // MLP block.
  ops.norm_forward(b.x_mid, P + L.norm2_w, opt(L.norm2_b), b.normed, b.stats2, N, d, c.norm_eps);
  ops.linear(b.normed, N, d, P + L.up_w, up_width, b.pre, up_width, false, opt(L.up_b));
  if (gpt2) ops.gelu(b.pre, b.act, N * c.hidden);
  else ops.swiglu(b.pre, b.act, N, c.hidden);
  if (b.x_out != b.x_mid) ops.copy(b.x_out, b.x_mid, N * d);
  ops.linear(b.act, N, c.hidden, P + L.down_w, d, b.x_out, d, true, opt(L.down_b));
}

// What a training forward kept of one block, [batch * steps] rows.
struct BlockSaved {
  int64_t batch, steps;
  const int32_t* positions;
  const uint8_t* key_valid;  // or null
  const float *x_in, *x_mid, *stats1, *stats2, *qkv, *lse, *att, *pre, *act;
};

// Gradient buffers: dx holds d loss / d x_out on entry and d loss / d x_in on
// return; the others are scratch of the block's widths.
struct BlockGrads {
  float *dx, *dn, *normed, *dact, *dpre, *datt, *dqkv;
};

// Gradients of block_forward: adds the parameter gradients into G.
template <typename Ops>
void block_backward(Ops& ops, const ModelConfig& c, const LayerOffsets& L, const float* P, float* G,
                    const BlockSaved& s, const BlockGrads& g) {
  const int64_t N = s.batch * s.steps, d = c.dim, T = s.steps;
  const bool gpt2 = c.arch == Arch::gpt2;
  const int64_t qkv_dim = c.qkv_dim(), up_width = gpt2 ? c.hidden : 2 * c.hidden;
  const auto opt = [&](size_t offset) { return offset == kNone ? nullptr : P + offset; };
  const auto gopt = [&](size_t offset) { return offset == kNone ? nullptr : G + offset; };

  // MLP block: x_out = x_mid + act W_down^T + b_down, act = f(pre), pre = norm2(x_mid) W_up^T + b_up.
  ops.norm_reapply(s.x_mid, P + L.norm2_w, opt(L.norm2_b), s.stats2, g.normed, N, d);
  ops.gemm(true, false, d, c.hidden, N, 1.0f, g.dx, d, s.act, c.hidden, 1.0f, G + L.down_w, c.hidden);
  if (L.down_b != kNone) ops.bias_grad(g.dx, d, G + L.down_b, N, d);
  ops.gemm(false, false, N, c.hidden, d, 1.0f, g.dx, d, P + L.down_w, c.hidden, 0.0f, g.dact, c.hidden);
  if (gpt2) ops.gelu_backward(s.pre, g.dact, g.dpre, N * c.hidden);
  else ops.swiglu_backward(s.pre, g.dact, g.dpre, N, c.hidden);
  ops.gemm(true, false, up_width, d, N, 1.0f, g.dpre, up_width, g.normed, d, 1.0f, G + L.up_w, d);
  if (L.up_b != kNone) ops.bias_grad(g.dpre, up_width, G + L.up_b, N, up_width);
  ops.gemm(false, false, N, d, up_width, 1.0f, g.dpre, up_width, P + L.up_w, d, 0.0f, g.dn, d);
  ops.norm_backward(g.dn, s.x_mid, P + L.norm2_w, L.norm2_b != kNone, s.stats2, g.dx, G + L.norm2_w, gopt(L.norm2_b), N,
                    d);

  // Attention block: x_mid = x_in + att W_out^T + b_out.
  ops.gemm(true, false, d, c.q_dim(), N, 1.0f, g.dx, d, s.att, c.q_dim(), 1.0f, G + L.out_w, c.q_dim());
  if (L.out_b != kNone) ops.bias_grad(g.dx, d, G + L.out_b, N, d);
  ops.gemm(false, false, N, c.q_dim(), d, 1.0f, g.dx, d, P + L.out_w, c.q_dim(), 0.0f, g.datt, c.q_dim());
  AttentionGradArgs ga{};
  ga.fwd = attention_args(c, s.batch, T, s.qkv, s.key_valid, const_cast<float*>(s.att), const_cast<float*>(s.lse));
  ga.dout = g.datt;
  ga.dq = g.dqkv;
  ga.dk = g.dqkv + c.q_dim();
  ga.dv = g.dqkv + c.q_dim() + c.kv_dim();
  ops.attention_backward(ga);
  if (!gpt2) {
    ops.rope(g.dqkv, N, qkv_dim, c.heads, s.positions, true);
    ops.rope(g.dqkv + c.q_dim(), N, qkv_dim, c.kv_heads, s.positions, true);
  }
  ops.norm_reapply(s.x_in, P + L.norm1_w, opt(L.norm1_b), s.stats1, g.normed, N, d);
  ops.gemm(true, false, qkv_dim, d, N, 1.0f, g.dqkv, qkv_dim, g.normed, d, 1.0f, G + L.qkv_w, d);
  if (L.qkv_b != kNone) ops.bias_grad(g.dqkv, qkv_dim, G + L.qkv_b, N, qkv_dim);
  ops.gemm(false, false, N, d, qkv_dim, 1.0f, g.dqkv, qkv_dim, P + L.qkv_w, d, 0.0f, g.dn, d);
  ops.norm_backward(g.dn, s.x_in, P + L.norm1_w, L.norm1_b != kNone, s.stats1, g.dx, G + L.norm1_w, gopt(L.norm1_b), N,
                    d);
}

}  // namespace rlfarm::model
