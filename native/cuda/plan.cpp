#include "plan.h"

#include <algorithm>

#include "../core/error.h"
#include "../model/layout.h"
#include "../model/sampling_math.h"

namespace rlfarm::cuda {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A grid's y and z dimensions hold at most 65535 blocks each: `count` blocks
// (one per (row, head)) go in y, and past 65535 fold into z; the kernel's
// index is blockIdx.y + blockIdx.z * gridDim.y, and blocks past count return.
constexpr int64_t kMaxGridYZ = 65535;
void fold_yz(Launch& l, int64_t count, const char* what) {
  l.grid_y = std::min(count, kMaxGridYZ);
  l.grid_z = ceil_div(count, l.grid_y);
  RLF_CHECK(l.grid_z <= kMaxGridYZ, what, ": ", count, " (row, head) pairs exceed a grid's y x z limit");
}

constexpr int64_t kF32 = 4, kBf16 = 2;
// Shared memory a block may use without opting in (the engine never opts in).
constexpr int64_t kDefaultSmem = 48 * 1024;

int64_t tiling_smem(const GemmTiling& t) {
  if (t.tensor_cores) {
    // A tile [tile_m, tile_k + 8] and B tile [tile_k, tile_n + 8] in bf16 (the
    // padding staggers banks), and a 16 x 16 fp32 staging tile per warp for the epilogue.
    return (t.tile_m * (t.tile_k + 8) + t.tile_k * (t.tile_n + 8)) * kBf16 + t.warps * 256 * kF32;
  }
  // A stored k-major [tile_k, tile_m + 4] and B [tile_k, tile_n + 4], fp32.
  return (t.tile_k * (t.tile_m + 4) + t.tile_k * (t.tile_n + 4)) * kF32;
}

int blocks_per_sm(const GemmTiling& t) {
  const int64_t by_threads = 2048 / (t.warps * 32);
  const int64_t by_smem = (228 * 1024) / std::max<int64_t>(tiling_smem(t), 1);
  return static_cast<int>(std::max<int64_t>(1, std::min(by_threads, by_smem)));
}

void check_positive(int64_t v, const char* what, const char* name) {
  RLF_CHECK(v > 0, what, ": ", name, " must be > 0; got ", v);
}

}  // namespace

const char* precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : "f32"; }

Precision precision_from_name(const std::string& name, const char* what) {
  if (name == "f32" || name == "fp32") return Precision::f32;
  if (name == "bf16") return Precision::bf16;
  fail(what, ": precision must be 'f32' or 'bf16'; got '", name, "'");
}

const std::vector<GemmTiling>& gemm_tilings(Precision p) {
  // Largest first: plan_gemm takes the first that fills the GPU.
  static const std::vector<GemmTiling> bf16{{128, 128, 32, 8, true}, {64, 128, 32, 4, true}, {64, 64, 32, 4, true}};
  static const std::vector<GemmTiling> f32{{64, 64, 16, 8, false}, {32, 32, 16, 4, false}};
  return p == Precision::bf16 ? bf16 : f32;
}

GemmPlan plan_gemm(int64_t m, int64_t n, int64_t k, int64_t batch, Precision p, int sms, const char* what) {
  check_positive(m, what, "m");
  check_positive(n, what, "n");
  check_positive(k, what, "k");
  check_positive(batch, what, "batch");
  RLF_CHECK(sms > 0, what, ": the GPU's multiprocessor count must be > 0; got ", sms);
  const std::vector<GemmTiling>& tilings = gemm_tilings(p);
  GemmPlan best{};
  bool have = false;
  for (const GemmTiling& t : tilings) {
    GemmPlan plan{m, n, k, batch, t, {}, 0};
    plan.launch.grid_x = ceil_div(n, t.tile_n);
    plan.launch.grid_y = ceil_div(m, t.tile_m);
    plan.launch.grid_z = batch;
    plan.launch.block = t.warps * 32;
    plan.launch.smem_bytes = tiling_smem(t);
    RLF_CHECK(plan.launch.smem_bytes <= kDefaultSmem, what, ": tiling ", t.tile_m, "x", t.tile_n,
              " needs more shared memory than a block gets by default");
    const double blocks = static_cast<double>(plan.launch.grid_x * plan.launch.grid_y * batch);
    plan.waves = blocks / (static_cast<double>(sms) * blocks_per_sm(t));
    // The first (largest) tiling with a block for every SM; else the one with the most blocks.
    if (blocks >= sms) return plan;
    if (!have || blocks > static_cast<double>(best.launch.grid_x * best.launch.grid_y * batch)) {
      best = plan;
      have = true;
    }
  }
  return best;
}

LtGemm plan_cublaslt(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc) {
  // Row-major X [r, c] with row stride ld is column-major X^T [c, r] with the same ld.
  LtGemm p;
  // op(B) is [k, n]; cuBLASLt's A must be [n, k] after its op.
  p.a = trans_b ? LtMatrix{k, n, ldb, true} : LtMatrix{n, k, ldb, false};
  // op(A) is [m, k]; cuBLASLt's B must be [k, m] after its op.
  p.b = trans_a ? LtMatrix{m, k, lda, true} : LtMatrix{k, m, lda, false};
  p.c = LtMatrix{n, m, ldc, false};
  return p;
}

int row_block(int64_t width) {
  int threads = 32;
  while (threads < 1024 && threads * 4 < width) threads *= 2;
  return threads;
}

Launch elementwise_launch(int64_t n, int sms) {
  Launch l;
  l.block = 256;
  l.grid_x = std::max<int64_t>(1, std::min<int64_t>(ceil_div(n, l.block), static_cast<int64_t>(sms) * 8));
  return l;
}

int64_t head_chunk_rows(int64_t vocab, int64_t rows) {
  const int64_t chunk = std::max<int64_t>(1, (int64_t(16) << 20) / vocab);  // 16 M floats: 64 MB of logits
  return std::max<int64_t>(1, std::min(chunk, rows));
}

FlashPlan plan_flash_attention(int64_t queries, int64_t head_dim, int64_t batch_heads) {
  const char* what = "cuda plan: fused attention";
  check_positive(queries, what, "queries");
  check_positive(head_dim, what, "head_dim");
  check_positive(batch_heads, what, "batch * heads");
  FlashPlan f;
  for (int tile : {16, 32, 64, 128}) {
    if (head_dim <= tile) {
      f.head_dim_tile = tile;
      break;
    }
  }
  if (f.head_dim_tile == 0) return f;
  // Keys and values of a tile in fp32: 64 rows, or 32 at width 128, stay within 32 KB.
  f.key_tile = f.head_dim_tile <= 64 ? 64 : 32;
  f.launch.block = kFlashQueries;
  f.launch.grid_x = ceil_div(queries, kFlashQueries);
  fold_yz(f.launch, batch_heads, what);
  f.launch.smem_bytes = 2 * int64_t(f.key_tile) * f.head_dim_tile * kF32 + f.key_tile;  // K, V, key validity
  return f;
}

FlashBackwardPlan plan_flash_attention_backward(int64_t steps, int64_t head_dim, int64_t batch, int64_t heads,
                                                int64_t kv_heads) {
  const char* what = "cuda plan: fused attention backward";
  check_positive(steps, what, "steps");
  check_positive(batch, what, "batch");
  check_positive(kv_heads, what, "kv_heads");
  FlashBackwardPlan p;
  const FlashPlan forward = plan_flash_attention(steps, head_dim, batch * heads);
  if (forward.head_dim_tile == 0 || forward.head_dim_tile > 64) return p;
  p.head_dim_tile = forward.head_dim_tile;
  p.tile = forward.key_tile;
  p.dq = forward.launch;  // a thread per query; key tiles: K, V and validity
  p.dkv.block = kFlashQueries;
  p.dkv.grid_x = ceil_div(steps, kFlashQueries);
  fold_yz(p.dkv, batch * kv_heads, what);
  // Query tiles: Q and dO rows, each query's log-sum-exp and D = dO . O.
  p.dkv.smem_bytes = 2 * int64_t(p.tile) * p.head_dim_tile * kF32 + 2 * int64_t(p.tile) * kF32;
  return p;
}

DecodePlan plan_decode_attention(int64_t batch_heads, int64_t slots) {
  const char* what = "cuda plan: decode attention";
  check_positive(batch_heads, what, "batch * heads");
  check_positive(slots, what, "slots");
  DecodePlan p;
  p.launch.grid_x = batch_heads;
  p.launch.block = kDecodeThreads;
  p.launch.smem_bytes = slots * kF32;  // one score per slot
  p.supported = p.launch.smem_bytes <= kDefaultSmem - 1024;  // the kernel's static scratch beside it
  return p;
}

SamplePlan plan_sampling(int64_t vocab, int64_t batch, bool truncate) {
  const char* what = "cuda plan: sampling";
  check_positive(vocab, what, "vocab");
  check_positive(batch, what, "batch");
  SamplePlan p;
  p.launch.grid_x = batch;
  p.launch.block = kSampleThreads;
  p.launch.smem_bytes = model::sampling::mass_chunks(vocab) * 8;  // a double per chunk
  RLF_CHECK(p.launch.smem_bytes <= kDefaultSmem - 4096, what, ": a vocabulary of ", vocab,
            " tokens has too many chunks for a block's shared memory");
  if (truncate) {
    p.sort_width = 1;
    while (p.sort_width < vocab) p.sort_width *= 2;
    p.scratch_bytes = batch * (p.sort_width * 8 + vocab * 4);
  }
  return p;
}

GeneratePlan plan_generate(const model::ModelConfig& c, int64_t batch, int64_t prompt, int64_t new_tokens,
                           bool truncate) {
  const char* what = "cuda plan: generate";
  c.validate();
  check_positive(batch, what, "batch");
  check_positive(prompt, what, "prompt width");
  RLF_CHECK(new_tokens >= 0, what, ": new tokens must be >= 0; got ", new_tokens);
  GeneratePlan g;
  g.slots = prompt + std::max<int64_t>(new_tokens, 1);
  const int64_t up = c.arch == model::Arch::gpt2 ? c.hidden : 2 * c.hidden;
  g.kv_cache_bytes = 2 * c.layers * batch * g.slots * c.kv_dim() * kF32;
  const auto activations = [&](int64_t rows) {
    // x, normed, stats, qkv, att, pre, act; the prompt's tokens, positions, validity.
    return (2 * rows * c.dim + 2 * rows + rows * c.qkv_dim() + rows * c.q_dim() + rows * up + rows * c.hidden) * kF32 +
           rows * (4 + 4 + 1);
  };
  g.prefill_bytes = activations(batch * prompt);
  g.step_bytes = activations(batch) + batch * c.vocab * kF32 + batch * g.slots +
                 batch * new_tokens * (4 + 4) + batch * (4 + 4 + 4 + 8 + 1);  // tokens, log-probs; per-row state
  g.prefill_attention = plan_flash_attention(prompt, c.head_dim, batch * c.heads);
  g.decode_attention = plan_decode_attention(batch * c.heads, g.slots);
  g.sampling = plan_sampling(c.vocab, batch, truncate);
  return g;
}

ColumnSumPlan plan_column_sums(int64_t rows, int64_t cols, int sums) {
  const char* what = "cuda column sums";
  check_positive(rows, what, "rows");
  check_positive(cols, what, "cols");
  RLF_CHECK(sums == 1 || sums == 2, what, ": sums must be 1 or 2; got ", sums);
  ColumnSumPlan out;
  // At most 1024 chunks (the finishing pass adds them serially), of at least 64 rows, a multiple of the lanes.
  out.chunk_rows = ceil_div(std::max<int64_t>(64, ceil_div(rows, 1024)), kColumnLanes) * kColumnLanes;
  out.chunks = ceil_div(rows, out.chunk_rows);
  const int64_t tiles = ceil_div(cols, kColumnTile);
  RLF_CHECK(tiles <= 0x7fffffff, what, ": ", cols, " columns exceed a grid's 2^31 - 1 blocks");
  out.partials = Launch{tiles, out.chunks, 1, kColumnTile * kColumnLanes, 0};
  out.finish = Launch{ceil_div(cols * sums, 128), 1, 1, 128, 0};
  out.scratch_floats = out.chunks * sums * cols;
  return out;
}

EmbedBackwardPlan plan_embed_backward(int64_t rows, int64_t dim, int64_t table_rows) {
  const char* what = "cuda embedding backward";
  check_positive(rows, what, "rows");
  check_positive(dim, what, "dim");
  check_positive(table_rows, what, "table rows");
  // The sort takes int counts and int keys.
  RLF_CHECK(rows <= 0x7fffffff && table_rows <= 0x7fffffff, what, ": ", rows, " rows of a ", table_rows,
            "-row table exceed the sort's 2^31 - 1");
  EmbedBackwardPlan out;
  while (out.id_bits < 31 && (int64_t{1} << out.id_bits) < table_rows) ++out.id_bits;
  out.runs = Launch{rows, 1, 1, row_block(dim), 0};
  out.scratch_bytes = 3 * rows * 4;
  return out;
}

EnginePlan plan_engine(const model::ModelConfig& c, int64_t batch, int64_t steps, Precision p, bool train, int sms) {
  const char* what = "cuda plan";
  c.validate();
  check_positive(batch, what, "batch");
  check_positive(steps, what, "steps");
  RLF_CHECK(sms > 0, what, ": the GPU's multiprocessor count must be > 0; got ", sms);
  EnginePlan e{};
  e.batch = batch;
  e.steps = steps;
  e.rows = batch * steps;
  e.precision = p;
  e.train = train;
  const int64_t N = e.rows, d = c.dim, L = c.layers, H = c.heads, T = steps, hd = c.head_dim;
  const int64_t up = c.arch == model::Arch::gpt2 ? c.hidden : 2 * c.hidden;
  const int64_t targets = batch * std::max<int64_t>(T - 1, 1);
  e.head_chunk_rows = head_chunk_rows(c.vocab, targets);
  const int64_t chunk = e.head_chunk_rows;

  const auto gemm = [&](const char* name, int64_t m, int64_t n, int64_t k, int64_t count) {
    e.gemms.push_back({name, plan_gemm(m, n, k, count, p, sms, name)});
  };
  gemm("qkv", N, c.qkv_dim(), d, 1);
  gemm("attention scores", T, T, hd, batch * H);
  gemm("attention values", T, hd, T, batch * H);
  gemm("out", N, d, c.q_dim(), 1);
  gemm("up", N, up, d, 1);
  gemm("down", N, d, c.hidden, 1);
  gemm("head", chunk, c.vocab, d, 1);
  if (train) {
    gemm("down dW", d, c.hidden, N, 1);
    gemm("down dX", N, c.hidden, d, 1);
    gemm("up dW", up, d, N, 1);
    gemm("up dX", N, d, up, 1);
    gemm("out dW", d, c.q_dim(), N, 1);
    gemm("out dX", N, c.q_dim(), d, 1);
    gemm("attention dP", T, T, hd, batch * H);
    gemm("attention dV", T, hd, T, batch * H);
    gemm("attention dQ", T, hd, T, batch * H);
    gemm("attention dK", T, hd, T, batch * H);
    gemm("qkv dW", c.qkv_dim(), d, N, 1);
    gemm("qkv dX", N, d, c.qkv_dim(), 1);
    gemm("head dX", chunk, d, c.vocab, 1);
    gemm("head dW", c.vocab, d, chunk, 1);
  }

  e.norm = Launch{N, 1, 1, row_block(d), 0};
  e.embed = Launch{N, 1, 1, row_block(d), 0};
  e.elementwise = elementwise_launch(N * std::max(up, d), sms);
  e.attention_softmax = Launch{batch * H * T, 1, 1, row_block(T), 0};
  e.attention_decode = plan_decode_attention(batch * H, T).launch;  // a decoding step over T cache slots
  e.classifier = Launch{chunk, 1, 1, 256, 0};
  e.attention_flash = plan_flash_attention(T, hd, batch * H);
  if (train) {
    e.attention_flash_backward = plan_flash_attention_backward(T, hd, batch, H, c.kv_heads);
    e.column_sums = plan_column_sums(N, std::max({d, up, c.qkv_dim()}), 2);
    e.embed_backward = plan_embed_backward(N, d, std::max<int64_t>(c.vocab, c.max_positions));
  }

  MemoryPlan& m = e.memory;
  const int64_t total = static_cast<int64_t>(model::make_layout(c).total);  // the buffer the engine allocates
  m.params = total * kF32;
  m.working = p == Precision::bf16 ? total * kBf16 : 0;
  e.adamw = elementwise_launch(total, sms);
  if (train) {
    m.grads = total * kF32;
    m.adam_m = total * kF32;
    m.adam_v = total * kF32;
  }
  const int64_t x_slots = train ? 2 * L + 1 : 1, layer_slots = train ? L : 1;
  m.activations = (x_slots * N * d + x_slots * 2 * N + layer_slots * (N * c.qkv_dim() + batch * H * T + N * c.q_dim() +
                                                                       N * up + N * c.hidden) +
                   N * d) *
                  kF32;
  m.scratch = N * d * kF32 + N * (4 + 4 + 1);  // normed; tokens, positions, key_valid
  if (train) {
    m.scratch += (2 * N * d + N * c.hidden + N * up + N * c.q_dim() + N * c.qkv_dim()) * kF32;
    m.scratch += e.column_sums.scratch_floats * kF32 + e.embed_backward.scratch_bytes;
  }
  m.head = (chunk * d + chunk * c.vocab + (train ? chunk * d : 0)) * kF32 + chunk * 4;
  // Scores (and their gradients, for a backward) where the reference attention runs.
  const int64_t scores = batch * H * T * T * kF32;
  if (train && e.attention_flash_backward.head_dim_tile == 0) m.attention = 2 * scores;
  else if (e.attention_flash.head_dim_tile == 0) m.attention = scores;
  return e;
}

}  // namespace rlfarm::cuda
