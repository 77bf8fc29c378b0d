// Attention kernels beside the reference (engine.cu): the fused causal kernel
// for forwards and prefills, and the decode kernel over a KV cache. Both keep
// the reference's masking (key j of query i is seen when j < query_slot + i + 1
// and key_valid allows it) and its log-sum-exp (-inf, and a zero output, when
// no key is seen), so the reference backward runs on their outputs.
//
// The fused backward (heads up to 64 wide) recomputes p from the forward's
// log-sum-exp in three passes: dQ a thread per query, dK and dV a thread per
// key over the queries of every head of its group (no atomics: each gradient
// row has one owner).
//
// Fused kernel: a thread per query, its query and output row in registers
// (the head width rounded up to a compiled tile, zero-padded), keys and values
// a tile at a time through shared memory (every thread reads the same key row:
// broadcast), scores folded by model::math::online_softmax_fold. fp32 SIMT: a
// first correct fused form; tensor-core tiles are the next step.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "../model/nn_math.h"
#include "attention.h"
#include "check.h"
#include "plan.h"
#include "reduce.cuh"

namespace rlfarm::cuda {
namespace {

using model::AttentionArgs;

// The (row, head) index of a block: plan.cpp's fold_yz puts it over y, then z.
__device__ __forceinline__ int64_t folded_yz() {
  return static_cast<int64_t>(blockIdx.y) + static_cast<int64_t>(blockIdx.z) * gridDim.y;
}

// Keys k0 .. k0 + rows of a (row, kv head) into shared memory, zero-padded to
// HD columns, with their validity. Every thread of the block calls it.
template <int HD>
__device__ void load_key_tile(const float* k_base, const float* v_base, const uint8_t* valid, int64_t ld, int64_t hd,
                              int64_t k0, int rows, float* tile_k, float* tile_v, uint8_t* tile_on) {
  __syncthreads();  // the last tile is read
  for (int e = threadIdx.x; e < rows * HD; e += blockDim.x) {
    const int r = e / HD, c = e % HD;
    const int64_t at = (k0 + r) * ld + c;
    tile_k[e] = c < hd ? k_base[at] : 0.0f;
    tile_v[e] = c < hd ? v_base[at] : 0.0f;
  }
  for (int r = threadIdx.x; r < rows; r += blockDim.x) tile_on[r] = valid == nullptr || valid[k0 + r] != 0;
  __syncthreads();
}

template <int HD>
__global__ void __launch_bounds__(kFlashQueries) attention_flash_kernel(AttentionArgs a, int key_tile) {
  extern __shared__ float smem[];
  float* tile_k = smem;                   // [key_tile][HD]
  float* tile_v = smem + key_tile * HD;   // [key_tile][HD]
  uint8_t* tile_on = reinterpret_cast<uint8_t*>(tile_v + key_tile * HD);
  const int64_t hd = a.head_dim, H = a.heads, group = a.heads / a.kv_heads;
  const int64_t z = folded_yz();
  if (z >= a.batch * H) return;  // past the last (row, head) of a folded grid: the whole block
  const int64_t b = z / H, h = z % H, g = h / group;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * blockDim.x, i = q0 + threadIdx.x;
  const bool active = i < a.queries;
  const int64_t first = a.query_slot != nullptr ? a.query_slot[b] : 0;
  const int64_t visible = active ? std::min(a.key_slots, first + i + 1) : 0;
  const int64_t last_query = std::min<int64_t>(q0 + blockDim.x, a.queries) - 1;
  const int64_t key_end = std::min(a.key_slots, first + last_query + 1);  // the block's furthest key

  float q[HD], acc[HD];
  const float* q_row = a.q + b * a.q_batch + i * a.q_ld + h * hd;
#pragma unroll
  for (int c = 0; c < HD; ++c) {
    q[c] = active && c < hd ? q_row[c] : 0.0f;
    acc[c] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  const float* k_base = a.k + b * a.kv_batch + g * hd;
  const float* v_base = a.v + b * a.kv_batch + g * hd;
  const uint8_t* valid = a.key_valid != nullptr ? a.key_valid + b * a.key_slots : nullptr;
  for (int64_t k0 = 0; k0 < key_end; k0 += key_tile) {
    const int rows = static_cast<int>(std::min<int64_t>(key_tile, key_end - k0));
    load_key_tile<HD>(k_base, v_base, valid, a.kv_ld, hd, k0, rows, tile_k, tile_v, tile_on);
    if (!active) continue;
    for (int r = 0; r < rows; ++r) {
      if (k0 + r >= visible || !tile_on[r]) continue;
      float dot = 0.0f;
#pragma unroll
      for (int c = 0; c < HD; ++c) dot += q[c] * tile_k[r * HD + c];
      float p;
      const float alpha = model::math::online_softmax_fold(m, l, dot * a.scale, p);
#pragma unroll
      for (int c = 0; c < HD; ++c) acc[c] = acc[c] * alpha + p * tile_v[r * HD + c];
    }
  }
  if (!active) return;
  float* out = a.out + b * a.out_batch + i * a.out_ld + h * hd;
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
  for (int c = 0; c < HD; ++c) {
    if (c < hd) out[c] = acc[c] * inv;
  }
  if (a.lse != nullptr) a.lse[z * a.queries + i] = l > 0.0f ? m + logf(l) : -INFINITY;
}

// A block per (row b, head h) of one query: scores of the row's cache slots in
// shared memory (a warp per key, lanes over the head), softmax, then a thread
// per output column over the values.
__global__ void __launch_bounds__(kDecodeThreads) attention_decode_kernel(AttentionArgs a) {
  extern __shared__ float scores[];  // [key_slots]
  __shared__ float scratch[32];
  const int64_t H = a.heads, z = blockIdx.x, b = z / H, h = z % H, g = h / (H / a.kv_heads), hd = a.head_dim;
  const int64_t visible = std::min<int64_t>(a.key_slots, static_cast<int64_t>(a.query_slot[b]) + 1);
  const float* q = a.q + b * a.q_batch + h * hd;
  const float* k_base = a.k + b * a.kv_batch + g * hd;
  const float* v_base = a.v + b * a.kv_batch + g * hd;
  const uint8_t* valid = a.key_valid != nullptr ? a.key_valid + b * a.key_slots : nullptr;
  const int lane = threadIdx.x % reduce::kWarp, warp = threadIdx.x / reduce::kWarp;
  const int warps = blockDim.x / reduce::kWarp;
  for (int64_t j = warp; j < visible; j += warps) {
    float s = 0.0f;
    for (int64_t c = lane; c < hd; c += reduce::kWarp) s += q[c] * k_base[j * a.kv_ld + c];
    s = reduce::warp_sum(s);
    if (lane == 0) scores[j] = valid == nullptr || valid[j] != 0 ? s * a.scale : -INFINITY;
  }
  __syncthreads();
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < visible; j += blockDim.x) m = fmaxf(m, scores[j]);
  m = reduce::block_max(m, scratch);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < visible; j += blockDim.x) {
    const float e = scores[j] == -INFINITY ? 0.0f : expf(scores[j] - m);
    scores[j] = e;
    sum += e;
  }
  sum = reduce::block_sum(sum, scratch);  // its barriers also publish the weights
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  float* out = a.out + b * a.out_batch + h * hd;
  for (int64_t c = threadIdx.x; c < hd; c += blockDim.x) {
    float o = 0.0f;
    for (int64_t j = 0; j < visible; ++j) o += scores[j] * v_base[j * a.kv_ld + c];
    out[c] = o * inv;
  }
  if (a.lse != nullptr && threadIdx.x == 0) a.lse[z] = sum > 0.0f ? m + logf(sum) : -INFINITY;
}

// dQ of the fused attention (training: queries are the keys, no query_slot):
// a thread per query with q, dO and dQ in registers, D = dO . O from its own
// rows, keys and values a tile at a time through shared memory. p is
// recomputed from the forward's log-sum-exp, dS = p (dO . v - D), dQ = scale dS K.
template <int HD>
__global__ void __launch_bounds__(kFlashQueries) attention_flash_dq_kernel(model::AttentionGradArgs ga, int key_tile) {
  const AttentionArgs& a = ga.fwd;
  extern __shared__ float smem[];
  float* tile_k = smem;
  float* tile_v = smem + key_tile * HD;
  uint8_t* tile_on = reinterpret_cast<uint8_t*>(tile_v + key_tile * HD);
  const int64_t hd = a.head_dim, H = a.heads, group = a.heads / a.kv_heads, T = a.queries;
  const int64_t z = folded_yz();
  if (z >= a.batch * H) return;  // past the last (row, head) of a folded grid: the whole block
  const int64_t b = z / H, h = z % H, g = h / group;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * blockDim.x, i = q0 + threadIdx.x;
  const bool active = i < T;
  const int64_t key_end = std::min<int64_t>(q0 + blockDim.x, T);
  float q[HD], d_out[HD], dq[HD];
  const float* q_row = a.q + b * a.q_batch + i * a.q_ld + h * hd;
  const float* o_row = a.out + b * a.out_batch + i * a.out_ld + h * hd;
  const float* do_row = ga.dout + b * a.out_batch + i * a.out_ld + h * hd;
  float delta = 0.0f;
#pragma unroll
  for (int c = 0; c < HD; ++c) {
    q[c] = active && c < hd ? q_row[c] : 0.0f;
    d_out[c] = active && c < hd ? do_row[c] : 0.0f;
    delta += active && c < hd ? d_out[c] * o_row[c] : 0.0f;
    dq[c] = 0.0f;
  }
  const float lse = active ? a.lse[z * T + i] : -INFINITY;
  const float* k_base = a.k + b * a.kv_batch + g * hd;
  const float* v_base = a.v + b * a.kv_batch + g * hd;
  const uint8_t* valid = a.key_valid != nullptr ? a.key_valid + b * T : nullptr;
  for (int64_t k0 = 0; k0 < key_end; k0 += key_tile) {
    const int rows = static_cast<int>(std::min<int64_t>(key_tile, key_end - k0));
    load_key_tile<HD>(k_base, v_base, valid, a.kv_ld, hd, k0, rows, tile_k, tile_v, tile_on);
    if (!active || lse == -INFINITY) continue;
    for (int r = 0; r < rows; ++r) {
      if (k0 + r > i || !tile_on[r]) continue;
      float s = 0.0f, dp = 0.0f;
#pragma unroll
      for (int c = 0; c < HD; ++c) {
        s += q[c] * tile_k[r * HD + c];
        dp += d_out[c] * tile_v[r * HD + c];
      }
      const float ds = expf(s * a.scale - lse) * (dp - delta);
#pragma unroll
      for (int c = 0; c < HD; ++c) dq[c] += ds * tile_k[r * HD + c];
    }
  }
  if (!active) return;
  float* dq_row = ga.dq + b * a.q_batch + i * a.q_ld + h * hd;
#pragma unroll
  for (int c = 0; c < HD; ++c) {
    if (c < hd) dq_row[c] = dq[c] * a.scale;
  }
}

// dK (KEYS true) or dV of the fused attention: a thread per key j of kv head g
// with k (and v) and the gradient in registers, walking the queries that see
// it (i >= j) of every head of the group, a tile at a time through shared
// memory: dV += p dO_i; dK += scale p (dO_i . v - D_i) q_i.
template <int HD, bool KEYS>
__global__ void __launch_bounds__(kFlashQueries) attention_flash_dkv_kernel(model::AttentionGradArgs ga, int query_tile) {
  const AttentionArgs& a = ga.fwd;
  extern __shared__ float smem[];
  float* tile_q = smem;                        // Q rows
  float* tile_do = smem + query_tile * HD;     // dO rows
  float* tile_lse = tile_do + query_tile * HD;
  float* tile_delta = tile_lse + query_tile;
  const int64_t hd = a.head_dim, H = a.heads, G = a.kv_heads, group = H / G, T = a.queries;
  const int64_t z = folded_yz();
  if (z >= a.batch * G) return;  // past the last (row, kv head) of a folded grid: the whole block
  const int64_t b = z / G, g = z % G;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * blockDim.x, j = j0 + threadIdx.x;
  const bool active = j < T && (a.key_valid == nullptr || a.key_valid[b * T + j] != 0);
  float k[HD], v[HD], grad[HD];
  const float* k_row = a.k + b * a.kv_batch + j * a.kv_ld + g * hd;
  const float* v_row = a.v + b * a.kv_batch + j * a.kv_ld + g * hd;
#pragma unroll
  for (int c = 0; c < HD; ++c) {
    k[c] = active && c < hd ? k_row[c] : 0.0f;
    v[c] = KEYS && active && c < hd ? v_row[c] : 0.0f;
    grad[c] = 0.0f;
  }
  for (int64_t h = g * group; h < (g + 1) * group; ++h) {
    const int64_t zh = b * H + h;
    for (int64_t i0 = j0; i0 < T; i0 += query_tile) {  // queries before the block's first key see none of its keys
      const int rows = static_cast<int>(std::min<int64_t>(query_tile, T - i0));
      __syncthreads();
      for (int e = threadIdx.x; e < rows * HD; e += blockDim.x) {
        const int r = e / HD, c = e % HD;
        const int64_t at = b * a.out_batch + (i0 + r) * a.out_ld + h * hd + c;
        tile_do[e] = c < hd ? ga.dout[at] : 0.0f;
        tile_q[e] = c < hd ? a.q[b * a.q_batch + (i0 + r) * a.q_ld + h * hd + c] : 0.0f;
      }
      for (int r = threadIdx.x; r < rows; r += blockDim.x) {
        tile_lse[r] = a.lse[zh * T + i0 + r];
        if (KEYS) {
          float delta = 0.0f;
          const int64_t at = b * a.out_batch + (i0 + r) * a.out_ld + h * hd;
          for (int64_t c = 0; c < hd; ++c) delta += ga.dout[at + c] * a.out[at + c];
          tile_delta[r] = delta;
        }
      }
      __syncthreads();
      if (!active) continue;
      for (int r = 0; r < rows; ++r) {
        if (i0 + r < j || tile_lse[r] == -INFINITY) continue;
        float s = 0.0f;
#pragma unroll
        for (int c = 0; c < HD; ++c) s += tile_q[r * HD + c] * k[c];
        const float p = expf(s * a.scale - tile_lse[r]);
        if (KEYS) {
          float dp = 0.0f;
#pragma unroll
          for (int c = 0; c < HD; ++c) dp += tile_do[r * HD + c] * v[c];
          const float ds = p * (dp - tile_delta[r]);
#pragma unroll
          for (int c = 0; c < HD; ++c) grad[c] += ds * tile_q[r * HD + c];
        } else {
#pragma unroll
          for (int c = 0; c < HD; ++c) grad[c] += p * tile_do[r * HD + c];
        }
      }
    }
  }
  if (j >= T) return;
  float* out = (KEYS ? ga.dk : ga.dv) + b * a.kv_batch + j * a.kv_ld + g * hd;
#pragma unroll
  for (int c = 0; c < HD; ++c) {
    if (c < hd) out[c] = KEYS ? grad[c] * a.scale : grad[c];  // zero for a masked key
  }
}

template <int HD>
void launch_flash_backward(const FlashBackwardPlan& p, const model::AttentionGradArgs& ga) {
  const auto grid = [](const Launch& l) {
    return dim3(static_cast<unsigned>(l.grid_x), static_cast<unsigned>(l.grid_y), static_cast<unsigned>(l.grid_z));
  };
  attention_flash_dq_kernel<HD><<<grid(p.dq), p.dq.block, p.dq.smem_bytes>>>(ga, p.tile);
  RLF_CUDA_CHECK_LAUNCH("fused attention backward (dQ)");
  attention_flash_dkv_kernel<HD, true><<<grid(p.dkv), p.dkv.block, p.dkv.smem_bytes>>>(ga, p.tile);
  RLF_CUDA_CHECK_LAUNCH("fused attention backward (dK)");
  attention_flash_dkv_kernel<HD, false><<<grid(p.dkv), p.dkv.block, p.dkv.smem_bytes>>>(ga, p.tile);
  RLF_CUDA_CHECK_LAUNCH("fused attention backward (dV)");
}

template <int HD>
void launch_flash(const FlashPlan& f, const AttentionArgs& a) {
  attention_flash_kernel<HD><<<dim3(static_cast<unsigned>(f.launch.grid_x), static_cast<unsigned>(f.launch.grid_y),
                                    static_cast<unsigned>(f.launch.grid_z)),
                               f.launch.block, f.launch.smem_bytes>>>(a, f.key_tile);
}

}  // namespace

bool attention_flash(const AttentionArgs& a) {
  const FlashPlan f = plan_flash_attention(a.queries, a.head_dim, a.batch * a.heads);
  switch (f.head_dim_tile) {
    case 16: launch_flash<16>(f, a); break;
    case 32: launch_flash<32>(f, a); break;
    case 64: launch_flash<64>(f, a); break;
    case 128: launch_flash<128>(f, a); break;
    default: return false;
  }
  RLF_CUDA_CHECK_LAUNCH("fused attention");
  return true;
}

bool attention_flash_backward(const model::AttentionGradArgs& ga) {
  const AttentionArgs& a = ga.fwd;
  if (a.query_slot != nullptr || a.key_slots != a.queries || a.lse == nullptr) return false;
  const FlashBackwardPlan p = plan_flash_attention_backward(a.queries, a.head_dim, a.batch, a.heads, a.kv_heads);
  switch (p.head_dim_tile) {
    case 16: launch_flash_backward<16>(p, ga); return true;
    case 32: launch_flash_backward<32>(p, ga); return true;
    case 64: launch_flash_backward<64>(p, ga); return true;
    default: return false;
  }
}

bool attention_decode(const AttentionArgs& a) {
  if (a.queries != 1 || a.query_slot == nullptr) return false;
  const DecodePlan p = plan_decode_attention(a.batch * a.heads, a.key_slots);
  if (!p.supported) return false;
  attention_decode_kernel<<<static_cast<unsigned>(p.launch.grid_x), p.launch.block, p.launch.smem_bytes>>>(a);
  RLF_CUDA_CHECK_LAUNCH("decode attention");
  return true;
}

}  // namespace rlfarm::cuda
