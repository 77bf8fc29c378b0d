// The builtin GEMM, written once over the vector layer in simd.h and
// compiled per instruction set (gemm_generic.cpp, gemm_avx2.cpp,
// gemm_avx512.cpp), in the GotoBLAS/BLIS shape. On one thread (gemm_serial):
//
//   for each depth block of K (at most kMaxDepth deep):
//     for each row block of C (kBlockRows tall, usually all rows):
//       pack that block of op(A) into kTileRows-tall panels
//         (or read A in place when its rows run along k)
//       for each column block of C (kBlockCols wide):
//         pack that block of op(B) into kTileCols-wide panels       (stays in L2)
//         for each A panel (stays in L1), for each B panel: one register tile
//
// On the pool (gemm_parallel) the same tiles run over one shared packed
// operand, with chunks of C claimed by the threads.
//
// The register tile keeps kTileRows x kTileCols of C in vector registers over
// the whole depth block: per step of k it loads one row of the B panel and
// broadcasts kTileRows values of A into fused multiply-adds.
//
// Every element of C is computed the same way wherever it lies in a tile, a
// block or a thread's share of C: products summed in k order within a depth
// block, then C = alpha * sum + beta * C for the first depth block and
// C = alpha * sum + C for the others. Depth blocks depend on K only, so the
// result does not depend on how the driver splits C over threads.
#pragma once

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "../core/error.h"
#include "../core/thread_pool.h"
#include "gemm_kernel.h"
#include "simd.h"

namespace rlfarm::cpu::RLF_ISA {
namespace gemm {

// Register tile: kTileRows rows of C, each kTileVectors vectors wide. AVX-512
// has 32 registers: 24 accumulators, 3 for the B row, 1 for the A broadcast
// (8 x 48: per step of k, 3 loads and 8 broadcasts feed 24 multiply-adds; in
// the same loop it beat the 12 x 32 tile, 14 loads per 24, by about 7% on the
// transformer's products, bench:gemm builtin-vs-OpenBLAS ratios).
// AVX2 has 16: 12 accumulators, 2 for B, 1 for the broadcast.
//
// Cache blocks, for the loop order in gemm_serial: the A panel of a tile
// (kTileRows x depth) stays in L1 while the tile walks along the B panels of
// a block (depth x kBlockCols), which stay in L2; each depth block costs one
// pass over C, so depth blocks are as deep as the A panel allows.
// Measured on Ice Lake (48 KB L1, 1.25 MB L2): depth 512, B block 768 KB.
// The AVX2 blocks (B block 256 KB) leave room in the smaller L2 of AVX2-only CPUs.
#if defined(__AVX512F__)
constexpr int kTileRows = 8, kTileVectors = 3;
constexpr int64_t kMaxDepth = 512, kBlockCols = 384;
#elif defined(__AVX2__)
constexpr int kTileRows = 6, kTileVectors = 2;
constexpr int64_t kMaxDepth = 256, kBlockCols = 256;
#else
constexpr int kTileRows = 4, kTileVectors = 4;
constexpr int64_t kMaxDepth = 256, kBlockCols = 256;
#endif
constexpr int kTileCols = kTileVectors * kWidth;
// A whole thread's share of rows is usually one row block, so that A is packed
// once per depth block; past this, B is packed again for every row block.
constexpr int64_t kBlockRows = 128 * kTileRows;

// The tile's multiply-add: fused where the ISA has FMA; in the generic build a
// separate multiply and add, since std::fma without FMA hardware is a slow call.
inline VF multiply_add(VF a, VF b, VF c) {
#if defined(__FMA__)
  return fma(a, b, c);
#else
  return a * b + c;
#endif
}

// a + b rounded on its own. GCC contracts a * b + c into one FMA by default,
// which would round alpha * sum + bias once where a separate add (the
// contract of sgemm_bias) rounds twice; the empty asm hides how a was made.
inline VF add_unfused(VF a, VF b) {
#if defined(__GNUC__) && (defined(__AVX2__) || defined(__AVX512F__))
  __asm__("" : "+v"(a.v));
#elif defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __asm__("" : "+x"(a.v));
#elif defined(__GNUC__) && defined(__aarch64__)
  __asm__("" : "+w"(a.v));
#endif
  return a + b;
}

inline int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

// A growable 64-byte-aligned scratch buffer; one per thread for each operand.
class PackBuffer {
 public:
  PackBuffer() = default;
  PackBuffer(const PackBuffer&) = delete;
  PackBuffer& operator=(const PackBuffer&) = delete;
  ~PackBuffer() { std::free(data_); }

  float* get(int64_t floats) {
    const size_t bytes = static_cast<size_t>(round_up(floats * 4, 64));
    if (bytes > bytes_) {
      std::free(data_);
      data_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      bytes_ = data_ ? bytes : 0;
      RLF_CHECK(data_, "sgemm: out of memory allocating a ", bytes, "-byte packing buffer");
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  size_t bytes_ = 0;
};

// Packing. Both operands are packed the same way: a block of `lanes` x `depth`
// becomes panels of kPanel lanes, each stored k-major (panel[k * kPanel + l]),
// lanes past the end zero-filled so that whole vectors can be loaded. For A
// the lanes are rows of op(A) (kPanel = kTileRows), for B columns of op(B)
// (kPanel = kTileCols). Depending on the transpose flag a panel's lanes lie
// side by side in memory (a copy per k) or each lane runs along k (a transpose).

#if defined(__AVX512F__)
// out[l] = x[l] for l < lanes (<= kPanel), zero up to kPanel: masked vector
// moves, so a partial panel costs no more than a whole one.
template <int kPanel>
inline void copy_lanes(const float* x, int64_t lanes, float* out) {
#pragma GCC unroll 4
  for (int v = 0; v < kPanel; v += 16) {
    const int64_t valid = std::clamp<int64_t>(lanes - v, 0, 16);
    const __mmask16 load_mask = static_cast<__mmask16>((1u << valid) - 1);
    const __mmask16 store_mask = static_cast<__mmask16>((1u << std::min(16, kPanel - v)) - 1);
    _mm512_mask_storeu_ps(out + v, store_mask, _mm512_maskz_loadu_ps(load_mask, x + v));
  }
}
#else
template <int kPanel>
inline void copy_lanes(const float* x, int64_t lanes, float* out) {
  if (lanes == kPanel) {
    std::memcpy(out, x, sizeof(float) * kPanel);  // fixed size: a few vector moves
  } else {
    std::memcpy(out, x, sizeof(float) * lanes);
    std::memset(out + lanes, 0, sizeof(float) * (kPanel - lanes));
  }
}
#endif

// Panels of lanes that lie side by side: out (panel p)[k * kPanel + l] =
// x[k * ld + p * kPanel + l]. A group of panels (at least 64 lanes, a few
// cache lines) is copied together for each k: when ld is long every k is a
// new line, and narrow A panels (8 lanes) copied one at a time left each
// load waiting on its own miss.
template <int kPanel>
inline void pack_copy(const float* x, int64_t ld, int64_t lanes, int64_t depth, float* out) {
  constexpr int64_t kGroup = kPanel >= 64 ? kPanel : (64 + kPanel - 1) / kPanel * kPanel;
  for (int64_t g = 0; g < lanes; g += kGroup) {
    const int64_t group = std::min(kGroup, lanes - g);
    float* panel0 = out + g * depth;
    for (int64_t k = 0; k < depth; ++k) {
      const float* row = x + k * ld + g;
      for (int64_t p = 0; p < group; p += kPanel) {
        copy_lanes<kPanel>(row + p, std::min<int64_t>(kPanel, group - p), panel0 + p * depth + k * kPanel);
      }
    }
  }
}

#if defined(__AVX512F__)

// In-register transpose of 16 rows of 16 floats: r[c] becomes column c.
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // r[4g + j], 128-bit lane L: column 4L + j of rows 4g .. 4g + 3.
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g) {
    r[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    r[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xee);
    r[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    r[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xee);
  }
  // Gather lane L of the four row groups for each column 4L + j.
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const __m512 even_lo = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
    const __m512 odd_lo = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xdd);
    const __m512 even_hi = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
    const __m512 odd_hi = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xdd);
    t[j] = _mm512_shuffle_f32x4(even_lo, even_hi, 0x88);
    t[8 + j] = _mm512_shuffle_f32x4(even_lo, even_hi, 0xdd);
    t[4 + j] = _mm512_shuffle_f32x4(odd_lo, odd_hi, 0x88);
    t[12 + j] = _mm512_shuffle_f32x4(odd_lo, odd_hi, 0xdd);
  }
#pragma GCC unroll 16
  for (int c = 0; c < 16; ++c) r[c] = t[c];
}

// Panels of lanes that each run along k: out (panel p)[k * kPanel + l] =
// x[(p * kPanel + l) * ld + k], zero for lanes past `lanes`. 16 lanes x 16 k
// at a time through registers; a strip of 16 lanes fills two 8-lane panels
// (A) or a third of a 48-lane one (B), so no transpose carries zero rows
// except at the end.
template <int kPanel>
inline void pack_transpose_all(const float* x, int64_t ld, int64_t lanes, int64_t depth, float* out) {
  static_assert(kPanel == 8 || kPanel % 16 == 0, "an AVX-512 panel is 8 lanes or whole vectors");
  const int64_t padded = round_up(lanes, kPanel);
  for (int64_t s = 0; s < padded; s += 16) {
    float* panel = out + s / kPanel * kPanel * depth;
    const int64_t offset = s % kPanel;  // where the strip starts in its panel (kPanel % 16 == 0)
    const bool second = kPanel == 8 && s + 8 < padded;  // an 8-lane strip's upper half is the next panel
    for (int64_t k0 = 0; k0 < depth; k0 += 16) {
      const int64_t count = std::min<int64_t>(16, depth - k0);
      const __mmask16 load_mask = static_cast<__mmask16>((1u << count) - 1);
      __m512 v[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) {
        v[i] = s + i < lanes ? _mm512_maskz_loadu_ps(load_mask, x + (s + i) * ld + k0) : _mm512_setzero_ps();
      }
      transpose16(v);
      for (int64_t k = 0; k < count; ++k) {
        if constexpr (kPanel == 8) {
          _mm256_storeu_ps(panel + (k0 + k) * 8, _mm512_castps512_ps256(v[k]));
          if (second) {
            _mm256_storeu_ps(panel + depth * 8 + (k0 + k) * 8,
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v[k]), 1)));
          }
        } else {
          _mm512_storeu_ps(panel + (k0 + k) * kPanel + offset, v[k]);
        }
      }
    }
  }
}

#elif defined(__AVX2__)

// In-register transpose of 8 rows of 8 floats: r[c] becomes column c.
inline void transpose8(__m256 r[8]) {
  __m256 t[8];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // r[4g + j], 128-bit lane L: column 4L + j of rows 4g .. 4g + 3.
#pragma GCC unroll 2
  for (int g = 0; g < 2; ++g) {
    r[4 * g] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    r[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xee);
    r[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    r[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xee);
  }
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    t[j] = _mm256_permute2f128_ps(r[j], r[4 + j], 0x20);
    t[4 + j] = _mm256_permute2f128_ps(r[j], r[4 + j], 0x31);
  }
#pragma GCC unroll 8
  for (int c = 0; c < 8; ++c) r[c] = t[c];
}

// First n lanes of 8 on, the rest off, as AVX2 masked loads and stores take them.
inline __m256i lane_mask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// out[k * kPanel + l] = x[l * ld + k] for l < lanes (<= kPanel), zero beyond:
// 8 lanes x 8 k at a time through registers.
template <int kPanel>
inline void pack_transpose(const float* x, int64_t ld, int64_t lanes, int64_t depth, float* out) {
  for (int l0 = 0; l0 < kPanel; l0 += 8) {
    const __m256i store_mask = lane_mask(std::min(8, kPanel - l0));
    for (int64_t k0 = 0; k0 < depth; k0 += 8) {
      const int64_t count = std::min<int64_t>(8, depth - k0);
      const __m256i load_mask = lane_mask(count);
      __m256 v[8];
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) {
        v[i] = l0 + i < lanes ? _mm256_maskload_ps(x + (l0 + i) * ld + k0, load_mask) : _mm256_setzero_ps();
      }
      transpose8(v);
      for (int64_t k = 0; k < count; ++k) _mm256_maskstore_ps(out + (k0 + k) * kPanel + l0, store_mask, v[k]);
    }
  }
}

#else

// out[k * kPanel + l] = x[l * ld + k] for l < lanes (<= kPanel), zero beyond.
template <int kPanel>
inline void pack_transpose(const float* x, int64_t ld, int64_t lanes, int64_t depth, float* out) {
  for (int64_t k = 0; k < depth; ++k, out += kPanel) {
    for (int64_t l = 0; l < kPanel; ++l) out[l] = l < lanes ? x[l * ld + k] : 0.0f;
  }
}

#endif

// Packs the lanes x depth block at x into panels of kPanel lanes. Element
// (lane l, step k) is x[k * ld + l] when lanes_contiguous, else x[l * ld + k].
template <int kPanel>
inline void pack_panels(const float* x, int64_t ld, bool lanes_contiguous, int64_t lanes, int64_t depth, float* out) {
  if (lanes_contiguous) {
    pack_copy<kPanel>(x, ld, lanes, depth, out);
    return;
  }
#if defined(__AVX512F__)
  pack_transpose_all<kPanel>(x, ld, lanes, depth, out);
#else
  for (int64_t l = 0; l < lanes; l += kPanel, out += depth * kPanel) {
    pack_transpose<kPanel>(x + l * ld, ld, std::min<int64_t>(kPanel, lanes - l), depth, out);
  }
#endif
}

// One register tile: C[0:kRows, 0:cols] = alpha * A_panel * B_panel + beta * C,
// where beta == 0 means C is not read, then + bias[0:cols] on each row when
// bias is set. kRows < kTileRows serves the last rows and kVectors <
// kTileVectors the last columns (the B panel keeps its kTileCols stride), so
// that a ragged edge of C costs only the vectors it needs. The A panel is
// packed (row r of step k at a[k * kTileRows + r]) or, kInPlace, A itself
// (a[r * a_ld + k]).
template <int kRows, int kVectors, bool kInPlace>
void tile(int64_t depth, const float* a, int64_t a_ld, const float* b, float* c, int64_t ldc, int cols, float alpha,
          float beta, const float* bias) {
  VF acc[kRows][kVectors];
  // C is stored at the end; fetching it now hides the misses behind the products.
#pragma GCC unroll 16
  for (int r = 0; r < kRows; ++r) {
    __builtin_prefetch(c + r * ldc, 1);
    __builtin_prefetch(c + r * ldc + kVectors * kWidth - 1, 1);
  }
#pragma GCC unroll 16
  for (int r = 0; r < kRows; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) acc[r][v] = vset(0.0f);
  }
#pragma GCC unroll 4
  for (int64_t k = 0; k < depth; ++k, a += kInPlace ? 1 : kTileRows, b += kTileCols) {
    VF bk[kVectors];
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) bk[v] = vload(b + v * kWidth);
#pragma GCC unroll 16
    for (int r = 0; r < kRows; ++r) {
      const VF ar = vset(kInPlace ? a[r * a_ld] : a[r]);
#pragma GCC unroll 4
      for (int v = 0; v < kVectors; ++v) acc[r][v] = multiply_add(ar, bk[v], acc[r][v]);
    }
  }
  const VF va = vset(alpha), vb = vset(beta);
#pragma GCC unroll 16
  for (int r = 0; r < kRows; ++r) {
    float* row = c + r * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) {
      const int lanes = std::min(kWidth, cols - v * kWidth);
      if (lanes <= 0) continue;
      float* out = row + v * kWidth;
      const bool whole = lanes == kWidth;
      VF result = va * acc[r][v];
      if (beta != 0.0f) result = multiply_add(va, acc[r][v], vb * (whole ? vload(out) : vload_partial(out, lanes, 0.0f)));
      if (bias) {
        const float* bv = bias + v * kWidth;
        result = add_unfused(result, whole ? vload(bv) : vload_partial(bv, lanes, 0.0f));
      }
      if (whole) {
        vstore(out, result);
      } else {
        vstore_partial(out, result, lanes);
      }
    }
  }
}

using TileFn = void (*)(int64_t, const float*, int64_t, const float*, float*, int64_t, int, float, float,
                        const float*);
template <int kVectors, bool kInPlace, size_t... kRowsMinusOne>
constexpr std::array<TileFn, kTileRows> tile_row_table(std::index_sequence<kRowsMinusOne...>) {
  return {&tile<static_cast<int>(kRowsMinusOne) + 1, kVectors, kInPlace>...};
}
template <bool kInPlace, size_t... kVectorsMinusOne>
constexpr std::array<std::array<TileFn, kTileRows>, kTileVectors> tile_table(std::index_sequence<kVectorsMinusOne...>) {
  return {tile_row_table<static_cast<int>(kVectorsMinusOne) + 1, kInPlace>(std::make_index_sequence<kTileRows>{})...};
}
// kTiles[in place][v - 1][n - 1] computes a tile of n rows and v vectors.
constexpr std::array<std::array<std::array<TileFn, kTileRows>, kTileVectors>, 2> kTiles = {
    tile_table<false>(std::make_index_sequence<kTileVectors>{}),
    tile_table<true>(std::make_index_sequence<kTileVectors>{})};

// A block's rows of op(A) as the tiles read them: packed into panels (ld 0;
// panel i at data + i * kTileRows * depth), or A in place (ld its row
// stride) when its rows run along k, i.e. A is not transposed. In place, a
// tile's 8 rows are 8 short runs that stay in L1 over the block's B panels
// just as a packed panel does, and the pass that would pack them is saved.
// (Rows of a transposed A lie across k: a step of k per cache line and page,
// so those are packed.)
struct BlockA {
  const float* data;
  int64_t ld;
};

// C[0:rows, 0:cols] from A's block (rows x depth) and packed B (depth x cols), plus bias[0:cols] when set.
inline void packed_block(int64_t rows, int64_t cols, int64_t depth, BlockA a, const float* packed_b, float* c,
                         int64_t ldc, float alpha, float beta, const float* bias) {
  const auto& tiles = kTiles[a.ld != 0];
  for (int64_t i = 0; i < rows; i += kTileRows) {
    const int64_t tile_rows = std::min<int64_t>(kTileRows, rows - i);
    const float* a_panel = a.ld ? a.data + i * a.ld : a.data + i * depth;
    for (int64_t j = 0; j < cols; j += kTileCols) {
      const int tile_cols = static_cast<int>(std::min<int64_t>(kTileCols, cols - j));
      tiles[(tile_cols + kWidth - 1) / kWidth - 1][tile_rows - 1](depth, a_panel, a.ld, packed_b + j * depth,
                                                                   c + i * ldc + j, ldc, tile_cols, alpha, beta,
                                                                   bias ? bias + j : nullptr);
    }
  }
}

// Depth blocks of equal size (a last sliver would waste the tile's loads).
// They depend on K only, so every element of C is summed the same way however
// C is split.
inline int64_t depth_step_for(int64_t K) {
  const int64_t depth_blocks = (K + kMaxDepth - 1) / kMaxDepth;
  return (K + depth_blocks - 1) / depth_blocks;
}

// Rows [row0, row0 + rows) of op(A) in the depth block at k0, as the tiles
// read them: A in place when not transposed, else packed into `out`
// (kTileRows-tall panels); likewise columns of op(B), always packed into
// kTileCols-wide panels.
inline bool a_in_place(const GemmProblem& p) { return !p.trans_a; }
inline BlockA block_a(const GemmProblem& p, int64_t k0, int64_t depth, int64_t row0, int64_t rows, float* out) {
  if (a_in_place(p)) return {p.A + row0 * p.lda + k0, p.lda};
  pack_panels<kTileRows>(p.A + k0 * p.lda + row0, p.lda, true, rows, depth, out);
  return {out, 0};
}
inline void pack_b(const GemmProblem& p, int64_t k0, int64_t depth, int64_t col0, int64_t cols, float* out) {
  pack_panels<kTileCols>(p.trans_b ? p.B + col0 * p.ldb + k0 : p.B + k0 * p.ldb + col0, p.ldb, !p.trans_b, cols,
                         depth, out);
}

inline void gemm_serial(const GemmProblem& p) {
  thread_local PackBuffer a_buffer, b_buffer;
  const int64_t depth_step = depth_step_for(p.K);
  const int64_t block_cols = std::min(kBlockCols, round_up(p.N, kTileCols));
  float* packed_a = a_in_place(p) ? nullptr : a_buffer.get(std::min(kBlockRows, round_up(p.M, kTileRows)) * depth_step);
  float* packed_b = b_buffer.get(block_cols * depth_step);
  for (int64_t k0 = 0; k0 < p.K; k0 += depth_step) {
    const int64_t depth = std::min(depth_step, p.K - k0);
    const float beta = k0 == 0 ? p.beta : 1.0f;
    const float* bias = k0 + depth >= p.K ? p.bias : nullptr;  // the bias goes on after the whole sum
    for (int64_t i0 = 0; i0 < p.M; i0 += kBlockRows) {
      const int64_t rows = std::min(kBlockRows, p.M - i0);
      const BlockA a = block_a(p, k0, depth, i0, rows, packed_a);
      for (int64_t j0 = 0; j0 < p.N; j0 += block_cols) {
        const int64_t cols = std::min(block_cols, p.N - j0);
        pack_b(p, k0, depth, j0, cols, packed_b);
        packed_block(rows, cols, depth, a, packed_b, p.C + i0 * p.ldc + j0, p.ldc, p.alpha, beta,
                     bias ? bias + j0 : nullptr);
      }
    }
  }
}

// The product on rlfarm's pool. One operand is shared: for each depth block
// and each block of it small enough to stay in L2, it is packed once, its
// panels shared out among the threads, into a buffer they all read. The other
// operand's side of C is cut into chunks that threads claim as they come free,
// each packing its own part of that operand. Which side is shared: B, with
// rows of C claimed, unless C has too few rows to make many chunks and more
// columns than rows to claim.
// Compared with one block of C per thread, the shared operand is packed once
// rather than once per thread, and a thread the host deschedules holds up only
// the chunk it is on: the others take the rest. Each element is computed
// exactly as in gemm_serial.
constexpr int kChunksPerThread = 16;
constexpr int64_t kMinChunkFlops = int64_t{2} << 20;
// Rows of op(A) that lie side by side in memory (A transposed) are packed by
// copying, at least this many at a time so that each step of k copies whole
// cache lines instead of waiting on a miss for a few floats.
constexpr int64_t kMinCopyRows = 64;
constexpr int64_t kSharedFloats = kBlockCols * kMaxDepth;  // one packed block, as large as gemm_serial's B block

// Equal blocks of `lanes`, in whole panels, each at most kSharedFloats packed.
inline int64_t shared_block(int64_t lanes, int64_t depth, int64_t panel) {
  const int64_t blocks = (round_up(lanes, panel) * depth + kSharedFloats - 1) / kSharedFloats;
  return round_up((lanes + blocks - 1) / blocks, panel);
}

inline void gemm_parallel(const GemmProblem& p) {
  thread_local PackBuffer shared_buffer;  // the caller's; the workers fill it and read it
  const int64_t depth_step = depth_step_for(p.K);
  const int64_t min_rows = p.trans_a ? kMinCopyRows : kTileRows;
  const int64_t row_chunks = p.M / min_rows;
  const bool share_b = row_chunks >= 2 * kChunksPerThread || row_chunks >= p.N / kTileCols;
  const int64_t block = share_b ? shared_block(p.N, depth_step, kTileCols) : shared_block(p.M, depth_step, kTileRows);
  float* shared = share_b || !a_in_place(p) ? shared_buffer.get(block * depth_step) : nullptr;
  for (int64_t k0 = 0; k0 < p.K; k0 += depth_step) {
    const int64_t depth = std::min(depth_step, p.K - k0);
    const float beta = k0 == 0 ? p.beta : 1.0f;
    const float* bias = k0 + depth >= p.K ? p.bias : nullptr;  // the bias goes on after the whole sum
    if (share_b) {
      for (int64_t j0 = 0; j0 < p.N; j0 += block) {
        const int64_t cols = std::min(block, p.N - j0);
        parallel_for((cols + kTileCols - 1) / kTileCols, 1, [&](int64_t begin, int64_t end) {
          const int64_t col = begin * kTileCols;
          pack_b(p, k0, depth, j0 + col, std::min(cols, end * kTileCols) - col, shared + col * depth);
        });
        const int64_t min_tiles = std::max({int64_t{1}, kMinChunkFlops / (2 * kTileRows * cols * depth),
                                            min_rows / kTileRows});
        parallel_for((p.M + kTileRows - 1) / kTileRows, min_tiles, [&](int64_t begin, int64_t end) {
          thread_local PackBuffer chunk;
          const int64_t row0 = begin * kTileRows, rows = std::min(p.M, end * kTileRows) - row0;
          float* packed_a = a_in_place(p) ? nullptr : chunk.get(round_up(rows, kTileRows) * depth);
          const BlockA a = block_a(p, k0, depth, row0, rows, packed_a);
          packed_block(rows, cols, depth, a, shared, p.C + row0 * p.ldc + j0, p.ldc, p.alpha, beta,
                       bias ? bias + j0 : nullptr);
        }, kChunksPerThread);
      }
    } else {
      for (int64_t i0 = 0; i0 < p.M; i0 += block) {
        const int64_t rows = std::min(block, p.M - i0);
        BlockA a{shared, 0};
        if (a_in_place(p)) {
          a = block_a(p, k0, depth, i0, rows, nullptr);
        } else {
          parallel_for((rows + kTileRows - 1) / kTileRows, min_rows / kTileRows, [&](int64_t begin, int64_t end) {
            const int64_t row = begin * kTileRows;
            block_a(p, k0, depth, i0 + row, std::min(rows, end * kTileRows) - row, shared + row * depth);
          });
        }
        const int64_t min_tiles = std::max<int64_t>(1, kMinChunkFlops / (2 * kTileCols * rows * depth));
        // A chunk's columns go in blocks whose packed B stays in L2 while the A panels pass.
        const int64_t step = std::max<int64_t>(kTileCols, kSharedFloats / depth / kTileCols * kTileCols);
        parallel_for((p.N + kTileCols - 1) / kTileCols, min_tiles, [&](int64_t begin, int64_t end) {
          thread_local PackBuffer chunk;
          const int64_t chunk0 = begin * kTileCols, chunk1 = std::min(p.N, end * kTileCols);
          float* packed_b = chunk.get(std::min(round_up(chunk1 - chunk0, kTileCols), step) * depth);
          for (int64_t col0 = chunk0; col0 < chunk1; col0 += step) {
            const int64_t cols = std::min(step, chunk1 - col0);
            pack_b(p, k0, depth, col0, cols, packed_b);
            packed_block(rows, cols, depth, a, packed_b, p.C + i0 * p.ldc + col0, p.ldc, p.alpha, beta,
                         bias ? bias + col0 : nullptr);
          }
        }, kChunksPerThread);
      }
    }
  }
}

}  // namespace gemm
}  // namespace rlfarm::cpu::RLF_ISA

// Each per-ISA translation unit exports its kernel.
#define RLFARM_DEFINE_GEMM_KERNEL                                                                    \
  namespace rlfarm::cpu::RLF_ISA {                                                                   \
  GemmKernel gemm_kernel() {                                                                         \
    return {&gemm::gemm_serial, &gemm::gemm_parallel, gemm::kTileRows, gemm::kTileCols};              \
  }                                                                                                  \
  }
