// Host-side planning of the CUDA engine, pure C++ (compiled in every build, so
// the CPU tests check it for every model shape): which GEMM tiling each matrix
// product takes and its launch shape, the classifier's chunk over the
// vocabulary, the attention kernels' launch shapes, and the bytes of every
// device buffer the engine allocates. The engine (engine.cu) launches what
// these functions return; nothing here touches a device.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../model/config.h"

namespace rlfarm::cuda {

// Weights and GEMM inputs in fp32, or a bf16 working copy of the weights
// (fp32 master weights and AdamW moments) with bf16 tensor-core GEMMs that
// accumulate in fp32.
enum class Precision { f32, bf16 };
const char* precision_name(Precision p);
Precision precision_from_name(const std::string& name, const char* what);

// Threads of the attention and sampling kernels (their launch bounds).
constexpr int kFlashQueries = 64;
constexpr int kDecodeThreads = 128;
constexpr int kSampleThreads = 256;

struct Launch {
  int64_t grid_x = 1, grid_y = 1, grid_z = 1;
  int block = 1;
  int64_t smem_bytes = 0;
};

// One tiling of the engine's own GEMM kernels (gemm.cu): a block computes a
// tile_m x tile_n tile of C, stepping tile_k along K; `tensor_cores` picks the
// bf16 mma kernel, else the fp32 SIMT kernel.
struct GemmTiling {
  int tile_m, tile_n, tile_k, warps;
  bool tensor_cores;
};
// The tilings the kernels are compiled for (gemm.cu instantiates each).
const std::vector<GemmTiling>& gemm_tilings(Precision p);

struct GemmPlan {
  int64_t m, n, k, batch;
  GemmTiling tiling;
  Launch launch;
  double waves;  // blocks / (SMs * blocks per SM): how well the grid fills the GPU
};
// C[m, n] (batch of them) on a GPU with `sms` multiprocessors: the largest
// tiling whose grid has a block for every SM, else the one with the most blocks.
GemmPlan plan_gemm(int64_t m, int64_t n, int64_t k, int64_t batch, Precision p, int sms, const char* what);

// cuBLASLt's view of a row-major product (cublaslt.cu): it sees column-major
// matrices, and the row-major C = op(A) op(B) is the column-major
// C^T = op(B)^T op(A)^T, so its first operand is our B and its second our A.
// Each matrix as cuBLASLt's layout describes it: rows x cols with leading
// dimension ld, column-major, and whether the product takes it transposed.
struct LtMatrix {
  int64_t rows, cols, ld;
  bool transposed;
};
struct LtGemm {
  LtMatrix a, b, c;  // cuBLASLt's A (our B), B (our A), and C = D (ours, n x m)
};
LtGemm plan_cublaslt(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc);

// A named GEMM of a training step, for reports and tests.
struct NamedGemm {
  std::string name;
  GemmPlan plan;
};

// Bytes of each device buffer, as the engine allocates them.
struct MemoryPlan {
  int64_t params = 0;      // fp32 master weights (the model's flat buffer)
  int64_t working = 0;     // bf16 copy of the weights (bf16 only)
  int64_t grads = 0;       // fp32
  int64_t adam_m = 0, adam_v = 0;
  int64_t activations = 0; // kept by a training forward (x, stats, qkv, lse, att, pre, act per layer)
  int64_t scratch = 0;     // per-step scratch (normed, backward's gradients)
  int64_t head = 0;        // the classifier's chunk: hidden rows and logits
  int64_t attention = 0;   // the reference attention's scores [batch * heads, T, T] per layer call, where
                           // the head is too wide for the fused kernels (twice: the backward's gradients)
  int64_t total() const { return params + working + grads + adam_m + adam_v + activations + scratch + head + attention; }
};

// The fused causal attention kernel (flash-style: scores never leave the
// chip): a block of `block` queries, a thread each, walks the keys a tile of
// key_tile rows at a time from shared memory, keeping a running softmax.
// head_dim_tile is the compiled head width it runs at (the head's width
// rounded up to 16, 32, 64 or 128); 0 when the head is wider than 128 and the
// reference attention runs instead. Grid: x over query blocks, (row, head)
// pairs over y, folded into z past y's 65535 (index y + z * grid_y; the
// blocks past the last pair do nothing). The backward's launches likewise.
struct FlashPlan {
  int head_dim_tile = 0, key_tile = 0;
  Launch launch;
};
FlashPlan plan_flash_attention(int64_t queries, int64_t head_dim, int64_t batch_heads);

// The fused attention's backward (training: queries are the keys): a pass for
// dQ (a thread per query, key tiles through shared memory) and one each for dK
// and dV (a thread per key of a kv head, query tiles through shared memory,
// over the heads of its group). head_dim_tile 0 when the head is wider than 64
// (the registers would spill) and the reference backward runs instead.
struct FlashBackwardPlan {
  int head_dim_tile = 0, tile = 0;
  Launch dq, dkv;
};
FlashBackwardPlan plan_flash_attention_backward(int64_t steps, int64_t head_dim, int64_t batch, int64_t heads,
                                                int64_t kv_heads);

// Attention of one query per row over a KV cache of `slots` slots (a decoding
// step): a block per (row, head), its scores in shared memory. supported is
// false when the scores do not fit a block's default shared memory (the
// reference attention runs instead).
struct DecodePlan {
  bool supported = false;
  Launch launch;
};
DecodePlan plan_decode_attention(int64_t batch_heads, int64_t slots);

// Picking each row's next token (model/sampling_math.h's rules): a block per
// row, the vocabulary's chunk masses in shared memory; with top-k or top-p a
// row's candidates are sorted in sort_width (a power of two >= vocab) 64-bit
// keys of device scratch.
struct SamplePlan {
  Launch launch;
  int64_t sort_width = 0;
  int64_t scratch_bytes = 0;  // sort keys and the candidate order of every row (0 without truncation)
};
SamplePlan plan_sampling(int64_t vocab, int64_t batch, bool truncate);

// A generate() call on the device: the KV cache of every layer, the prefill's
// activations, one decoding step's, the logits of a step and the sampler.
struct GeneratePlan {
  int64_t slots = 0;          // cache slots per row: prompt width + max(new tokens, 1)
  int64_t kv_cache_bytes = 0; // keys and values, [layers, batch, slots, kv_dim] each, fp32
  int64_t prefill_bytes = 0;  // the prefill's activations (one layer's, reused)
  int64_t step_bytes = 0;     // a decoding step's activations and [batch, vocab] logits
  FlashPlan prefill_attention;
  DecodePlan decode_attention;
  SamplePlan sampling;
  int64_t total() const { return kv_cache_bytes + prefill_bytes + step_bytes + sampling.scratch_bytes; }
};
GeneratePlan plan_generate(const model::ModelConfig& config, int64_t batch, int64_t prompt, int64_t new_tokens,
                           bool truncate);

// Column sums over the rows of a [rows, cols] array, `sums` of them per column
// (a bias's gradient: 1; a norm's weight and bias gradients: 2), in a fixed
// order and in parallel: blocks of 32 columns x 8 row lanes each add a chunk
// of chunk_rows rows into scratch (`partials`), then a thread per column adds
// the chunks in order (`finish`). A thread per column walking every row would
// leave most of the GPU idle (768 columns are 6 blocks).
struct ColumnSumPlan {
  int64_t chunk_rows = 0, chunks = 0;
  Launch partials, finish;
  int64_t scratch_floats = 0;  // [chunks, sums, cols]
};
constexpr int kColumnTile = 32, kColumnLanes = 8;
ColumnSumPlan plan_column_sums(int64_t rows, int64_t cols, int sums);

// An embedding's backward (table[ids[r]] += dx[r]): the row indices sorted by
// id (a stable radix sort over id_bits bits), then a block per row whose id
// starts a run of equal ids adds the run's rows in row order; scratch for the
// sort (its temporary storage is the sort's own, sized at run time).
struct EmbedBackwardPlan {
  int id_bits = 1;
  Launch runs;
  int64_t scratch_bytes = 0;  // the sorted ids, and the row indices before and after the sort
};
EmbedBackwardPlan plan_embed_backward(int64_t rows, int64_t dim, int64_t table_rows);

struct EnginePlan {
  int64_t batch, steps, rows;
  Precision precision;
  bool train;
  int64_t head_chunk_rows;  // classifier rows per chunk: [rows, vocab] logits at most ~64 MB
  std::vector<NamedGemm> gemms;
  Launch norm, elementwise, embed, attention_softmax, attention_decode, classifier, adamw;
  ColumnSumPlan column_sums;  // the widest of a backward's bias and norm gradients (train only)
  EmbedBackwardPlan embed_backward;  // the token embedding's (train only)
  FlashPlan attention_flash;  // the forward's attention
  FlashBackwardPlan attention_flash_backward;  // the backward's (train only)
  MemoryPlan memory;
};

// Everything the engine launches for a forward (train: and its backward) of
// [batch, steps] tokens; checks the shapes, naming the bad one.
EnginePlan plan_engine(const model::ModelConfig& config, int64_t batch, int64_t steps, Precision p, bool train,
                       int sms);

// Threads of a row-wise kernel (norms, softmax): a power of two in [32, 1024]
// near width / 4 (each thread takes at least 4 elements).
int row_block(int64_t width);
// A 1-D grid-stride launch over n elements.
Launch elementwise_launch(int64_t n, int sms);
// Rows of the classifier's chunk for a vocabulary: at most ~64 MB of fp32 logits, at least 1.
int64_t head_chunk_rows(int64_t vocab, int64_t rows);

}  // namespace rlfarm::cuda
