#include "layers.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "../core/thread_pool.h"
#include "../cpu/dispatch.h"
#include "../cpu/gemm.h"
#include "nn_math.h"

namespace rlfarm::model {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Rows per task so that a task has about `work` elements.
int64_t rows_for(int64_t width, int64_t work = 16384) { return std::max<int64_t>(1, work / std::max<int64_t>(width, 1)); }

// Runs fn(begin, end) over [0, n) in chunks of at least `grain` elements of a flat array.
template <typename F>
void for_range(int64_t n, F&& fn, int64_t grain = 1 << 15) {
  parallel_for(n, grain, fn);
}

// Adds, for each column, the per-block partial sums in block order: column
// reductions over rows that do not depend on the thread count.
constexpr int64_t kRowBlock = 32;

template <typename F>
void column_reduce(int64_t rows, int64_t cols, int64_t outputs, float* const* targets, F&& block_sums) {
  const int64_t blocks = (rows + kRowBlock - 1) / kRowBlock;
  // Kept per calling thread: at 128 KB and up a fresh vector is a fresh
  // mapping, and faulting its pages in cost more than the sums.
  // (The lambdas below use `sums`: named inside them, a thread_local would be
  // the running thread's own.)
  thread_local std::vector<float> scratch;
  scratch.assign(static_cast<size_t>(blocks * outputs * cols), 0.0f);
  float* const sums = scratch.data();
  parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      block_sums(blk * kRowBlock, std::min(rows, (blk + 1) * kRowBlock), sums + blk * outputs * cols);
    }
  });
  parallel_for(cols, 256, [&](int64_t c0, int64_t c1) {
    for (int64_t o = 0; o < outputs; ++o) {
      if (targets[o] == nullptr) continue;
      for (int64_t blk = 0; blk < blocks; ++blk) {
        const float* p = sums + (blk * outputs + o) * cols;
        for (int64_t c = c0; c < c1; ++c) targets[o][c] += p[c];
      }
    }
  });
}

}  // namespace

void norm_forward(const float* x, const float* w, const float* b, float* y, float* stats, int64_t rows, int64_t dim,
                  float eps) {
  parallel_for(rows, rows_for(dim), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      float* yr = y + r * dim;
      // Vector float sums (as PyTorch's CPU norms); two passes for LayerNorm's variance.
      float mean = 0.0f, sq = 0.0f;
      if (b != nullptr) {
#pragma omp simd reduction(+ : mean)
        for (int64_t j = 0; j < dim; ++j) mean += xr[j];
        mean /= static_cast<float>(dim);
#pragma omp simd reduction(+ : sq)
        for (int64_t j = 0; j < dim; ++j) sq += (xr[j] - mean) * (xr[j] - mean);
      } else {
#pragma omp simd reduction(+ : sq)
        for (int64_t j = 0; j < dim; ++j) sq += xr[j] * xr[j];
      }
      const float rstd = 1.0f / std::sqrt(sq / static_cast<float>(dim) + eps);
      const float m = mean;
      stats[2 * r] = m;
      stats[2 * r + 1] = rstd;
      if (b != nullptr) {
        for (int64_t j = 0; j < dim; ++j) yr[j] = (xr[j] - m) * rstd * w[j] + b[j];
      } else {
        for (int64_t j = 0; j < dim; ++j) yr[j] = w[j] * (xr[j] * rstd);
      }
    }
  });
}

void norm_reapply(const float* x, const float* w, const float* b, const float* stats, float* y, int64_t rows,
                  int64_t dim) {
  parallel_for(rows, rows_for(dim), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      float* yr = y + r * dim;
      const float m = stats[2 * r], rstd = stats[2 * r + 1];
      if (b != nullptr) {
        for (int64_t j = 0; j < dim; ++j) yr[j] = (xr[j] - m) * rstd * w[j] + b[j];
      } else {
        for (int64_t j = 0; j < dim; ++j) yr[j] = w[j] * (xr[j] * rstd);
      }
    }
  });
}

void norm_backward(const float* dy, const float* x, const float* w, bool has_bias, const float* stats, float* dx,
                   float* dw, float* db, int64_t rows, int64_t dim) {
  parallel_for(rows, rows_for(dim), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* dyr = dy + r * dim;
      const float* xr = x + r * dim;
      float* dxr = dx + r * dim;
      const float mean = has_bias ? stats[2 * r] : 0.0f, rstd = stats[2 * r + 1];
      float g_sum = 0.0f, gx_sum = 0.0f;
#pragma omp simd reduction(+ : g_sum, gx_sum)
      for (int64_t j = 0; j < dim; ++j) {
        const float g = dyr[j] * w[j];
        g_sum += g;
        gx_sum += g * ((xr[j] - mean) * rstd);
      }
      const float gm = has_bias ? g_sum / static_cast<float>(dim) : 0.0f, gxm = gx_sum / static_cast<float>(dim);
#pragma omp simd
      for (int64_t j = 0; j < dim; ++j) {
        const float xhat = (xr[j] - mean) * rstd;
        dxr[j] += rstd * (dyr[j] * w[j] - gm - xhat * gxm);
      }
    }
  });
  float* targets[2] = {dw, has_bias ? db : nullptr};
  column_reduce(rows, dim, 2, targets, [&](int64_t r0, int64_t r1, float* out) {
    float* pdw = out;
    float* pdb = out + dim;
    for (int64_t r = r0; r < r1; ++r) {
      const float* dyr = dy + r * dim;
      const float* xr = x + r * dim;
      const float mean = has_bias ? stats[2 * r] : 0.0f, rstd = stats[2 * r + 1];
      for (int64_t j = 0; j < dim; ++j) {
        pdw[j] += dyr[j] * ((xr[j] - mean) * rstd);
        pdb[j] += dyr[j];
      }
    }
  });
}

void bias_grad(const float* dy, int64_t ld, float* db, int64_t rows, int64_t cols) {
  float* targets[1] = {db};
  column_reduce(rows, cols, 1, targets, [&](int64_t r0, int64_t r1, float* out) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* dyr = dy + r * ld;
      for (int64_t c = 0; c < cols; ++c) out[c] += dyr[c];
    }
  });
}

void embed(const int32_t* tokens, const int32_t* positions, const float* token_table, const float* position_table,
           float* x, int64_t rows, int64_t dim) {
  parallel_for(rows, rows_for(dim), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* t = token_table + static_cast<int64_t>(tokens[r]) * dim;
      float* xr = x + r * dim;
      if (position_table != nullptr) {
        const float* p = position_table + static_cast<int64_t>(positions[r]) * dim;
        for (int64_t j = 0; j < dim; ++j) xr[j] = t[j] + p[j];
      } else {
        std::memcpy(xr, t, sizeof(float) * dim);
      }
    }
  });
}

void embed_backward(const int32_t* ids, const float* dx, float* dtable, int64_t rows, int64_t dim) {
  // Split by columns: every thread sees every row in order, so sums are race-free and ordered.
  parallel_for(dim, 64, [&](int64_t c0, int64_t c1) {
    for (int64_t r = 0; r < rows; ++r) {
      float* t = dtable + static_cast<int64_t>(ids[r]) * dim;
      const float* d = dx + r * dim;
      for (int64_t c = c0; c < c1; ++c) t[c] += d[c];
    }
  });
}

void gelu(const float* x, float* y, int64_t n) {
  for_range(n, [&](int64_t b, int64_t e) { cpu::gelu_forward(x + b, y + b, e - b); });
}

void gelu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  for_range(n, [&](int64_t b, int64_t e) { cpu::gelu_backward(x + b, dy + b, dx + b, e - b); });
}

void swiglu(const float* gate_up, float* y, int64_t rows, int64_t hidden) {
  parallel_for(rows, rows_for(hidden), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* g = gate_up + r * 2 * hidden;
      cpu::swiglu_forward(g, g + hidden, y + r * hidden, hidden);
    }
  });
}

void swiglu_backward(const float* gate_up, const float* dy, float* dgate_up, int64_t rows, int64_t hidden) {
  parallel_for(rows, rows_for(hidden), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* g = gate_up + r * 2 * hidden;
      float* dg = dgate_up + r * 2 * hidden;
      cpu::swiglu_backward(g, g + hidden, dy + r * hidden, dg, dg + hidden, hidden);
    }
  });
}

RopeTable::RopeTable(const ModelConfig& c) : head_dim_(c.head_dim) {
  // Float32 arithmetic, as Hugging Face computes inv_freq and the angles.
  const int64_t half = c.head_dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(c.head_dim);
    float inv = 1.0f / std::pow(c.rope_theta, exponent);
    if (c.rope_scaling == RopeScaling::linear) inv /= c.rope_factor;
    if (c.rope_scaling == RopeScaling::llama3) {
      const float old_len = static_cast<float>(c.rope_original_max_positions);
      const float low_wavelen = old_len / c.rope_low_freq_factor;
      const float high_wavelen = old_len / c.rope_high_freq_factor;
      const float wavelen = 2.0f * static_cast<float>(M_PI) / inv;
      float scaled = wavelen > low_wavelen ? inv / c.rope_factor : inv;
      const float smooth = (old_len / wavelen - c.rope_low_freq_factor) / (c.rope_high_freq_factor - c.rope_low_freq_factor);
      const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
      if (medium) scaled = (1.0f - smooth) * scaled / c.rope_factor + smooth * scaled;
      inv = scaled;
    }
    inv_freq_.push_back(inv);
  }
}

void RopeTable::ensure(int64_t n) {
  if (n <= size_) return;
  const int64_t half = head_dim_ / 2;
  const int64_t target = std::max<int64_t>(n, 2 * size_);
  cos_.resize(static_cast<size_t>(target * half));
  sin_.resize(static_cast<size_t>(target * half));
  for (int64_t p = size_; p < target; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(p) * static_cast<float>(inv_freq_[i]);
      cos_[p * half + i] = std::cos(angle);
      sin_[p * half + i] = std::sin(angle);
    }
  }
  size_ = target;
}

void RopeTable::apply(float* x, int64_t rows, int64_t ld, int64_t heads, const int32_t* positions, bool inverse) const {
  const int64_t half = head_dim_ / 2;
  const float sign = inverse ? -1.0f : 1.0f;
  parallel_for(rows, rows_for(heads * head_dim_), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* c = cos_.data() + static_cast<int64_t>(positions[r]) * half;
      const float* s = sin_.data() + static_cast<int64_t>(positions[r]) * half;
      for (int64_t h = 0; h < heads; ++h) {
        float* v = x + r * ld + h * head_dim_;
        for (int64_t i = 0; i < half; ++i) math::rope_rotate(v[i], v[i + half], c[i], sign * s[i]);
      }
    }
  });
}

// Queries go through attention in blocks: block [q0, q1) only needs the keys
// up to its last query's slot, so causal attention skips the masked upper
// part of the score matrix (about a quarter of it at 64-row blocks of 128).
constexpr int64_t kQueryBlock = 64;

// Scores of queries [q0, q1) against keys [0, keys) of one head, masked and
// turned into probabilities: by softmax (forward, writing the log-sum-exp) or
// from the saved log-sum-exp (backward).
static void attention_probabilities(const AttentionArgs& a, const float* q, const float* k, const uint8_t* valid,
                                    int64_t first, int64_t q0, int64_t q1, int64_t keys, float* p, float* lse,
                                    const float* saved_lse) {
  cpu::sgemm(false, true, q1 - q0, keys, a.head_dim, a.scale, q + q0 * a.q_ld, a.q_ld, k, a.kv_ld, 0.0f, p, keys);
  for (int64_t i = q0; i < q1; ++i) {
    float* row = p + (i - q0) * keys;
    const int64_t visible = std::min(keys, first + i + 1);
    if (valid) {
      for (int64_t j = 0; j < visible; ++j) {
        if (!valid[j]) row[j] = kNegInf;
      }
    }
    if (saved_lse == nullptr) {
      const float row_lse = cpu::softmax_row(row, visible);
      if (lse) lse[i] = row_lse;
    } else if (saved_lse[i] == kNegInf) {
      std::fill(row, row + visible, 0.0f);  // no visible key: the output was 0
    } else {
      cpu::exp_shift(row, visible, saved_lse[i]);
    }
    std::fill(row + visible, row + keys, 0.0f);
  }
}

void attention_forward(const AttentionArgs& a) {
  const int64_t group = a.heads / a.kv_heads;
  parallel_for(a.batch * a.heads, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> scores;
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t b = task / a.heads, h = task % a.heads, g = h / group;
      const int64_t first = a.query_slot ? a.query_slot[b] : 0;
      const float* q = a.q + b * a.q_batch + h * a.head_dim;
      const float* k = a.k + b * a.kv_batch + g * a.head_dim;
      const float* v = a.v + b * a.kv_batch + g * a.head_dim;
      float* out = a.out + b * a.out_batch + h * a.head_dim;
      float* lse = a.lse ? a.lse + (b * a.heads + h) * a.queries : nullptr;
      const uint8_t* valid = a.key_valid ? a.key_valid + b * a.key_slots : nullptr;
      for (int64_t q0 = 0; q0 < a.queries; q0 += kQueryBlock) {
        const int64_t q1 = std::min(a.queries, q0 + kQueryBlock);
        const int64_t keys = std::min(a.key_slots, first + q1);  // later slots are never visible
        scores.resize(static_cast<size_t>((q1 - q0) * keys));
        attention_probabilities(a, q, k, valid, first, q0, q1, keys, scores.data(), lse, nullptr);
        cpu::sgemm(false, false, q1 - q0, a.head_dim, keys, 1.0f, scores.data(), keys, v, a.kv_ld, 0.0f,
                   out + q0 * a.out_ld, a.out_ld);
      }
    }
  });
}

void attention_backward(const AttentionGradArgs& ga) {
  const AttentionArgs& a = ga.fwd;
  const int64_t T = a.queries, hd = a.head_dim, group = a.heads / a.kv_heads;
  // One task per (row, kv head): the heads sharing a kv head add into its dk and dv in order.
  parallel_for(a.batch * a.kv_heads, 1, [&](int64_t t0, int64_t t1) {
    const int64_t block = std::min(T, kQueryBlock);
    std::vector<float> p(static_cast<size_t>(block * T)), dp(static_cast<size_t>(block * T));
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t b = task / a.kv_heads, g = task % a.kv_heads;
      const float* k = a.k + b * a.kv_batch + g * hd;
      const float* v = a.v + b * a.kv_batch + g * hd;
      float* dk = ga.dk + b * a.kv_batch + g * hd;
      float* dv = ga.dv + b * a.kv_batch + g * hd;
      for (int64_t s = 0; s < T; ++s) {
        std::memset(dk + s * a.kv_ld, 0, sizeof(float) * hd);
        std::memset(dv + s * a.kv_ld, 0, sizeof(float) * hd);
      }
      const uint8_t* valid = a.key_valid ? a.key_valid + b * a.key_slots : nullptr;
      for (int64_t h = g * group; h < (g + 1) * group; ++h) {
        const float* q = a.q + b * a.q_batch + h * hd;
        const float* o = a.out + b * a.out_batch + h * hd;
        const float* dout = ga.dout + b * a.out_batch + h * hd;
        float* dq = ga.dq + b * a.q_batch + h * hd;
        const float* lse = a.lse + (b * a.heads + h) * T;
        for (int64_t q0 = 0; q0 < T; q0 += kQueryBlock) {
          const int64_t q1 = std::min(T, q0 + kQueryBlock), rows = q1 - q0, keys = q1;
          const float* dout_blk = dout + q0 * a.out_ld;
          attention_probabilities(a, q, k, valid, 0, q0, q1, keys, p.data(), nullptr, lse);
          // dV += P^T dO; dP = dO V^T
          cpu::sgemm(true, false, keys, hd, rows, 1.0f, p.data(), keys, dout_blk, a.out_ld, 1.0f, dv, a.kv_ld);
          cpu::sgemm(false, true, rows, keys, hd, 1.0f, dout_blk, a.out_ld, v, a.kv_ld, 0.0f, dp.data(), keys);
          for (int64_t i = 0; i < rows; ++i) {  // dS = P (dP - D) scale, D_i = sum_c dO_ic O_ic, over dP
            double d = 0.0;
            for (int64_t c = 0; c < hd; ++c) d += double(dout_blk[i * a.out_ld + c]) * o[(q0 + i) * a.out_ld + c];
            const float delta = static_cast<float>(d);
            const float* pr = p.data() + i * keys;
            float* dr = dp.data() + i * keys;
            for (int64_t j = 0; j < keys; ++j) dr[j] = pr[j] * (dr[j] - delta) * a.scale;
          }
          // dQ = dS K; dK += dS^T Q
          cpu::sgemm(false, false, rows, hd, keys, 1.0f, dp.data(), keys, k, a.kv_ld, 0.0f, dq + q0 * a.q_ld, a.q_ld);
          cpu::sgemm(true, false, keys, hd, rows, 1.0f, dp.data(), keys, q + q0 * a.q_ld, a.q_ld, 1.0f, dk, a.kv_ld);
        }
      }
    }
  });
}

}  // namespace rlfarm::model
