// The sampler of generation on the device: a block per row runs
// model/sampling_math.h's rules, the rules the CPU's sample_token runs.
//  - argmax (first on ties) by a block reduction;
//  - the chunk masses in parallel, a thread per chunk, each summed in index
//    order as on the host; thread 0 adds them in chunk order and walks the
//    inverse CDF (sampling::pick_by_index);
//  - with top-k or top-p, the row's candidates are sorted by (logit
//    descending, index ascending) with a bitonic sort of 64-bit keys in device
//    scratch, and thread 0 cuts and picks over that order as the host does.
#include <cuda_runtime.h>

#include "../model/sampling_math.h"
#include "attention.h"
#include "check.h"
#include "plan.h"

namespace rlfarm::cuda {
namespace {

namespace sm = model::sampling;

// Ascending keys order candidates as sampling::ranks_before: logit descending, then index.
__device__ __forceinline__ uint64_t rank_key(float v, int32_t index) {
  if (v == 0.0f) v = 0.0f;  // -0 ties with +0, as on the host
  const uint32_t bits = __float_as_uint(v);
  const uint32_t ascending = (bits & 0x80000000u) != 0 ? ~bits : (bits | 0x80000000u);
  return (static_cast<uint64_t>(~ascending) << 32) | static_cast<uint32_t>(index);
}

__global__ void __launch_bounds__(kSampleThreads) sample_kernel(SampleArgs a) {
  extern __shared__ double masses[];  // [mass_chunks(vocab)]
  __shared__ float best_value[kSampleThreads];
  __shared__ int32_t best_index[kSampleThreads];
  const int64_t b = blockIdx.x, V = a.vocab;
  const int tid = threadIdx.x;
  if (a.finished[b] != 0) {  // the same for every thread of the block
    if (tid == 0) a.step_tokens[b] = a.pad_token;
    return;
  }
  const float* row = a.logits + b * V;

  // Argmax, the first index on ties.
  float bv = 0.0f;
  int32_t bi = -1;
  for (int64_t j = tid; j < V; j += blockDim.x) {
    if (bi < 0 || row[j] > bv) {
      bv = row[j];
      bi = static_cast<int32_t>(j);
    }
  }
  best_value[tid] = bv;
  best_index[tid] = bi;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (tid < half) {
      const float ov = best_value[tid + half];
      const int32_t oi = best_index[tid + half];
      const int32_t mi = best_index[tid];
      if (oi >= 0 && (mi < 0 || ov > best_value[tid] || (ov == best_value[tid] && oi < mi))) {
        best_value[tid] = ov;
        best_index[tid] = oi;
      }
    }
    __syncthreads();
  }
  const int32_t best = best_index[0];
  const double inv_t = sm::inverse_temperature(a.temperature);
  const double max = row[best] * inv_t;
  const int64_t chunks = sm::mass_chunks(V);
  for (int64_t c = tid; c < chunks; c += blockDim.x) masses[c] = sm::chunk_mass(row, V, c, inv_t, max);

  const bool truncated = a.temperature != 0.0f && sm::truncates(a.top_k, a.top_p, V);
  uint64_t* keys = truncated ? a.sort_keys + b * a.sort_width : nullptr;
  int32_t* order = truncated ? a.order + b * V : nullptr;
  if (truncated) {
    const int64_t n = a.sort_width;
    for (int64_t i = tid; i < n; i += blockDim.x) keys[i] = i < V ? rank_key(row[i], static_cast<int32_t>(i)) : ~0ull;
    __syncthreads();
    for (int64_t k = 2; k <= n; k <<= 1) {
      for (int64_t j = k >> 1; j > 0; j >>= 1) {
        for (int64_t i = tid; i < n; i += blockDim.x) {
          const int64_t partner = i ^ j;
          if (partner > i) {
            const uint64_t x = keys[i], y = keys[partner];
            if ((x > y) == ((i & k) == 0)) {
              keys[i] = y;
              keys[partner] = x;
            }
          }
        }
        __syncthreads();  // orders the block's global writes between passes
      }
    }
    for (int64_t i = tid; i < V; i += blockDim.x) order[i] = static_cast<int32_t>(keys[i] & 0xffffffffu);
  }
  __syncthreads();
  if (tid != 0) return;

  const double sum = sm::total_mass(masses, chunks);
  const double lse = max + log(sum);
  int32_t token = best;
  if (a.temperature != 0.0f) {
    const double u = sm::uniform_draw(a.seeds[b], static_cast<uint64_t>(a.step));
    if (!truncated) {
      token = sm::pick_by_index(row, V, masses, inv_t, max, u * sum, best);
    } else {
      int64_t keep = sm::top_k_keep(a.top_k, V);
      if (a.top_p < 1.0f) {
        bool reached = false;
        const int64_t n = sm::nucleus_size(row, order, keep, inv_t, max, a.top_p * sum, reached);
        keep = n < 1 ? 1 : (n < keep ? n : keep);
      }
      token = sm::pick_in_order(row, order, keep, inv_t, max, u);
    }
  }
  a.step_tokens[b] = token;
  a.out_tokens[b * a.new_tokens + a.step] = token;
  a.out_logprobs[b * a.new_tokens + a.step] = sm::token_logprob(row[token], inv_t, lse);
  a.lengths[b] = static_cast<int32_t>(a.step + 1);
  for (int64_t s = 0; s < a.stop_count; ++s) {
    if (a.stop_tokens[s] == token) a.finished[b] = 1;
  }
}

}  // namespace

void sample_tokens(const SampleArgs& a) {
  const bool truncate = a.temperature != 0.0f && model::sampling::truncates(a.top_k, a.top_p, a.vocab);
  const SamplePlan p = plan_sampling(a.vocab, a.batch, truncate);
  RLF_CHECK(!truncate || (a.sort_keys != nullptr && a.order != nullptr && a.sort_width == p.sort_width),
            "sampling: top-k / top-p need the planned sort scratch");
  sample_kernel<<<static_cast<unsigned>(p.launch.grid_x), p.launch.block, p.launch.smem_bytes>>>(a);
  RLF_CUDA_CHECK_LAUNCH("sampling");
}

}  // namespace rlfarm::cuda
