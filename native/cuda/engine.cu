// The CUDA engine (engine.h): layer kernels, the CUDA ops that run
// model/block_impl.h's transformer block, the chunked classifier and AdamW.
//
//  - Norms, softmax rows and the classifier: a block per row, reductions in
//    fp32 through reduce.cuh. Parameter-gradient column sums (norm weights,
//    biases, embeddings) take a thread per column walking the rows in order,
//    so they are deterministic.
//  - GEMMs go through gemm (gemm.cu), in bf16 precision with the bf16 working
//    copy of the weights and tensor cores, else in fp32.
//  - Attention forward runs the fused causal kernel, and a decoding step the
//    decode kernel over the KV cache (attention.cu); the reference form stays
//    beside them (RLFARM_CUDA_ATTENTION=reference, and heads wider than 128):
//    batched GEMMs for the scores (a batch over (row, head), the kv head of a
//    group read in place), a masked softmax that keeps the log-sum-exp, and a
//    batched GEMM with V. The backward runs the fused backward (heads up to
//    64 wide) or the reference form, which recomputes the probabilities from
//    its own scores.
//  - generate(): prefill and decoding steps through the same block with a KV
//    cache on the device, and the sampler (sampling.cu) on the device.
//  - The LM head takes target rows a chunk at a time (plan_engine's
//    head_chunk_rows): gather, logits GEMM, then the log-prob kernel of the
//    ops (kernels.cu); backward turns the chunk's logits into dlogits in place.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../core/cuda_runtime.h"
#include "../core/error.h"
#include "../model/block_impl.h"
#include "../model/nn_math.h"
#include "../model/sampling_math.h"
#include "../ops/kernels.h"
#include "attention.h"
#include "check.h"
#include "cublaslt.h"
#include "engine.h"
#include "plan.h"
#include "reduce.cuh"

namespace rlfarm::cuda {
namespace {

using model::AttentionArgs;
using model::AttentionGradArgs;
using model::kNone;
using reduce::block_sum;

constexpr float kNegInf = -INFINITY;

// A 1-D grid of n blocks (one per row): gridDim.x holds 2^31 - 1, and a
// silently truncated grid would leave rows uncomputed.
dim3 grid1(int64_t n) {
  RLF_CHECK(n <= 0x7fffffff, "cuda: ", n, " rows exceed a grid's 2^31 - 1 blocks");
  return dim3(static_cast<unsigned>(std::max<int64_t>(n, 1)));
}

// A grow-only device allocation.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { release(); }

  void reserve(int device, size_t bytes, const char* what) {
    if (bytes <= bytes_) return;
    release();
    try {
      ptr_ = cuda::malloc(device, bytes);
    } catch (const Error& e) {
      fail(what, ": ", e.what());
    }
    bytes_ = bytes;
    device_ = device;
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  bool empty() const { return ptr_ == nullptr; }

 private:
  void release() {
    if (ptr_ != nullptr) cuda::free(device_, ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  int device_ = 0;
};

// ------------------------------------------------------------------ kernels

__global__ void embed_kernel(const int32_t* tokens, const int32_t* positions, const float* token_table,
                             const float* position_table, float* x, int64_t dim) {
  const int64_t r = blockIdx.x;
  const float* t = token_table + static_cast<int64_t>(tokens[r]) * dim;
  const float* p = position_table ? position_table + static_cast<int64_t>(positions[r]) * dim : nullptr;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) x[r * dim + j] = p ? t[j] + p[j] : t[j];
}

// table[ids[r]] += dx[r] for every row, given the rows sorted stably by id: the
// block of a run's first row adds the run's rows in row order (the CPU's order
// of additions), a thread per column; the other blocks have nothing to do.
__global__ void embed_runs_kernel(const int32_t* sorted_ids, const int32_t* sorted_rows, const float* dx, float* table,
                                  int64_t rows, int64_t dim) {
  const int64_t i = blockIdx.x;
  const int32_t id = sorted_ids[i];
  if (i > 0 && sorted_ids[i - 1] == id) return;
  float* out = table + static_cast<int64_t>(id) * dim;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
    float t = out[j];
    for (int64_t k = i; k < rows && sorted_ids[k] == id; ++k) t += dx[static_cast<int64_t>(sorted_rows[k]) * dim + j];
    out[j] = t;
  }
}

// The terms whose column sums a backward needs (plan_column_sums): a bias's
// gradient sums dy; a norm's weight gradient sums dy * xhat and its bias's dy.
struct BiasTerm {
  const float* dy;
  int64_t ld;
  static constexpr int kSums = 1;
  __device__ void operator()(int64_t r, int64_t j, float* out) const { out[0] = dy[r * ld + j]; }
};
struct NormTerm {
  const float *dy, *x, *stats;
  bool has_bias;
  int64_t dim;
  static constexpr int kSums = 2;
  __device__ void operator()(int64_t r, int64_t j, float* out) const {
    const float mean = has_bias ? stats[2 * r] : 0.0f;
    const float g = dy[r * dim + j];
    out[0] = g * ((x[r * dim + j] - mean) * stats[2 * r + 1]);
    out[1] = g;
  }
};

// partial[chunk, s, j] = the sum of term s over the chunk's rows of column j:
// lane y adds rows y, y + 8, ... in order, then the 8 lanes' sums are added in
// lane order. Block (32 columns, 8 lanes); grid (column tiles, chunks).
template <typename Term>
__global__ void column_partials_kernel(Term term, int64_t rows, int64_t cols, int64_t chunk_rows, float* partial) {
  __shared__ float lanes[Term::kSums][kColumnLanes][kColumnTile];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kColumnTile + threadIdx.x;
  const int64_t chunk = static_cast<int64_t>(blockIdx.y);
  const int64_t begin = chunk * chunk_rows, end = begin + chunk_rows < rows ? begin + chunk_rows : rows;
  float acc[Term::kSums] = {};
  if (j < cols) {
    for (int64_t r = begin + threadIdx.y; r < end; r += kColumnLanes) {
      float v[Term::kSums];
      term(r, j, v);
      for (int s = 0; s < Term::kSums; ++s) acc[s] += v[s];
    }
  }
  for (int s = 0; s < Term::kSums; ++s) lanes[s][threadIdx.y][threadIdx.x] = acc[s];
  __syncthreads();
  if (threadIdx.y == 0 && j < cols) {
    for (int s = 0; s < Term::kSums; ++s) {
      float total = 0.0f;
      for (int y = 0; y < kColumnLanes; ++y) total += lanes[s][y][threadIdx.x];
      partial[(chunk * Term::kSums + s) * cols + j] = total;
    }
  }
}

// out_s[j] += the chunks' partial sums of column j, in chunk order (out_s may be null: not wanted).
__global__ void column_finish_kernel(const float* partial, int64_t chunks, int64_t cols, int sums, float* out0,
                                     float* out1) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= cols * sums) return;
  const int s = static_cast<int>(i / cols);
  const int64_t j = i % cols;
  float* out = s == 0 ? out0 : out1;
  if (out == nullptr) return;
  float total = 0.0f;
  for (int64_t c = 0; c < chunks; ++c) total += partial[(c * sums + s) * cols + j];
  out[j] += total;
}

// LayerNorm (b given) or RMSNorm over a row; stats = [mean, rstd].
__global__ void norm_forward_kernel(const float* x, const float* w, const float* b, float* y, float* stats,
                                    int64_t dim, float eps) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const float* xr = x + r * dim;
  float mean = 0.0f;
  if (b != nullptr) {
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) s += xr[j];
    mean = block_sum(s, scratch) / static_cast<float>(dim);
  }
  float sq = 0.0f;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) sq += (xr[j] - mean) * (xr[j] - mean);
  const float rstd = 1.0f / sqrtf(block_sum(sq, scratch) / static_cast<float>(dim) + eps);
  if (threadIdx.x == 0) {
    stats[2 * r] = mean;
    stats[2 * r + 1] = rstd;
  }
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
    y[r * dim + j] = b != nullptr ? (xr[j] - mean) * rstd * w[j] + b[j] : w[j] * (xr[j] * rstd);
  }
}

__global__ void norm_reapply_kernel(const float* x, const float* w, const float* b, const float* stats, float* y,
                                    int64_t dim) {
  const int64_t r = blockIdx.x;
  const float m = stats[2 * r], rstd = stats[2 * r + 1];
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
    const float xv = x[r * dim + j];
    y[r * dim + j] = b != nullptr ? (xv - m) * rstd * w[j] + b[j] : w[j] * (xv * rstd);
  }
}

__global__ void norm_backward_kernel(const float* dy, const float* x, const float* w, bool has_bias,
                                     const float* stats, float* dx, int64_t dim) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const float mean = has_bias ? stats[2 * r] : 0.0f, rstd = stats[2 * r + 1];
  float g_sum = 0.0f, gx_sum = 0.0f;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
    const float g = dy[r * dim + j] * w[j];
    g_sum += g;
    gx_sum += g * ((x[r * dim + j] - mean) * rstd);
  }
  g_sum = block_sum(g_sum, scratch);
  gx_sum = block_sum(gx_sum, scratch);
  const float gm = has_bias ? g_sum / static_cast<float>(dim) : 0.0f, gxm = gx_sum / static_cast<float>(dim);
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
    const float xhat = (x[r * dim + j] - mean) * rstd;
    dx[r * dim + j] += rstd * (dy[r * dim + j] * w[j] - gm - xhat * gxm);
  }
}

#define RLF_GRID_STRIDE(i, n) \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += static_cast<int64_t>(gridDim.x) * blockDim.x)

__global__ void iota_kernel(int32_t* out, int64_t n) {
  RLF_GRID_STRIDE(i, n) out[i] = static_cast<int32_t>(i);
}

__global__ void gelu_kernel(const float* x, float* y, int64_t n) {
  RLF_GRID_STRIDE(i, n) y[i] = model::math::gelu(x[i]);
}

__global__ void gelu_backward_kernel(const float* x, const float* dy, float* dx, int64_t n) {
  RLF_GRID_STRIDE(i, n) dx[i] = dy[i] * model::math::gelu_grad(x[i]);
}

__global__ void swiglu_kernel(const float* gu, float* y, int64_t rows, int64_t hidden) {
  RLF_GRID_STRIDE(i, rows * hidden) {
    const int64_t r = i / hidden, j = i % hidden;
    y[i] = model::math::swiglu(gu[r * 2 * hidden + j], gu[r * 2 * hidden + hidden + j]);
  }
}

__global__ void swiglu_backward_kernel(const float* gu, const float* dy, float* dgu, int64_t rows, int64_t hidden) {
  RLF_GRID_STRIDE(i, rows * hidden) {
    const int64_t r = i / hidden, j = i % hidden;
    model::math::swiglu_grad(gu[r * 2 * hidden + j], gu[r * 2 * hidden + hidden + j], dy[i],
                             dgu[r * 2 * hidden + j], dgu[r * 2 * hidden + hidden + j]);
  }
}

__global__ void rope_kernel(float* x, int64_t rows, int64_t ld, int64_t heads, int64_t head_dim,
                            const int32_t* positions, const float* cos_table, const float* sin_table, float sign) {
  const int64_t half = head_dim / 2;
  RLF_GRID_STRIDE(i, rows * heads * half) {
    const int64_t r = i / (heads * half), h = (i / half) % heads, k = i % half;
    const int64_t p = static_cast<int64_t>(positions[r]) * half + k;
    float* v = x + r * ld + h * head_dim;
    model::math::rope_rotate(v[k], v[k + half], cos_table[p], sign * sin_table[p]);
  }
}

__global__ void store_kv_kernel(const float* qkv, int64_t batch, int64_t queries, int64_t q_dim, int64_t kv,
                                float* cache_k, float* cache_v, int64_t slots, const int32_t* query_slot) {
  const int64_t qkv_dim = q_dim + 2 * kv;
  RLF_GRID_STRIDE(i, batch * queries * kv) {
    const int64_t r = i / (queries * kv), q = (i / kv) % queries, c = i % kv;
    const int64_t slot = (query_slot != nullptr ? query_slot[r] : 0) + q;
    const float* row = qkv + (r * queries + q) * qkv_dim;
    cache_k[(r * slots + slot) * kv + c] = row[q_dim + c];
    cache_v[(r * slots + slot) * kv + c] = row[q_dim + kv + c];
  }
}

// Score row (z = b * heads + h, query i) of [queries, keys]: keys past
// first + i, or invalid, are masked. Forward (lse_in null): softmax in place,
// writing the log-sum-exp (-inf and a zero row when nothing is visible).
// Backward (lse_in given): probabilities again from the saved log-sum-exp.
__global__ void attention_softmax_kernel(float* scores, int64_t queries, int64_t keys, int64_t heads,
                                         const int32_t* query_slot, const uint8_t* key_valid, float* lse_out,
                                         const float* lse_in) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x, z = row / queries, i = row % queries, b = z / heads;
  float* s = scores + row * keys;
  const int64_t first = query_slot != nullptr ? query_slot[b] : 0;
  const int64_t visible = std::min(keys, first + i + 1);
  const uint8_t* valid = key_valid != nullptr ? key_valid + b * keys : nullptr;
  const auto on = [&](int64_t j) { return j < visible && (valid == nullptr || valid[j] != 0); };
  float lse;
  if (lse_in == nullptr) {
    float m = kNegInf;
    for (int64_t j = threadIdx.x; j < keys; j += blockDim.x) {
      if (on(j)) m = fmaxf(m, s[j]);
    }
    // Max through the sum's scratch: -max(-x) keeps one reduction helper.
    __shared__ float row_max;
    for (int offset = 16; offset > 0; offset /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
    if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = m;
    __syncthreads();
    if (threadIdx.x == 0) {
      float all = kNegInf;
      for (int w = 0; w < (blockDim.x + 31) / 32; ++w) all = fmaxf(all, scratch[w]);
      row_max = all;
    }
    __syncthreads();
    m = row_max;
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < keys; j += blockDim.x) {
      if (on(j) && m != kNegInf) sum += expf(s[j] - m);
    }
    sum = block_sum(sum, scratch);
    lse = m == kNegInf ? kNegInf : m + logf(sum);
    if (threadIdx.x == 0 && lse_out != nullptr) lse_out[row] = lse;
  } else {
    lse = lse_in[row];
  }
  for (int64_t j = threadIdx.x; j < keys; j += blockDim.x) s[j] = on(j) && lse != kNegInf ? expf(s[j] - lse) : 0.0f;
}

// dS = P (dP - D) scale in place of dP, D_i = sum_c dO_ic O_ic.
__global__ void attention_dsoftmax_kernel(const float* p, float* dp, int64_t queries, int64_t keys, int64_t heads,
                                          int64_t head_dim, const float* dout, const float* out, int64_t out_ld,
                                          int64_t out_batch, float scale) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x, z = row / queries, i = row % queries, b = z / heads, h = z % heads;
  const float* o = out + b * out_batch + i * out_ld + h * head_dim;
  const float* d = dout + b * out_batch + i * out_ld + h * head_dim;
  float delta = 0.0f;
  for (int64_t c = threadIdx.x; c < head_dim; c += blockDim.x) delta += d[c] * o[c];
  delta = block_sum(delta, scratch);
  for (int64_t j = threadIdx.x; j < keys; j += blockDim.x) {
    dp[row * keys + j] = p[row * keys + j] * (dp[row * keys + j] - delta) * scale;
  }
}

// The LM head's chunk: target row i reads hidden row source(i) and predicts token source(i) + 1.
__device__ __forceinline__ int64_t head_source(int64_t i, int64_t steps) { return (i / (steps - 1)) * steps + i % (steps - 1); }

__global__ void head_gather_kernel(const float* states, const int32_t* tokens, int64_t start, int64_t steps,
                                   int64_t dim, float* hidden, int32_t* next) {
  const int64_t i = blockIdx.x, src = head_source(start + i, steps);
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) hidden[i * dim + j] = states[src * dim + j];
  if (threadIdx.x == 0) next[i] = tokens[src + 1];
}

__global__ void head_scatter_add_kernel(const float* dhidden, float* dstates, int64_t start, int64_t steps,
                                        int64_t dim) {
  const int64_t i = blockIdx.x, src = head_source(start + i, steps);
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) dstates[src * dim + j] += dhidden[i * dim + j];
}

// dstates[i, :] += g[i] * w
__global__ void outer_add_kernel(const float* g, const float* w, float* dstates, int64_t dim) {
  const int64_t i = blockIdx.x;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) dstates[i * dim + j] += g[i] * w[j];
}

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, __nv_bfloat16* working, int64_t n,
                             float keep, model::math::AdamWScalars s) {
  RLF_GRID_STRIDE(i, n) {
    model::math::adamw_update(p[i], g[i], m[i], v[i], keep, s);
    if (working != nullptr) working[i] = __float2bfloat16_rn(p[i]);
  }
}

// Per-block sums of squares in double (added on the host in block order).
__global__ void sum_squares_kernel(const float* x, int64_t n, double* partial) {
  __shared__ double scratch[32];
  double s = 0.0;
  RLF_GRID_STRIDE(i, n) s += static_cast<double>(x[i]) * x[i];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void scale_kernel(float* x, int64_t n, float c) {
  RLF_GRID_STRIDE(i, n) x[i] *= c;
}

// out[i, :] = states[rows[i], :]
__global__ void gather_rows_kernel(const float* states, const int32_t* rows, int64_t dim, float* out) {
  const int64_t i = blockIdx.x, src = rows[i];
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) out[i * dim + j] = states[src * dim + j];
}

// A decoding step's rows: row b's new token sits at cache slot `slot` and position length[b] + step.
__global__ void decode_step_kernel(const int32_t* length, int64_t batch, int64_t step, int64_t slot, int64_t slots,
                                   int32_t* positions, int32_t* query_slot, uint8_t* valid) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  positions[b] = static_cast<int32_t>(length[b] + step);
  query_slot[b] = static_cast<int32_t>(slot);
  valid[b * slots + slot] = 1;
}

// done_at = step + 1 the first time every row has stopped (one thread).
__global__ void note_done_kernel(const uint8_t* finished, int64_t batch, int64_t step, int32_t* done_at) {
  if (*done_at != 0) return;
  for (int64_t b = 0; b < batch; ++b) {
    if (finished[b] == 0) return;
  }
  *done_at = static_cast<int32_t>(step + 1);
}

#undef RLF_GRID_STRIDE

// ---------------------------------------------------------------- the ops

// The layer ops of model/block_impl.h on the device.
struct CudaOps {
  const model::ModelConfig& c;
  int sms;
  bool bf16;
  const float* master;            // the fp32 parameters
  const __nv_bfloat16* working;   // their bf16 copy, read by the own GEMM kernels (null: GEMMs read master)
  int64_t total;
  const float *cos_table, *sin_table;
  DeviceBuffer *scores, *dscores;  // attention's [batch * heads, queries, keys]
  DeviceBuffer* colsum;             // column sums' partials (plan_column_sums)
  int device;
  bool reference_attention;  // the batched-GEMM attention for every forward (RLFARM_CUDA_ATTENTION=reference)

  // A parameter's bf16 copy where the own kernels multiply in bf16; anything else as it is.
  GemmOperand operand(const float* p, int64_t ld) const {
    if (working != nullptr && p >= master && p < master + total) return GemmOperand{working + (p - master), DType::bf16, ld};
    return GemmOperand{p, DType::f32, ld};
  }

  void launch_check(const char* name) const { RLF_CUDA_CHECK_LAUNCH(name); }

  void norm_forward(const float* x, const float* w, const float* b, float* y, float* stats, int64_t rows, int64_t dim,
                    float eps) {
    norm_forward_kernel<<<grid1(rows), row_block(dim)>>>(x, w, b, y, stats, dim, eps);
    launch_check("norm_forward");
  }
  void norm_reapply(const float* x, const float* w, const float* b, const float* stats, float* y, int64_t rows,
                    int64_t dim) {
    norm_reapply_kernel<<<grid1(rows), row_block(dim)>>>(x, w, b, stats, y, dim);
    launch_check("norm_reapply");
  }
  void norm_backward(const float* dy, const float* x, const float* w, bool has_bias, const float* stats, float* dx,
                     float* dw, float* db, int64_t rows, int64_t dim) {
    norm_backward_kernel<<<grid1(rows), row_block(dim)>>>(dy, x, w, has_bias, stats, dx, dim);
    launch_check("norm_backward");
    column_sums(NormTerm{dy, x, stats, has_bias, dim}, rows, dim, dw, db, "norm_backward (weights)");
  }
  // out0 (and out1) += the column sums of `term` over the rows (plan_column_sums).
  template <typename Term>
  void column_sums(const Term& term, int64_t rows, int64_t cols, float* out0, float* out1, const char* name) {
    if (rows == 0) return;
    const ColumnSumPlan p = plan_column_sums(rows, cols, Term::kSums);
    colsum->reserve(device, sizeof(float) * static_cast<size_t>(p.scratch_floats), "the column sums' scratch");
    float* partial = colsum->as<float>();
    column_partials_kernel<<<dim3(static_cast<unsigned>(p.partials.grid_x), static_cast<unsigned>(p.partials.grid_y)),
                             dim3(kColumnTile, kColumnLanes)>>>(term, rows, cols, p.chunk_rows, partial);
    launch_check(name);
    column_finish_kernel<<<grid1(p.finish.grid_x), p.finish.block>>>(partial, p.chunks, cols, Term::kSums, out0, out1);
    launch_check(name);
  }
  // A product's sizes and scalars; operands and C are the caller's.
  GemmArgs product(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, float beta) const {
    GemmArgs g;
    g.trans_a = ta;
    g.trans_b = tb;
    g.m = M;
    g.n = N;
    g.k = K;
    g.alpha = alpha;
    g.beta = beta;
    g.bf16_compute = bf16;
    return g;
  }
  void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
            int64_t ldb, float beta, float* C, int64_t ldc, const float* bias = nullptr) {
    GemmArgs g = product(ta, tb, M, N, K, alpha, beta);
    g.a = operand(A, lda);
    g.b = operand(B, ldb);
    g.c = C;
    g.ldc = ldc;
    g.bias = bias;
    cuda::gemm(g);
  }
  void linear(const float* x, int64_t M, int64_t K, const float* w, int64_t N, float* y, int64_t ldy, bool accumulate,
              const float* b) {
    gemm(false, true, M, N, K, 1.0f, x, K, w, K, accumulate ? 1.0f : 0.0f, y, ldy, b);
  }
  void bias_grad(const float* dy, int64_t ld, float* db, int64_t rows, int64_t cols) {
    column_sums(BiasTerm{dy, ld}, rows, cols, db, nullptr, "bias_grad");
  }
  void rope(float* x, int64_t rows, int64_t ld, int64_t heads, const int32_t* positions, bool inverse) {
    const Launch l = elementwise_launch(rows * heads * (c.head_dim / 2), sms);
    rope_kernel<<<grid1(l.grid_x), l.block>>>(x, rows, ld, heads, c.head_dim, positions, cos_table, sin_table,
                                              inverse ? -1.0f : 1.0f);
    launch_check("rope");
  }
  void gelu(const float* x, float* y, int64_t n) {
    const Launch l = elementwise_launch(n, sms);
    gelu_kernel<<<grid1(l.grid_x), l.block>>>(x, y, n);
    launch_check("gelu");
  }
  void gelu_backward(const float* x, const float* dy, float* dx, int64_t n) {
    const Launch l = elementwise_launch(n, sms);
    gelu_backward_kernel<<<grid1(l.grid_x), l.block>>>(x, dy, dx, n);
    launch_check("gelu_backward");
  }
  void swiglu(const float* gu, float* y, int64_t rows, int64_t hidden) {
    const Launch l = elementwise_launch(rows * hidden, sms);
    swiglu_kernel<<<grid1(l.grid_x), l.block>>>(gu, y, rows, hidden);
    launch_check("swiglu");
  }
  void swiglu_backward(const float* gu, const float* dy, float* dgu, int64_t rows, int64_t hidden) {
    const Launch l = elementwise_launch(rows * hidden, sms);
    swiglu_backward_kernel<<<grid1(l.grid_x), l.block>>>(gu, dy, dgu, rows, hidden);
    launch_check("swiglu_backward");
  }
  void copy(float* dst, const float* src, int64_t n) {
    RLF_CUDA_CHECK(cudaMemcpyAsync(dst, src, sizeof(float) * n, cudaMemcpyDeviceToDevice));
  }
  void store_kv(const float* qkv, int64_t batch, int64_t queries, float* cache_k, float* cache_v, int64_t slots,
                const int32_t* query_slot) {
    const Launch l = elementwise_launch(batch * queries * c.kv_dim(), sms);
    store_kv_kernel<<<grid1(l.grid_x), l.block>>>(qkv, batch, queries, c.q_dim(), c.kv_dim(), cache_k, cache_v, slots,
                                                  query_slot);
    launch_check("store_kv");
  }

  // A batched product over (row b, head h) of attention's operands.
  struct Side {
    const float* p;
    int64_t ld, outer, inner, group;
  };
  void head_gemm(const AttentionArgs& a, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, Side A, Side B,
                 float beta, Side C, int64_t batch_inner) {
    GemmArgs g = product(ta, tb, M, N, K, alpha, beta);
    g.batch = a.batch * batch_inner;
    g.batch_inner = batch_inner;
    g.a = GemmOperand{A.p, DType::f32, A.ld, A.outer, A.inner, A.group};
    g.b = GemmOperand{B.p, DType::f32, B.ld, B.outer, B.inner, B.group};
    g.c = const_cast<float*>(C.p);
    g.ldc = C.ld;
    g.c_outer = C.outer;
    g.c_inner = C.inner;
    cuda::gemm(g);
  }

  void attention_forward(const AttentionArgs& a) {
    if (!reference_attention && (a.query_slot != nullptr && a.queries == 1 ? attention_decode(a) : attention_flash(a))) {
      return;
    }
    attention_reference(a);
  }

  void attention_reference(const AttentionArgs& a) {
    const int64_t H = a.heads, group = a.heads / a.kv_heads, Tq = a.queries, keys = a.key_slots, hd = a.head_dim;
    scores->reserve(device, sizeof(float) * a.batch * H * Tq * keys, "attention scores");
    float* S = scores->as<float>();
    const Side q{a.q, a.q_ld, a.q_batch, hd, 1}, k{a.k, a.kv_ld, a.kv_batch, hd, group},
        v{a.v, a.kv_ld, a.kv_batch, hd, group}, s{S, keys, H * Tq * keys, Tq * keys, 1},
        out{a.out, a.out_ld, a.out_batch, hd, 1};
    head_gemm(a, false, true, Tq, keys, hd, a.scale, q, k, 0.0f, s, H);
    attention_softmax_kernel<<<grid1(a.batch * H * Tq), row_block(keys)>>>(S, Tq, keys, H, a.query_slot, a.key_valid,
                                                                           a.lse, nullptr);
    launch_check("attention softmax");
    head_gemm(a, false, false, Tq, hd, keys, 1.0f, s, v, 0.0f, out, H);
  }

  void attention_backward(const AttentionGradArgs& ga) {
    if (!reference_attention && attention_flash_backward(ga)) return;
    attention_reference_backward(ga);
  }

  void attention_reference_backward(const AttentionGradArgs& ga) {
    const AttentionArgs& a = ga.fwd;
    const int64_t H = a.heads, G = a.kv_heads, group = H / G, T = a.queries, hd = a.head_dim;
    scores->reserve(device, sizeof(float) * a.batch * H * T * T, "attention scores");
    dscores->reserve(device, sizeof(float) * a.batch * H * T * T, "attention score gradients");
    float* P = scores->as<float>();
    float* dS = dscores->as<float>();
    const Side q{a.q, a.q_ld, a.q_batch, hd, 1}, k{a.k, a.kv_ld, a.kv_batch, hd, group},
        v{a.v, a.kv_ld, a.kv_batch, hd, group}, p{P, T, H * T * T, T * T, 1}, ds{dS, T, H * T * T, T * T, 1},
        dout{ga.dout, a.out_ld, a.out_batch, hd, 1}, dq{ga.dq, a.q_ld, a.q_batch, hd, 1};
    head_gemm(a, false, true, T, T, hd, a.scale, q, k, 0.0f, p, H);
    // Probabilities from these scores' own max and sum, not the forward's log-sum-exp: the fused forward
    // computes its scores in fp32, these GEMMs may round to bf16, and the two must not be mixed.
    attention_softmax_kernel<<<grid1(a.batch * H * T), row_block(T)>>>(P, T, T, H, nullptr, a.key_valid, nullptr,
                                                                       nullptr);
    launch_check("attention probabilities");
    head_gemm(a, false, true, T, T, hd, 1.0f, dout, v, 0.0f, ds, H);  // dP = dO V^T
    attention_dsoftmax_kernel<<<grid1(a.batch * H * T), row_block(hd)>>>(P, dS, T, T, H, hd, ga.dout, a.out, a.out_ld,
                                                                         a.out_batch, a.scale);
    launch_check("attention dsoftmax");
    head_gemm(a, false, false, T, hd, T, 1.0f, ds, k, 0.0f, dq, H);  // dQ = dS K
    // dK = dS^T Q and dV = P^T dO per kv head: the heads of a group add in order.
    RLF_CUDA_CHECK(cudaMemset2DAsync(ga.dk, sizeof(float) * a.kv_ld, 0, sizeof(float) * G * hd, a.batch * T));
    RLF_CUDA_CHECK(cudaMemset2DAsync(ga.dv, sizeof(float) * a.kv_ld, 0, sizeof(float) * G * hd, a.batch * T));
    for (int64_t r = 0; r < group; ++r) {  // head g * group + r of each kv head g
      const Side ds_r{dS + r * T * T, T, H * T * T, group * T * T, 1}, p_r{P + r * T * T, T, H * T * T, group * T * T, 1},
          q_r{a.q + r * hd, a.q_ld, a.q_batch, group * hd, 1}, dout_r{ga.dout + r * hd, a.out_ld, a.out_batch, group * hd, 1},
          dk{ga.dk, a.kv_ld, a.kv_batch, hd, 1}, dv{ga.dv, a.kv_ld, a.kv_batch, hd, 1};
      head_gemm(a, true, false, T, hd, T, 1.0f, ds_r, q_r, 1.0f, dk, G);
      head_gemm(a, true, false, T, hd, T, 1.0f, p_r, dout_r, 1.0f, dv, G);
    }
  }
};

// ---------------------------------------------------------------- the engine

class CudaEngine final : public Engine {
 public:
  CudaEngine(const model::Transformer& host, int device, Precision precision)
      : host_(host), c_(host.config()), layout_(host.layout()), device_(device), precision_(precision), rope_(c_) {
    RLF_CHECK(device_count() > 0, "device 'cuda' is not available: ", unavailable_reason());
    RLF_CHECK(device >= 0 && device < device_count(), "cuda:", device, " does not exist (", device_count(),
              " CUDA device(s))");
    sms_ = device_info(device).multiprocessors;
    total_ = static_cast<int64_t>(layout_.total);
    params_.reserve(device_, sizeof(float) * total_, "the model's parameters");
    if (precision_ == Precision::bf16) working_.reserve(device_, sizeof(uint16_t) * total_, "the bf16 weights");
    bad_target_.reserve(device_, sizeof(int32_t), "scratch");
  }

  Precision precision() const override { return precision_; }
  int device() const override { return device_; }

  void upload_params(const float* host) override {
    copy_to_device(device_, params_.as<float>(), host, sizeof(float) * total_);
    refresh_working();
  }
  void download_params(float* host) override { copy_to_host(device_, host, params_.as<float>(), sizeof(float) * total_); }
  void download_grads(float* host) override {
    if (grads_.empty()) std::memset(host, 0, sizeof(float) * total_);
    else copy_to_host(device_, host, grads_.as<float>(), sizeof(float) * total_);
  }
  float* device_grads() override {
    allocate_grads();
    return grads_.as<float>();
  }
  void zero_grad() override {
    if (!grads_.empty()) memset_zero(device_, grads_.as<float>(), sizeof(float) * total_);
  }
  void allocate_grads() {
    if (!grads_.empty()) return;
    grads_.reserve(device_, sizeof(float) * static_cast<size_t>(total_), "the gradients");
    memset_zero(device_, grads_.as<float>(), sizeof(float) * static_cast<size_t>(total_));
  }

  model::ForwardResult forward(const Tensor& tokens, const Tensor& mask, const model::ForwardOptions& o) override;
  model::GenerateResult generate(const Tensor& prompts, const Tensor& mask, const model::GenerateOptions& o) override;
  void backward(const Tensor& grad_logp, const Tensor& grad_entropy, const Tensor& grad_values) override;
  double adamw_step(const std::shared_ptr<model::AdamW>& state, int64_t step, double lr, double max_norm) override;
  void download_moments() override;
  // table[ids[r]] += dx_[r] over `rows` rows (plan_embed_backward); `name` names it in errors.
  void embed_backward(const int32_t* ids, float* table, int64_t rows, int64_t table_rows, const char* name);
  double grad_norm() override;

 private:
  void refresh_working() {
    if (precision_ != Precision::bf16) return;
    cast(CastArgs{params_.as<float>(), DType::f32, working_.as<void>(), DType::bf16, total_});
  }
  CudaOps ops() {
    // With cuBLASLt the fp32 weights go in as they are (its compute type rounds
    // them to bf16); the own kernels read the bf16 copy, half the bytes.
    const bool bf16 = precision_ == Precision::bf16;
    const bool own_kernels = cublaslt_status().rfind("cublaslt", 0) != 0;
    const char* attention = std::getenv("RLFARM_CUDA_ATTENTION");
    const bool reference = attention != nullptr && std::strcmp(attention, "reference") == 0;
    RLF_CHECK(attention == nullptr || reference || *attention == '\0' || std::strcmp(attention, "fused") == 0,
              "RLFARM_CUDA_ATTENTION must be 'fused' (the default) or 'reference'; got '", attention, "'");
    return CudaOps{c_,     sms_,           bf16, params_.as<float>(), bf16 && own_kernels ? working_.as<__nv_bfloat16>() : nullptr,
                   total_, cos_.as<float>(), sin_.as<float>(), &scores_, &dscores_, &colsum_, device_, reference};
  }
  float* P() const { return params_.as<float>(); }
  // A forward's [B, T]-sized output: a new cuda tensor on this device, or a cpu tensor.
  Tensor output(const Shape& shape, const float* src, bool on_device) const {
    Tensor t = empty(shape, DType::f32, on_device ? Device::gpu(device_) : Device::host());
    if (on_device) copy_device_to_device(device_, t.raw(), src, t.nbytes());
    else copy_to_host(device_, t.raw(), src, t.nbytes());
    return t;
  }
  // A gradient from the cpu or this device into a device buffer.
  void input(float* dst, const Tensor& g) const {
    if (g.device().is_cuda()) copy_device_to_device(device_, dst, g.raw(), g.nbytes());
    else copy_to_device(device_, dst, g.raw(), g.nbytes());
  }
  const float* opt(size_t offset) const { return offset == kNone ? nullptr : P() + offset; }
  void ensure_rope(int64_t positions);
  // Chunks of the LM head over target rows [0, batch * (steps - 1)).
  void head_chunk(CudaOps& ops, int64_t start, int64_t rows);

  const model::Transformer& host_;
  const model::ModelConfig& c_;
  const model::ParamLayout& layout_;
  int device_;
  Precision precision_;
  int sms_ = 1;
  int64_t total_ = 0;
  model::RopeTable rope_;
  int64_t rope_positions_ = 0;

  DeviceBuffer params_, working_, grads_, adam_m_, adam_v_;
  DeviceBuffer cos_, sin_;
  // The last forward: inputs and what a training forward keeps.
  DeviceBuffer tokens_, positions_, key_valid_;
  DeviceBuffer x_, stats_, qkv_, lse_, att_, pre_, act_, final_normed_, normed_;
  DeviceBuffer scores_, dscores_;
  DeviceBuffer head_hidden_, head_logits_, head_next_, head_dhidden_, bad_target_;
  DeviceBuffer dnf_, dx_, dact_, dpre_, datt_, dqkv_, grad_in_, partial_;
  // generate(): its own buffers, so that a training forward's activations survive it.
  struct GenerateBuffers {
    DeviceBuffer cache_k, cache_v, tokens, positions, prompt_valid, prompt_length, valid, last_rows, query_slot;
    DeviceBuffer x, stats, normed, qkv, att, pre, act, hidden, logits;
    DeviceBuffer seeds, stops, step_tokens, out_tokens, out_logprobs, lengths, finished, done_at, sort_keys, order;
  } gen_;
  int64_t batch_ = 0, steps_ = 0, chunk_ = 1;
  bool train_ = false, masked_ = false, entropy_ = false, action_values_ = false;
  std::weak_ptr<model::AdamW> moments_of_;  // the optimizer whose moments adam_m_ and adam_v_ hold
  DeviceBuffer colsum_, sort_, sort_temp_;  // backward scratch: column sums, the embedding's sort
  float temperature_ = 1;
};

void CudaEngine::ensure_rope(int64_t n) {
  if (c_.arch == model::Arch::gpt2 || n <= rope_positions_) return;
  rope_.ensure(n);
  const int64_t covered = rope_.positions_covered(), half = c_.head_dim / 2;
  cos_.reserve(device_, sizeof(float) * covered * half, "the RoPE tables");
  sin_.reserve(device_, sizeof(float) * covered * half, "the RoPE tables");
  copy_to_device(device_, cos_.as<float>(), rope_.cos_table(), sizeof(float) * covered * half);
  copy_to_device(device_, sin_.as<float>(), rope_.sin_table(), sizeof(float) * covered * half);
  rope_positions_ = covered;
}

model::ForwardResult CudaEngine::forward(const Tensor& tokens, const Tensor& mask, const model::ForwardOptions& o) {
  host_.check_forward(tokens, mask, o);
  RLF_CHECK(!o.logits, "model.forward: logits: true is not available on cuda (the [B, T, V] logits are never made "
                       "there); use logprobs and entropy, or a cpu model");
  set_device(device_);
  const int64_t B = tokens.shape[0], T = tokens.shape[1], N = B * T, d = c_.dim, L = c_.layers;
  std::vector<int32_t> positions;
  std::vector<uint8_t> valid;
  model::positions_from_mask(mask, B, T, positions, valid);
  model::check_positions(c_, positions, o.op.c_str());
  const EnginePlan plan = plan_engine(c_, B, T, precision_, o.train, sms_);
  batch_ = B;
  steps_ = T;
  train_ = o.train;
  masked_ = mask.defined();
  entropy_ = o.entropy;
  action_values_ = o.action_values;
  temperature_ = o.temperature;
  chunk_ = plan.head_chunk_rows;

  tokens_.reserve(device_, sizeof(int32_t) * N, "tokens");
  positions_.reserve(device_, sizeof(int32_t) * N, "positions");
  key_valid_.reserve(device_, N, "the attention mask");
  copy_to_device(device_, tokens_.as<int32_t>(), tokens.data<int32_t>(), sizeof(int32_t) * N);
  copy_to_device(device_, positions_.as<int32_t>(), positions.data(), sizeof(int32_t) * N);
  copy_to_device(device_, key_valid_.as<uint8_t>(), valid.data(), N);
  ensure_rope(*std::max_element(positions.begin(), positions.end()) + 1);

  const int64_t up = c_.arch == model::Arch::gpt2 ? c_.hidden : 2 * c_.hidden;
  const int64_t x_slots = o.train ? 2 * L + 1 : 1, layer_slots = o.train ? L : 1;
  const auto fl = [](int64_t n) { return sizeof(float) * static_cast<size_t>(n); };
  x_.reserve(device_, fl(x_slots * N * d), "activations");
  stats_.reserve(device_, fl(x_slots * 2 * N), "activations");
  qkv_.reserve(device_, fl(layer_slots * N * c_.qkv_dim()), "activations");
  lse_.reserve(device_, fl(layer_slots * B * c_.heads * T), "activations");
  att_.reserve(device_, fl(layer_slots * N * c_.q_dim()), "activations");
  pre_.reserve(device_, fl(layer_slots * N * up), "activations");
  act_.reserve(device_, fl(layer_slots * N * c_.hidden), "activations");
  final_normed_.reserve(device_, fl(N * d), "activations");
  normed_.reserve(device_, fl(N * d), "activations");

  const auto xs = [&](int64_t i) { return o.train ? i : 0; };
  const auto ls = [&](int64_t l) { return o.train ? l : 0; };
  embed_kernel<<<grid1(N), plan.embed.block>>>(tokens_.as<int32_t>(), positions_.as<int32_t>(),
                                               P() + layout_.token_embedding, opt(layout_.position_embedding),
                                               x_.as<float>(), d);
  RLF_CUDA_CHECK_LAUNCH("embed");
  CudaOps k = ops();
  const model::BlockStep step{B, T, positions_.as<int32_t>(), masked_ ? key_valid_.as<uint8_t>() : nullptr,
                              nullptr, nullptr, 0, nullptr, false};
  for (int64_t l = 0; l < L; ++l) {
    model::BlockBuffers b;
    b.x_in = x_.as<float>() + xs(2 * l) * N * d;
    b.x_mid = x_.as<float>() + xs(2 * l + 1) * N * d;
    b.x_out = x_.as<float>() + xs(2 * l + 2) * N * d;
    b.stats1 = stats_.as<float>() + xs(2 * l) * 2 * N;
    b.stats2 = stats_.as<float>() + xs(2 * l + 1) * 2 * N;
    b.normed = normed_.as<float>();
    b.qkv = qkv_.as<float>() + ls(l) * N * c_.qkv_dim();
    b.lse = lse_.as<float>() + ls(l) * B * c_.heads * T;
    b.att = att_.as<float>() + ls(l) * N * c_.q_dim();
    b.pre = pre_.as<float>() + ls(l) * N * up;
    b.act = act_.as<float>() + ls(l) * N * c_.hidden;
    model::block_forward(k, c_, layout_.layers[l], P(), step, b);
  }
  k.norm_forward(x_.as<float>() + xs(2 * L) * N * d, P() + layout_.final_norm_w, opt(layout_.final_norm_b),
                 final_normed_.as<float>(), stats_.as<float>() + xs(2 * L) * 2 * N, N, d, c_.norm_eps);

  model::ForwardResult r;
  if ((o.logprobs || o.entropy) && T > 1) {
    const int64_t targets = B * (T - 1);
    DeviceBuffer logp, entropy;
    logp.reserve(device_, fl(targets), "log-probs");
    if (o.entropy) entropy.reserve(device_, fl(targets), "entropies");
    for (int64_t start = 0; start < targets; start += chunk_) {
      const int64_t rows = std::min(chunk_, targets - start);
      head_chunk(k, start, rows);
      logprobs(LogprobsArgs{head_logits_.as<float>(), DType::f32, head_next_.as<int32_t>(), rows, c_.vocab,
                            1.0f / o.temperature, logp.as<float>() + start,
                            o.entropy ? entropy.as<float>() + start : nullptr, bad_target_.as<int32_t>()});
    }
    r.logp = output({B, T - 1}, logp.as<float>(), o.on_device);
    if (o.entropy) r.entropy = output({B, T - 1}, entropy.as<float>(), o.on_device);
  } else if (o.logprobs || o.entropy) {
    r.logp = empty({B, 0}, DType::f32, o.on_device ? Device::gpu(device_) : Device::host());
    if (o.entropy) r.entropy = empty({B, 0}, DType::f32, o.on_device ? Device::gpu(device_) : Device::host());
  }
  if (o.values) {
    DeviceBuffer values;
    values.reserve(device_, fl(N), "values");
    k.gemm(false, true, N, 1, d, 1.0f, final_normed_.as<float>(), d, P() + layout_.score, d, 0.0f, values.as<float>(), 1);
    r.values = output({B, T}, values.as<float>(), o.on_device);
    if (o.action_values) r.values = model::values_on_action_grid(r.values);
  }
  return r;
}

model::GenerateResult CudaEngine::generate(const Tensor& prompts, const Tensor& mask, const model::GenerateOptions& o) {
  const model::GeneratePrompts gp = host_.check_generate(prompts, mask, o);
  const int64_t B = gp.batch, Pw = gp.width, n = o.max_new_tokens, N = B * Pw;
  const int64_t d = c_.dim, V = c_.vocab, L = c_.layers, kv = c_.kv_dim();
  if (n == 0) {
    const std::vector<int32_t> none(static_cast<size_t>(B), 0);
    const std::vector<float> no_logprobs(1, 0.0f);
    return model::generate_result(gp, 0, 0, none.data(), no_logprobs.data(), none.data());
  }
  set_device(device_);
  const bool truncate = o.temperature != 0.0f && model::sampling::truncates(o.top_k, o.top_p, V);
  const GeneratePlan plan = plan_generate(c_, B, Pw, n, truncate);
  const int64_t slots = plan.slots, up = c_.arch == model::Arch::gpt2 ? c_.hidden : 2 * c_.hidden;
  const auto fl = [](int64_t count) { return sizeof(float) * static_cast<size_t>(count); };
  const auto i32 = [](int64_t count) { return sizeof(int32_t) * static_cast<size_t>(count); };
  GenerateBuffers& g = gen_;

  // The prompts, the cache's validity and each row's last prompt row.
  std::vector<uint8_t> valid(static_cast<size_t>(B * slots), 0);
  std::vector<int32_t> last_rows(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    std::memcpy(valid.data() + b * slots, gp.key_valid.data() + b * Pw, static_cast<size_t>(Pw));
    last_rows[b] = static_cast<int32_t>(b * Pw + gp.last[b]);
  }
  g.cache_k.reserve(device_, fl(L * B * slots * kv), "the KV cache");
  g.cache_v.reserve(device_, fl(L * B * slots * kv), "the KV cache");
  g.tokens.reserve(device_, i32(N), "the prompts");
  g.positions.reserve(device_, i32(N), "the prompts");
  g.prompt_valid.reserve(device_, static_cast<size_t>(N), "the prompts");
  g.prompt_length.reserve(device_, i32(B), "the prompts");
  g.valid.reserve(device_, valid.size(), "the KV cache's mask");
  g.last_rows.reserve(device_, i32(B), "the prompts");
  g.query_slot.reserve(device_, i32(B), "the decoding steps");
  copy_to_device(device_, g.tokens.as<int32_t>(), gp.tokens.data(), i32(N));
  copy_to_device(device_, g.positions.as<int32_t>(), gp.positions.data(), i32(N));
  copy_to_device(device_, g.prompt_valid.as<uint8_t>(), gp.key_valid.data(), static_cast<size_t>(N));
  copy_to_device(device_, g.prompt_length.as<int32_t>(), gp.length.data(), i32(B));
  copy_to_device(device_, g.valid.as<uint8_t>(), valid.data(), valid.size());
  copy_to_device(device_, g.last_rows.as<int32_t>(), last_rows.data(), i32(B));
  ensure_rope(*std::max_element(gp.length.begin(), gp.length.end()) + n + 1);

  // Activations, sized for the prefill's rows (a decoding step uses the first B).
  g.x.reserve(device_, fl(N * d), "activations");
  g.stats.reserve(device_, fl(2 * N), "activations");
  g.normed.reserve(device_, fl(N * d), "activations");
  g.qkv.reserve(device_, fl(N * c_.qkv_dim()), "activations");
  g.att.reserve(device_, fl(N * c_.q_dim()), "activations");
  g.pre.reserve(device_, fl(N * up), "activations");
  g.act.reserve(device_, fl(N * c_.hidden), "activations");
  g.hidden.reserve(device_, fl(B * d), "activations");
  g.logits.reserve(device_, fl(B * V), "the logits");
  float* x = g.x.as<float>();
  float* normed = g.normed.as<float>();
  float* stats = g.stats.as<float>();
  const model::BlockBuffers buffers{x, x, x, stats, stats, normed, g.qkv.as<float>(), g.att.as<float>(),
                                    g.pre.as<float>(), g.act.as<float>(), nullptr};
  const auto cache_k = [&](int64_t l) { return g.cache_k.as<float>() + l * B * slots * kv; };
  const auto cache_v = [&](int64_t l) { return g.cache_v.as<float>() + l * B * slots * kv; };
  CudaOps k = ops();
  // The last rows through the final norm and the LM head: [rows, vocab] logits.
  const auto head = [&](int64_t rows, const int32_t* gather) {
    k.norm_forward(x, P() + layout_.final_norm_w, opt(layout_.final_norm_b), normed, stats, rows, d, c_.norm_eps);
    const float* h = normed;
    if (gather != nullptr) {
      gather_rows_kernel<<<grid1(B), row_block(d)>>>(normed, gather, d, g.hidden.as<float>());
      RLF_CUDA_CHECK_LAUNCH("generate: last prompt rows");
      h = g.hidden.as<float>();
    }
    k.linear(h, B, d, P() + layout_.lm_head, V, g.logits.as<float>(), V, false, nullptr);
  };

  // Prefill: every prompt row through the layers, keys and values into slots [0, Pw).
  embed_kernel<<<grid1(N), row_block(d)>>>(g.tokens.as<int32_t>(), g.positions.as<int32_t>(), P() + layout_.token_embedding,
                                           opt(layout_.position_embedding), x, d);
  RLF_CUDA_CHECK_LAUNCH("generate: embed");
  for (int64_t l = 0; l < L; ++l) {
    const model::BlockStep prefill{B, Pw, g.positions.as<int32_t>(), g.prompt_valid.as<uint8_t>(), cache_k(l), cache_v(l),
                                   slots, nullptr, false};
    model::block_forward(k, c_, layout_.layers[l], P(), prefill, buffers);
  }
  head(N, g.last_rows.as<int32_t>());

  // The sampler's state.
  const std::vector<int32_t> pads(static_cast<size_t>(B * n), o.pad_token);
  g.seeds.reserve(device_, sizeof(uint64_t) * B, "the seeds");
  g.stops.reserve(device_, i32(std::max<int64_t>(1, static_cast<int64_t>(o.stop_tokens.size()))), "the stop tokens");
  g.step_tokens.reserve(device_, i32(B), "the sampled tokens");
  g.out_tokens.reserve(device_, i32(B * n), "the sampled tokens");
  g.out_logprobs.reserve(device_, fl(B * n), "the sampled tokens");
  g.lengths.reserve(device_, i32(B), "the sampled tokens");
  g.finished.reserve(device_, static_cast<size_t>(B), "the sampled tokens");
  g.done_at.reserve(device_, sizeof(int32_t), "the sampled tokens");
  copy_to_device(device_, g.seeds.as<uint64_t>(), o.seeds.data(), sizeof(uint64_t) * B);
  if (!o.stop_tokens.empty()) copy_to_device(device_, g.stops.as<int32_t>(), o.stop_tokens.data(), i32(o.stop_tokens.size()));
  copy_to_device(device_, g.out_tokens.as<int32_t>(), pads.data(), i32(B * n));
  memset_zero(device_, g.out_logprobs.as<float>(), fl(B * n));
  memset_zero(device_, g.lengths.as<int32_t>(), i32(B));
  memset_zero(device_, g.finished.as<uint8_t>(), static_cast<size_t>(B));
  memset_zero(device_, g.done_at.as<int32_t>(), sizeof(int32_t));
  if (truncate) {
    g.sort_keys.reserve(device_, sizeof(uint64_t) * B * plan.sampling.sort_width, "the sampler's sort");
    g.order.reserve(device_, i32(B * V), "the sampler's sort");
  }
  SampleArgs sample{g.logits.as<float>(), B, V, o.temperature, o.top_k, o.top_p, g.seeds.as<uint64_t>(),
                    g.stops.as<int32_t>(), static_cast<int64_t>(o.stop_tokens.size()), o.pad_token, 0, n,
                    g.step_tokens.as<int32_t>(), g.out_tokens.as<int32_t>(), g.out_logprobs.as<float>(),
                    g.lengths.as<int32_t>(), g.finished.as<uint8_t>(), truncate ? g.sort_keys.as<uint64_t>() : nullptr,
                    truncate ? g.order.as<int32_t>() : nullptr, plan.sampling.sort_width};

  for (int64_t step = 0; step < n; ++step) {
    sample.step = step;
    sample_tokens(sample);
    note_done_kernel<<<1, 1>>>(g.finished.as<uint8_t>(), B, step, g.done_at.as<int32_t>());
    RLF_CUDA_CHECK_LAUNCH("generate: stop check");
    if (step + 1 == n) break;
    // Whether every row has stopped, read every 8 steps: a read waits for the device.
    if ((step + 1) % 8 == 0) {
      int32_t done = 0;
      copy_to_host(device_, &done, g.done_at.as<int32_t>(), sizeof(int32_t));
      if (done != 0) break;
    }
    // One decoding step: each row's new token at slot Pw + step (rows that stopped decode their pad token).
    decode_step_kernel<<<grid1((B + 127) / 128), 128>>>(g.prompt_length.as<int32_t>(), B, step, Pw + step, slots,
                                                        g.positions.as<int32_t>(), g.query_slot.as<int32_t>(),
                                                        g.valid.as<uint8_t>());
    RLF_CUDA_CHECK_LAUNCH("generate: decoding step");
    embed_kernel<<<grid1(B), row_block(d)>>>(g.step_tokens.as<int32_t>(), g.positions.as<int32_t>(),
                                             P() + layout_.token_embedding, opt(layout_.position_embedding), x, d);
    RLF_CUDA_CHECK_LAUNCH("generate: embed");
    for (int64_t l = 0; l < L; ++l) {
      const model::BlockStep decode{B, 1, g.positions.as<int32_t>(), g.valid.as<uint8_t>(), cache_k(l), cache_v(l),
                                    slots, g.query_slot.as<int32_t>(), true};
      model::block_forward(k, c_, layout_.layers[l], P(), decode, buffers);
    }
    head(B, nullptr);
  }

  int32_t done = 0;
  copy_to_host(device_, &done, g.done_at.as<int32_t>(), sizeof(int32_t));
  const int64_t steps_done = done != 0 ? done : n;
  std::vector<int32_t> out_tokens(static_cast<size_t>(B * n)), lengths(static_cast<size_t>(B));
  std::vector<float> out_logprobs(static_cast<size_t>(B * n));
  copy_to_host(device_, out_tokens.data(), g.out_tokens.as<int32_t>(), i32(B * n));
  copy_to_host(device_, out_logprobs.data(), g.out_logprobs.as<float>(), fl(B * n));
  copy_to_host(device_, lengths.data(), g.lengths.as<int32_t>(), i32(B));
  return model::generate_result(gp, n, steps_done, out_tokens.data(), out_logprobs.data(), lengths.data());
}

void CudaEngine::head_chunk(CudaOps& k, int64_t start, int64_t rows) {
  const int64_t d = c_.dim;
  head_hidden_.reserve(device_, sizeof(float) * chunk_ * d, "the LM head's hidden states");
  head_logits_.reserve(device_, sizeof(float) * chunk_ * c_.vocab, "the LM head's logits");
  head_next_.reserve(device_, sizeof(int32_t) * chunk_, "the LM head's targets");
  head_gather_kernel<<<grid1(rows), row_block(d)>>>(final_normed_.as<float>(), tokens_.as<int32_t>(), start, steps_, d,
                                                    head_hidden_.as<float>(), head_next_.as<int32_t>());
  RLF_CUDA_CHECK_LAUNCH("LM head gather");
  k.linear(head_hidden_.as<float>(), rows, d, P() + layout_.lm_head, c_.vocab, head_logits_.as<float>(), c_.vocab,
           false, nullptr);
}

void CudaEngine::backward(const Tensor& grad_logp, const Tensor& grad_entropy, const Tensor& grad_values_in) {
  RLF_CHECK(train_, "model.backward: run a forward with train: true first");
  host_.check_backward(grad_logp, grad_entropy, grad_values_in, batch_, steps_, entropy_, action_values_, device_);
  const Tensor grad_values = grad_values_in.defined() && action_values_ ? model::grad_from_action_grid(grad_values_in, steps_) : grad_values_in;
  set_device(device_);
  const int64_t B = batch_, T = steps_, N = B * T, d = c_.dim, L = c_.layers, targets = B * (T - 1);
  const auto fl = [](int64_t n) { return sizeof(float) * static_cast<size_t>(n); };
  allocate_grads();
  float* G = grads_.as<float>();
  const int64_t up = c_.arch == model::Arch::gpt2 ? c_.hidden : 2 * c_.hidden;
  dnf_.reserve(device_, fl(N * d), "gradients");
  dx_.reserve(device_, fl(N * d), "gradients");
  dact_.reserve(device_, fl(N * c_.hidden), "gradients");
  dpre_.reserve(device_, fl(N * up), "gradients");
  datt_.reserve(device_, fl(N * c_.q_dim()), "gradients");
  dqkv_.reserve(device_, fl(N * c_.qkv_dim()), "gradients");
  grad_in_.reserve(device_, fl(3 * N), "gradients");
  memset_zero(device_, dnf_.as<float>(), fl(N * d));
  CudaOps k = ops();

  // The LM head: logits again a chunk at a time, dlogits in place, back to the hidden states.
  if ((grad_logp.defined() || grad_entropy.defined()) && T > 1) {
    float* gl = grad_in_.as<float>();
    float* ge = gl + targets;
    if (grad_logp.defined()) input(gl, grad_logp);
    if (grad_entropy.defined()) input(ge, grad_entropy);
    head_dhidden_.reserve(device_, fl(chunk_ * d), "gradients");
    const float* W = P() + layout_.lm_head;
    for (int64_t start = 0; start < targets; start += chunk_) {
      const int64_t rows = std::min(chunk_, targets - start);
      head_chunk(k, start, rows);
      logprobs_backward(LogprobsBackwardArgs{head_logits_.as<float>(), DType::f32, head_next_.as<int32_t>(), rows,
                                             c_.vocab, 1.0f / temperature_,
                                             grad_logp.defined() ? gl + start : nullptr,
                                             grad_entropy.defined() ? ge + start : nullptr, head_logits_.as<float>(),
                                             bad_target_.as<int32_t>()});
      k.gemm(false, false, rows, d, c_.vocab, 1.0f, head_logits_.as<float>(), c_.vocab, W, d, 0.0f,
             head_dhidden_.as<float>(), d);
      k.gemm(true, false, c_.vocab, d, rows, 1.0f, head_logits_.as<float>(), c_.vocab, head_hidden_.as<float>(), d, 1.0f,
             G + layout_.lm_head, d);
      head_scatter_add_kernel<<<grid1(rows), row_block(d)>>>(head_dhidden_.as<float>(), dnf_.as<float>(), start, T, d);
      RLF_CUDA_CHECK_LAUNCH("LM head scatter");
    }
  }
  if (grad_values.defined()) {
    float* gv = grad_in_.as<float>() + 2 * targets;
    input(gv, grad_values);
    outer_add_kernel<<<grid1(N), row_block(d)>>>(gv, P() + layout_.score, dnf_.as<float>(), d);
    RLF_CUDA_CHECK_LAUNCH("value head backward");
    k.gemm(true, false, 1, d, N, 1.0f, gv, 1, final_normed_.as<float>(), d, 1.0f, G + layout_.score, d);
  }

  memset_zero(device_, dx_.as<float>(), fl(N * d));
  k.norm_backward(dnf_.as<float>(), x_.as<float>() + 2 * L * N * d, P() + layout_.final_norm_w,
                  layout_.final_norm_b != kNone, stats_.as<float>() + 2 * L * 2 * N, dx_.as<float>(),
                  G + layout_.final_norm_w, layout_.final_norm_b == kNone ? nullptr : G + layout_.final_norm_b, N, d);
  const model::BlockGrads g{dx_.as<float>(),   dnf_.as<float>(),  normed_.as<float>(), dact_.as<float>(),
                            dpre_.as<float>(), datt_.as<float>(), dqkv_.as<float>()};
  for (int64_t l = L - 1; l >= 0; --l) {
    const model::BlockSaved s{B,
                              T,
                              positions_.as<int32_t>(),
                              masked_ ? key_valid_.as<uint8_t>() : nullptr,
                              x_.as<float>() + 2 * l * N * d,
                              x_.as<float>() + (2 * l + 1) * N * d,
                              stats_.as<float>() + 2 * l * 2 * N,
                              stats_.as<float>() + (2 * l + 1) * 2 * N,
                              qkv_.as<float>() + l * N * c_.qkv_dim(),
                              lse_.as<float>() + l * B * c_.heads * T,
                              att_.as<float>() + l * N * c_.q_dim(),
                              pre_.as<float>() + l * N * up,
                              act_.as<float>() + l * N * c_.hidden};
    model::block_backward(k, c_, layout_.layers[l], P(), G, s, g);
  }
  embed_backward(tokens_.as<int32_t>(), G + layout_.token_embedding, N, c_.vocab, "embedding backward");
  if (layout_.position_embedding != kNone) {
    embed_backward(positions_.as<int32_t>(), G + layout_.position_embedding, N, c_.max_positions,
                   "position embedding backward");
  }
  synchronize(device_);
}

void CudaEngine::embed_backward(const int32_t* ids, float* table, int64_t rows, int64_t table_rows, const char* name) {
  const int64_t d = c_.dim;
  const EmbedBackwardPlan p = plan_embed_backward(rows, d, table_rows);
  const int n = static_cast<int>(rows);
  sort_.reserve(device_, static_cast<size_t>(p.scratch_bytes), "the embedding backward's sort");
  int32_t* keys_out = sort_.as<int32_t>();
  int32_t* rows_in = keys_out + rows;
  int32_t* rows_out = rows_in + rows;
  const Launch l = elementwise_launch(rows, sms_);
  iota_kernel<<<grid1(l.grid_x), l.block>>>(rows_in, rows);
  RLF_CUDA_CHECK_LAUNCH(name);
  size_t temp_bytes = 0;
  RLF_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, ids, keys_out, rows_in, rows_out, n, 0, p.id_bits));
  sort_temp_.reserve(device_, std::max<size_t>(temp_bytes, 1), "the embedding backward's sort");
  RLF_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(sort_temp_.as<void>(), temp_bytes, ids, keys_out, rows_in, rows_out, n, 0,
                                                 p.id_bits));
  embed_runs_kernel<<<grid1(p.runs.grid_x), p.runs.block>>>(keys_out, rows_out, dx_.as<float>(), table, rows, d);
  RLF_CUDA_CHECK_LAUNCH(name);
}

double CudaEngine::grad_norm() {
  if (grads_.empty()) return 0.0;
  set_device(device_);
  const Launch l = elementwise_launch(total_, sms_);
  partial_.reserve(device_, sizeof(double) * l.grid_x, "scratch");
  sum_squares_kernel<<<grid1(l.grid_x), l.block>>>(grads_.as<float>(), total_, partial_.as<double>());
  RLF_CUDA_CHECK_LAUNCH("gradient norm");
  std::vector<double> partial(static_cast<size_t>(l.grid_x));
  copy_to_host(device_, partial.data(), partial_.as<double>(), sizeof(double) * partial.size());
  double total = 0.0;
  for (double s : partial) total += s;
  return std::sqrt(total);
}

double CudaEngine::adamw_step(const std::shared_ptr<model::AdamW>& state, int64_t step, double lr, double max_norm) {
  set_device(device_);
  const size_t bytes = sizeof(float) * static_cast<size_t>(total_);
  if (grads_.empty()) {
    grads_.reserve(device_, bytes, "the gradients");
    memset_zero(device_, grads_.as<float>(), bytes);
  }
  if (moments_of_.lock() != state || state->host_moments_changed) {
    download_moments();  // another optimizer's, stepped here: back to its host copy first
    adam_m_.reserve(device_, bytes, "AdamW's first moments");
    adam_v_.reserve(device_, bytes, "AdamW's second moments");
    copy_to_device(device_, adam_m_.as<float>(), state->m().data<float>(), bytes);
    copy_to_device(device_, adam_v_.as<float>(), state->v().data<float>(), bytes);
    moments_of_ = state;
    state->host_moments_changed = false;
  }
  const model::AdamWOptions o = state->with_lr(lr);
  const double norm = grad_norm();
  const Launch l = elementwise_launch(total_, sms_);
  if (max_norm > 0) {
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
      scale_kernel<<<grid1(l.grid_x), l.block>>>(grads_.as<float>(), total_, static_cast<float>(coef));
      RLF_CUDA_CHECK_LAUNCH("gradient clipping");
    }
  }
  model::check_finite_norm(norm);  // as clipped_adamw_step: clipped, then no step
  const model::math::AdamWScalars s =
      model::math::adamw_scalars(o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, static_cast<long long>(step));
  __nv_bfloat16* working = precision_ == Precision::bf16 ? working_.as<__nv_bfloat16>() : nullptr;
  for (const model::DecayRange& r : state->ranges()) {
    const Launch rl = elementwise_launch(r.numel, sms_);
    adamw_kernel<<<grid1(rl.grid_x), rl.block>>>(P() + r.offset, grads_.as<float>() + r.offset,
                                                 adam_m_.as<float>() + r.offset, adam_v_.as<float>() + r.offset,
                                                 working ? working + r.offset : nullptr, r.numel,
                                                 r.decay ? s.decay : 1.0f, s);
    RLF_CUDA_CHECK_LAUNCH("adamw");
  }
  state->device_moments_changed = true;
  return norm;
}

void CudaEngine::download_moments() {
  const std::shared_ptr<model::AdamW> state = moments_of_.lock();
  if (!state || !state->device_moments_changed) return;
  set_device(device_);
  const size_t bytes = sizeof(float) * static_cast<size_t>(total_);
  copy_to_host(device_, state->m().data<float>(), adam_m_.as<float>(), bytes);
  copy_to_host(device_, state->v().data<float>(), adam_v_.as<float>(), bytes);
  state->device_moments_changed = false;
}

}  // namespace

std::unique_ptr<Engine> make_engine(const model::Transformer& host, int device, Precision precision) {
  auto engine = std::make_unique<CudaEngine>(host, device, precision);
  engine->upload_params(host.params().data<float>());
  return engine;
}

}  // namespace rlfarm::cuda
