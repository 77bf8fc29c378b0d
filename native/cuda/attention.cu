// Attention kernels beside the reference (engine.cu): the fused causal kernel
// for forwards and prefills, and the decode kernel over a KV cache. Both keep
// the reference's masking (key j of query i is seen when j < query_slot + i + 1
// and key_valid allows it) and its log-sum-exp (-inf, and a zero output, when
// no key is seen), so the reference backward runs on their outputs.
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

template <int HD>
__global__ void __launch_bounds__(kFlashQueries) attention_flash_kernel(AttentionArgs a, int key_tile) {
  extern __shared__ float smem[];
  float* tile_k = smem;                   // [key_tile][HD]
  float* tile_v = smem + key_tile * HD;   // [key_tile][HD]
  uint8_t* tile_on = reinterpret_cast<uint8_t*>(tile_v + key_tile * HD);
  const int64_t hd = a.head_dim, H = a.heads, group = a.heads / a.kv_heads;
  const int64_t z = blockIdx.y, b = z / H, h = z % H, g = h / group;
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
    __syncthreads();  // the last tile is read
    for (int e = threadIdx.x; e < rows * HD; e += blockDim.x) {
      const int r = e / HD, c = e % HD;
      const int64_t at = (k0 + r) * a.kv_ld + c;
      tile_k[e] = c < hd ? k_base[at] : 0.0f;
      tile_v[e] = c < hd ? v_base[at] : 0.0f;
    }
    for (int r = threadIdx.x; r < rows; r += blockDim.x) tile_on[r] = valid == nullptr || valid[k0 + r] != 0;
    __syncthreads();
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

template <int HD>
void launch_flash(const FlashPlan& f, const AttentionArgs& a) {
  attention_flash_kernel<HD><<<dim3(static_cast<unsigned>(f.launch.grid_x), static_cast<unsigned>(f.launch.grid_y)),
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

bool attention_decode(const AttentionArgs& a) {
  if (a.queries != 1 || a.query_slot == nullptr) return false;
  const DecodePlan p = plan_decode_attention(a.batch * a.heads, a.key_slots);
  if (!p.supported) return false;
  attention_decode_kernel<<<static_cast<unsigned>(p.launch.grid_x), p.launch.block, p.launch.smem_bytes>>>(a);
  RLF_CUDA_CHECK_LAUNCH("decode attention");
  return true;
}

}  // namespace rlfarm::cuda
