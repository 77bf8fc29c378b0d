// CUDA kernels of the RLHF ops, one launch per op. Signatures and formulas are
// shared with the CPU backend (ops/kernels.h, ops/rl_math.h).
//
//  - log-probs: a block per row; each thread keeps an online (max, sum,
//    centered-sum) over 16-byte loads, merged across the warp with shuffles
//    and across warps through shared memory. The softmax is never stored.
//  - GAE: a warp per sequence, walking it back to front 32 steps at a time
//    with a shuffle scan of the affine maps A_t = a_t + b_t A_{t+1}.
//  - losses and whitening: one block with grid-stride loops and block-wide
//    reductions in double; these work on [B, T] tensors, small next to logits.
#include <cuda_bf16.h>

#include <cstdint>
#include <type_traits>

#include "../ops/kernels.h"
#include "../ops/cast_math.h"
#include "../ops/rl_math.h"
#include "check.h"
#include "reduce.cuh"

namespace rlfarm::cuda {
namespace {

constexpr int kWarp = 32;
constexpr float kExpMinF = -87.33654f;

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }
__device__ __forceinline__ float quiet_nan() { return __int_as_float(0x7fc00000); }

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ void store(float* p, float x) { *p = x; }
__device__ __forceinline__ void store(__nv_bfloat16* p, float x) { *p = __float2bfloat16_rn(x); }

template <typename M>
__device__ __forceinline__ bool mask_on(const void* mask, int64_t i) {
  return static_cast<const M*>(mask)[i] != M(0);
}

// Calls f.template operator()<M>() with the mask's element type.
template <typename F>
void with_mask(const MaskRef& mask, F&& f) {
  switch (mask.dtype) {
    case DType::f32: f(static_cast<const float*>(nullptr)); break;
    case DType::i32: f(static_cast<const int32_t*>(nullptr)); break;
    case DType::u8: f(static_cast<const uint8_t*>(nullptr)); break;
    default: fail("mask: unsupported dtype ", dtype_name(mask.dtype));
  }
}

// Calls f(T*, flag) with the logits' element type T (a null pointer as its tag)
// and a kernel's compile-time flag as std::true_type or std::false_type: the
// four instantiations of a row kernel over logits.
template <typename F>
void with_logits_and_flag(DType logits_dtype, bool flag, F&& f) {
  const auto with_flag = [&](auto flag_tag) {
    if (logits_dtype == DType::bf16) f(static_cast<__nv_bfloat16*>(nullptr), flag_tag);
    else f(static_cast<float*>(nullptr), flag_tag);
  };
  if (flag) with_flag(std::true_type{});
  else with_flag(std::false_type{});
}

// ---------------------------------------------------------------- reductions

using reduce::block_sum;  // reduce.cuh
using reduce::warp_sum;

// Online log-sum-exp state over x = z / T: max m, S = sum e^(x-m), C = sum e^(x-m) (x-m).
struct Lse {
  float m, s, c;
};

__device__ __forceinline__ Lse lse_merge(Lse a, Lse b, bool centered) {
  if (b.m > a.m) {
    Lse t = a;
    a = b;
    b = t;
  }
  // a.m is now the larger (or NaN, which propagates below).
  if (b.s == 0.0f) return a;
  const float shift = b.m - a.m;  // <= 0
  const float scale = __expf(shift);
  Lse out;
  out.m = a.m;
  out.s = a.s + b.s * scale;
  out.c = centered ? a.c + scale * (b.c + shift * b.s) : 0.0f;
  return out;
}

__device__ __forceinline__ void lse_add(Lse& st, float x, bool centered) {
  if (x == neg_inf()) return;  // contributes e^-inf = 0
  if (x == -neg_inf()) {
    st.s = quiet_nan();  // a +inf logit has no finite softmax (as on the CPU)
    return;
  }
  if (x > st.m) {
    if (st.s > 0.0f) {
      const float shift = st.m - x;
      const float scale = __expf(shift);
      if (centered) st.c = scale * (st.c + shift * st.s);
      st.s *= scale;
    }
    st.m = x;
    st.s += 1.0f;  // e^0; its centered term is 0
  } else {
    // Also taken by NaN x, so NaN reaches the sum.
    const float d = x - st.m;
    const float e = d < kExpMinF ? 0.0f : __expf(d);
    st.s += e;
    if (centered) st.c += e * fmaxf(d, kExpMinF);
  }
}

template <typename T>
struct Vec16;  // 16 bytes of T
template <>
struct Vec16<float> {
  static constexpr int n = 4;
  __device__ static void load(const float* p, float* out) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
  }
};
template <>
struct Vec16<__nv_bfloat16> {
  static constexpr int n = 8;
  __device__ static void load(const __nv_bfloat16* p, float* out) {
    const uint4 v = *reinterpret_cast<const uint4*>(p);
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      out[2 * i] = __uint_as_float(w[i] << 16);
      out[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
  }
};

// Splits a row into a scalar head up to 16-byte alignment, a vector body, and a tail.
template <typename T>
__device__ __forceinline__ void row_split(const T* z, int64_t vocab, int64_t& head, int64_t& body_end) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(z);
  const int64_t misalign = static_cast<int64_t>((16 - (addr & 15)) & 15) / static_cast<int64_t>(sizeof(T));
  head = misalign < vocab ? misalign : vocab;
  const int64_t body = (vocab - head) / Vec16<T>::n * Vec16<T>::n;
  body_end = head + body;
}

// Row statistics with the whole block; every thread gets the result.
template <typename T, bool kCentered>
__device__ Lse row_lse(const T* z, int64_t vocab, float inv_t) {
  __shared__ Lse warp_states[32];
  Lse st{neg_inf(), 0.0f, 0.0f};
  int64_t head, body_end;
  row_split(z, vocab, head, body_end);
  for (int64_t i = threadIdx.x; i < head; i += blockDim.x) lse_add(st, to_f32(z[i]) * inv_t, kCentered);
  constexpr int n = Vec16<T>::n;
  for (int64_t i = head + static_cast<int64_t>(threadIdx.x) * n; i < body_end; i += static_cast<int64_t>(blockDim.x) * n) {
    float x[n];
    Vec16<T>::load(z + i, x);
#pragma unroll
    for (int k = 0; k < n; ++k) lse_add(st, x[k] * inv_t, kCentered);
  }
  for (int64_t i = body_end + threadIdx.x; i < vocab; i += blockDim.x) lse_add(st, to_f32(z[i]) * inv_t, kCentered);
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    Lse other;
    other.m = __shfl_xor_sync(0xffffffffu, st.m, offset);
    other.s = __shfl_xor_sync(0xffffffffu, st.s, offset);
    other.c = __shfl_xor_sync(0xffffffffu, st.c, offset);
    st = lse_merge(st, other, kCentered);
  }
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = (blockDim.x + kWarp - 1) / kWarp;
  __syncthreads();
  if (lane == 0) warp_states[warp] = st;
  __syncthreads();
  Lse total = warp_states[0];
  for (int w = 1; w < warps; ++w) total = lse_merge(total, warp_states[w], kCentered);
  return total;
}

constexpr int kRowThreads = 256;

template <typename T, bool kEntropy>
__global__ void logprobs_kernel(LogprobsArgs a) {
  const int64_t row = blockIdx.x;
  const T* z = static_cast<const T*>(a.logits) + row * a.vocab;
  const Lse st = row_lse<T, kEntropy>(z, a.vocab, a.inv_temperature);
  if (threadIdx.x != 0) return;
  const int32_t y = a.targets[row];
  if (y < 0 || y >= a.vocab) {
    atomicMin(reinterpret_cast<int*>(a.bad_target), static_cast<int>(row));
    a.logp[row] = quiet_nan();
    if (kEntropy) a.entropy[row] = quiet_nan();
    return;
  }
  const float log_s = logf(st.s);
  a.logp[row] = to_f32(z[y]) * a.inv_temperature - (st.m + log_s);
  if (kEntropy) a.entropy[row] = log_s - st.c / st.s;
}

template <typename T, bool kEntropy>
__global__ void logprobs_backward_kernel(LogprobsBackwardArgs a) {
  const int64_t row = blockIdx.x;
  const T* z = static_cast<const T*>(a.logits) + row * a.vocab;
  T* dz = static_cast<T*>(a.dlogits) + row * a.vocab;
  const Lse st = row_lse<T, kEntropy>(z, a.vocab, a.inv_temperature);
  const float inv_t = a.inv_temperature;
  const float log_s = logf(st.s);
  const float lse = st.m + log_s;
  const float h = kEntropy ? log_s - st.c / st.s : 0.0f;
  const float g = a.grad_logp ? a.grad_logp[row] : 0.0f;
  const float gh = kEntropy ? a.grad_entropy[row] : 0.0f;
  const int32_t y = a.targets[row];
  const bool valid = y >= 0 && y < a.vocab;
  // Read before the row is written: dlogits may be the logits buffer itself.
  const float z_y = valid ? to_f32(z[y]) : 0.0f;
  __syncthreads();
  auto grad = [&](float zj) {
    const float lp = zj * inv_t - lse;
    const float p = lp < kExpMinF ? 0.0f : __expf(lp);
    float d = -g * p;
    if (kEntropy) d -= gh * p * (fmaxf(lp, kExpMinF) + h);
    if (lp != lp) d = lp;
    return d * inv_t;
  };
  for (int64_t i = threadIdx.x; i < a.vocab; i += blockDim.x) store(dz + i, grad(to_f32(z[i])));
  __syncthreads();  // the plain gradient of the target element is written before it is fixed up
  if (threadIdx.x != 0) return;
  if (!valid) {
    atomicMin(reinterpret_cast<int*>(a.bad_target), static_cast<int>(row));
    return;
  }
  const float lp_y = z_y * inv_t - lse;
  const float p_y = lp_y < kExpMinF ? 0.0f : expf(lp_y);
  float d_y = g * (1.0f - p_y);
  if (kEntropy) d_y -= gh * p_y * (fmaxf(lp_y, kExpMinF) + h);
  store(dz + y, d_y * inv_t);
}

// ---------------------------------------------------------------- GAE

constexpr int kGaeWarps = 4;

template <typename M>
__global__ void gae_kernel(GaeArgs a) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kGaeWarps + threadIdx.x / kWarp;
  if (row >= a.rows) return;
  const int64_t base = row * a.steps;
  const float gl = a.gamma * a.lambda;
  float carry_adv = 0.0f, carry_value = 0.0f;  // A and V*m just past the current chunk
  for (int64_t end = a.steps; end > 0; end -= kWarp) {
    const int64_t t = end - kWarp + lane;
    const bool in_range = t >= 0;
    const bool on = in_range && mask_on<M>(a.mask.data, base + t);
    const float v = on ? a.values[base + t] : 0.0f;
    const float r = on ? a.rewards[base + t] : 0.0f;
    float next_value = __shfl_down_sync(0xffffffffu, v, 1);  // v is already V*m
    if (lane == kWarp - 1) next_value = carry_value;
    // A_t = a_t + b_t A_{t+1}; masked steps are the constant map 0.
    float ca = on ? r + a.gamma * next_value - v : 0.0f;
    float cb = on ? gl : 0.0f;
    for (int offset = 1; offset < kWarp; offset *= 2) {
      const float pa = __shfl_down_sync(0xffffffffu, ca, offset);
      const float pb = __shfl_down_sync(0xffffffffu, cb, offset);
      if (lane + offset < kWarp) {
        ca = ca + cb * pa;
        cb = cb * pb;
      }
    }
    const float adv = ca + cb * carry_adv;
    if (in_range) {
      a.advantages[base + t] = on ? adv : 0.0f;
      a.returns[base + t] = on ? adv + v : 0.0f;
    }
    carry_adv = __shfl_sync(0xffffffffu, on ? adv : 0.0f, 0);
    carry_value = __shfl_sync(0xffffffffu, v, 0);
  }
}

// ---------------------------------------------------------------- whiten, KL

constexpr int kBlock = 1024;

template <typename M>
__global__ void whiten_kernel(WhitenArgs a) {
  __shared__ double scratch[32];
  double sum = 0.0, count = 0.0;
  for (int64_t i = threadIdx.x; i < a.n; i += blockDim.x) {
    if (mask_on<M>(a.mask.data, i)) {
      sum += a.x[i];
      count += 1.0;
    }
  }
  sum = block_sum(sum, scratch);
  count = block_sum(count, scratch);
  if (count == 0.0) {
    for (int64_t i = threadIdx.x; i < a.n; i += blockDim.x) a.out[i] = 0.0f;
    return;
  }
  const double mean = sum / count;
  double sq = 0.0;
  for (int64_t i = threadIdx.x; i < a.n; i += blockDim.x) {
    if (mask_on<M>(a.mask.data, i)) sq += (a.x[i] - mean) * (a.x[i] - mean);
  }
  sq = block_sum(sq, scratch);
  const double var = count > 1.0 ? sq / (count - 1.0) : 0.0;
  const double inv_std = rsqrt(var + 1e-8);
  const double shift = a.shift_mean ? 0.0 : mean;
  for (int64_t i = threadIdx.x; i < a.n; i += blockDim.x) {
    a.out[i] = mask_on<M>(a.mask.data, i) ? static_cast<float>((a.x[i] - mean) * inv_std + shift) : 0.0f;
  }
}

template <typename M>
__global__ void kl_kernel(KlPenaltyArgs a) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < a.n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const bool keep = mask_on<M>(a.mask.data, i);
    if (a.kl) a.kl[i] = keep ? math::kl_estimate(a.logp[i], a.ref_logp[i], a.estimator, a.clamp) : 0.0f;
    if (a.grad) a.grad[i] = keep ? math::kl_grad(a.logp[i], a.ref_logp[i], a.estimator, a.clamp) : 0.0f;
  }
}

__global__ void elementwise_kernel(ElementwiseArgs a) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < a.n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (a.op == ElementwiseOp::mul) a.out[i] = a.a[i] * a.b[i];
    else if (a.b == nullptr) a.out[i] = a.alpha * a.a[i];
    else a.out[i] = a.alpha * a.a[i] + a.beta * a.b[i];
  }
}

// A warp per row; the lanes' partial sums meet in a fixed shuffle order.
template <typename M>
__global__ void row_sum_kernel(RowSumArgs a) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (row >= a.rows) return;
  double sum = 0.0;
  for (int64_t c = lane; c < a.cols; c += kWarp) {
    const int64_t i = row * a.cols + c;
    if (a.mask.data == nullptr || mask_on<M>(a.mask.data, i)) sum += a.x[i];
  }
  sum = warp_sum(sum);
  if (lane == 0) a.out[row] = static_cast<float>(sum);
}

template <typename M>
__global__ void row_broadcast_kernel(RowBroadcastArgs a) {
  const int64_t n = a.rows * a.cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    a.out[i] = mask_on<M>(a.mask.data, i) ? a.values[i / a.cols] : 0.0f;
  }
}

template <typename M>
__global__ void shape_rewards_kernel(ShapeRewardsArgs a) {
  const int64_t n = a.rows * a.steps;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float kl = mask_on<M>(a.mask.data, i) ? math::kl_estimate(a.logp[i], a.ref_logp[i], a.estimator, a.clamp) : 0.0f;
    a.kl[i] = kl;
    a.rewards[i] = math::shaped_reward(kl, a.neg_kl_coef, mask_on<M>(a.last_mask.data, i), a.scores[i / a.steps]);
  }
}

// ---------------------------------------------------------------- losses

template <typename M>
__device__ int64_t row_tokens(const void* mask, int64_t row, int64_t steps, int lane) {
  int64_t n = 0;
  for (int64_t t = lane; t < steps; t += kWarp) n += mask_on<M>(mask, row * steps + t) ? 1 : 0;
  return warp_sum(n);
}

template <typename M>
__global__ void ppo_policy_kernel(PpoPolicyLossArgs a) {
  __shared__ double scratch[32];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
  // Pass 1: tokens and rows that have tokens.
  double tokens = 0.0, rows_with_tokens = 0.0;
  for (int64_t r = warp; r < a.rows; r += warps) {
    const int64_t n = row_tokens<M>(a.mask.data, r, a.steps, lane);
    if (lane == 0) {
      tokens += static_cast<double>(n);
      rows_with_tokens += n > 0 ? 1.0 : 0.0;
    }
  }
  tokens = block_sum(tokens, scratch);
  rows_with_tokens = block_sum(rows_with_tokens, scratch);
  // Pass 2: per-token loss and gradient with the aggregate's weight.
  double loss = 0.0, clipped = 0.0, dual = 0.0, kl = 0.0, low = 0.0, high = 0.0;
  for (int64_t r = warp; r < a.rows; r += warps) {
    const int64_t n = row_tokens<M>(a.mask.data, r, a.steps, lane);
    double weight = 0.0;
    if (n > 0) weight = a.aggregate == Aggregate::token_mean ? 1.0 / tokens : 1.0 / (double(n) * rows_with_tokens);
    for (int64_t t = lane; t < a.steps; t += kWarp) {
      const int64_t i = r * a.steps + t;
      if (!mask_on<M>(a.mask.data, i)) {
        a.grad[i] = 0.0f;
        continue;
      }
      const math::PpoToken tok =
          math::ppo_token(a.logp[i], a.old_logp[i], a.advantages[i], a.clip_low, a.clip_high, a.dual_clip);
      loss += weight * tok.loss;
      a.grad[i] = static_cast<float>(weight * tok.grad);
      clipped += tok.clipped ? 1.0 : 0.0;
      dual += tok.dual_clipped ? 1.0 : 0.0;
      kl += 0.5 * double(tok.log_ratio) * tok.log_ratio;
      low += tok.clipped_low ? 1.0 : 0.0;
      high += tok.clipped_high ? 1.0 : 0.0;
    }
  }
  loss = block_sum(loss, scratch);
  clipped = block_sum(clipped, scratch);
  dual = block_sum(dual, scratch);
  kl = block_sum(kl, scratch);
  low = block_sum(low, scratch);
  high = block_sum(high, scratch);
  if (threadIdx.x == 0) {
    const double per_token = tokens > 0.0 ? 1.0 / tokens : 0.0;
    a.stats[0] = static_cast<float>(loss);
    a.stats[1] = static_cast<float>(clipped * per_token);
    a.stats[2] = static_cast<float>(kl * per_token);
    a.stats[3] = static_cast<float>(dual * per_token);
    a.stats[4] = static_cast<float>(low * per_token);
    a.stats[5] = static_cast<float>(high * per_token);
  }
}

template <typename M>
__global__ void value_loss_kernel(ValueLossArgs a) {
  __shared__ double scratch[32];
  double tokens = 0.0;
  for (int64_t i = threadIdx.x; i < a.n; i += blockDim.x) tokens += mask_on<M>(a.mask.data, i) ? 1.0 : 0.0;
  tokens = block_sum(tokens, scratch);
  const double weight = tokens > 0.0 ? 1.0 / tokens : 0.0;
  double loss = 0.0, clipped = 0.0;
  for (int64_t i = threadIdx.x; i < a.n; i += blockDim.x) {
    if (!mask_on<M>(a.mask.data, i)) {
      a.grad[i] = 0.0f;
      continue;
    }
    const math::ValueToken tok = math::value_token(a.values[i], a.old_values[i], a.returns[i], a.clip);
    loss += tok.loss;
    clipped += tok.clipped ? 1.0 : 0.0;
    a.grad[i] = static_cast<float>(weight * tok.grad);
  }
  loss = block_sum(loss, scratch);
  clipped = block_sum(clipped, scratch);
  if (threadIdx.x == 0) {
    a.stats[0] = static_cast<float>(loss * weight);
    a.stats[1] = static_cast<float>(clipped * weight);
  }
}

// A pair loss over its batch (ops.dpoLoss, ops.rewardLoss): each pair's terms, then the mean loss and accuracy.
template <typename Args>
__global__ void pair_loss_kernel(Args a) {
  __shared__ double scratch[32];
  const double inv_batch = 1.0 / static_cast<double>(a.batch);
  double loss = 0.0, correct = 0.0, invalid = 0.0;
  for (int64_t i = threadIdx.x; i < a.batch; i += blockDim.x) {
    const math::PairTerms p = math::pair_terms(a, i, inv_batch);
    loss += p.loss;
    correct += p.correct;
    invalid += p.invalid;
  }
  loss = block_sum(loss, scratch);
  correct = block_sum(correct, scratch);
  invalid = block_sum(invalid, scratch);
  if (threadIdx.x == 0) {
    a.stats[0] = static_cast<float>(loss * inv_batch);
    a.stats[1] = static_cast<float>(correct * inv_batch);
    if constexpr (Args::kStats > 2) a.stats[2] = static_cast<float>(invalid);
  }
}

// ---------------------------------------------------------------- casts

// One thread: the order of the additions is the CPU's, so the bits are too.
__global__ void ordered_sum_kernel(OrderedSumArgs a) { *a.out = math::ordered_sum(a.x, a.n); }

__global__ void cast_kernel(CastArgs a) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < a.n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    math::cast_element(a, i);
  }
}

unsigned grid_for(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 4096 ? (blocks < 1 ? 1 : blocks) : 4096);
}

void check_rows(int64_t rows, const char* op) {
  RLF_CHECK(rows <= 0x7fffffff, op, ": ", rows, " rows exceed the CUDA grid limit");
}

}  // namespace

void logprobs(const LogprobsArgs& a) {
  check_rows(a.rows, "ops.logprobs");
  with_logits_and_flag(a.logits_dtype, a.entropy != nullptr, [&](auto* tag, auto entropy) {
    using T = std::remove_pointer_t<decltype(tag)>;
    logprobs_kernel<T, decltype(entropy)::value><<<static_cast<unsigned>(a.rows), kRowThreads>>>(a);
  });
  RLF_CUDA_CHECK_LAUNCH("logprobs");
}

void logprobs_backward(const LogprobsBackwardArgs& a) {
  check_rows(a.rows, "ops.logprobsBackward");
  with_logits_and_flag(a.logits_dtype, a.grad_entropy != nullptr, [&](auto* tag, auto grad_entropy) {
    using T = std::remove_pointer_t<decltype(tag)>;
    logprobs_backward_kernel<T, decltype(grad_entropy)::value><<<static_cast<unsigned>(a.rows), kRowThreads>>>(a);
  });
  RLF_CUDA_CHECK_LAUNCH("logprobsBackward");
}

void gae(const GaeArgs& a) {
  const int64_t blocks = (a.rows + kGaeWarps - 1) / kGaeWarps;
  check_rows(blocks, "ops.gae");
  with_mask(a.mask, [&](auto* tag) {
    using M = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    gae_kernel<M><<<static_cast<unsigned>(blocks), kGaeWarps * kWarp>>>(a);
  });
  RLF_CUDA_CHECK_LAUNCH("gae");
}

void whiten(const WhitenArgs& a) {
  with_mask(a.mask, [&](auto* tag) {
    using M = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    whiten_kernel<M><<<1, kBlock>>>(a);
  });
  RLF_CUDA_CHECK_LAUNCH("whiten");
}

void kl_penalty(const KlPenaltyArgs& a) {
  with_mask(a.mask, [&](auto* tag) {
    using M = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    kl_kernel<M><<<grid_for(a.n, 256), 256>>>(a);
  });
  RLF_CUDA_CHECK_LAUNCH("klPenalty");
}

void shape_rewards(const ShapeRewardsArgs& a) {
  with_mask(a.mask, [&](auto* tag) {
    using M = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    shape_rewards_kernel<M><<<grid_for(a.rows * a.steps, 256), 256>>>(a);
  });
  RLF_CUDA_CHECK_LAUNCH("shapeRewards");
}

void ppo_policy_loss(const PpoPolicyLossArgs& a) {
  with_mask(a.mask, [&](auto* tag) {
    using M = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    ppo_policy_kernel<M><<<1, kBlock>>>(a);
  });
  RLF_CUDA_CHECK_LAUNCH("ppoPolicyLoss");
}

void value_loss(const ValueLossArgs& a) {
  with_mask(a.mask, [&](auto* tag) {
    using M = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    value_loss_kernel<M><<<1, kBlock>>>(a);
  });
  RLF_CUDA_CHECK_LAUNCH("valueLoss");
}

void dpo_loss(const DpoLossArgs& a) {
  pair_loss_kernel<<<1, kBlock>>>(a);
  RLF_CUDA_CHECK_LAUNCH("dpoLoss");
}

void reward_loss(const RewardLossArgs& a) {
  pair_loss_kernel<<<1, kBlock>>>(a);
  RLF_CUDA_CHECK_LAUNCH("rewardLoss");
}

void elementwise(const ElementwiseArgs& a) {
  if (a.n == 0) return;
  elementwise_kernel<<<grid_for(a.n, 256), 256>>>(a);
  RLF_CUDA_CHECK_LAUNCH("elementwise");
}

void row_sum(const RowSumArgs& a) {
  if (a.rows == 0) return;
  constexpr int kWarpsPerBlock = 8;
  const int64_t blocks = (a.rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  check_rows(blocks, "ops.rowSum");
  const MaskRef any_mask = a.mask.data ? a.mask : MaskRef{nullptr, DType::u8};
  with_mask(any_mask, [&](auto* tag) {
    using M = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    row_sum_kernel<M><<<static_cast<unsigned>(blocks), kWarpsPerBlock * kWarp>>>(a);
  });
  RLF_CUDA_CHECK_LAUNCH("rowSum");
}

void row_broadcast(const RowBroadcastArgs& a) {
  if (a.rows * a.cols == 0) return;
  with_mask(a.mask, [&](auto* tag) {
    using M = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    row_broadcast_kernel<M><<<grid_for(a.rows * a.cols, 256), 256>>>(a);
  });
  RLF_CUDA_CHECK_LAUNCH("broadcastRows");
}

void ordered_sum(const OrderedSumArgs& a) {
  ordered_sum_kernel<<<1, 1>>>(a);
  RLF_CUDA_CHECK_LAUNCH("orderedSum");
}

void cast(const CastArgs& a) {
  if (a.n == 0) return;
  cast_kernel<<<grid_for(a.n, 256), 256>>>(a);
  RLF_CUDA_CHECK_LAUNCH("cast");
}

}  // namespace rlfarm::cuda
