// Log-probs, entropy and their gradient over rows of logits, written once over
// the vector layer in simd.h and compiled per instruction set.
//
// One row is read in blocks small enough to stay in L1: a max pass and an
// exp-sum pass over the same block, with the running sum rescaled when the
// running max grows (online log-sum-exp). Memory sees each logit once, and the
// softmax is never stored.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "../ops/kernels.h"
#include "../core/thread_pool.h"
#include "simd.h"

namespace rlfarm::cpu::RLF_ISA {

constexpr int64_t kBlock = 2048;
constexpr float kInf = std::numeric_limits<float>::infinity();

template <typename T>
inline float block_max(const T* z, int64_t n) {
  VF m0 = vset(-kInf), m1 = m0, m2 = m0, m3 = m0;
  int64_t i = 0;
  for (; i + 4 * kWidth <= n; i += 4 * kWidth) {
    m0 = vmax_keep_nan(m0, vload(z + i));
    m1 = vmax_keep_nan(m1, vload(z + i + kWidth));
    m2 = vmax_keep_nan(m2, vload(z + i + 2 * kWidth));
    m3 = vmax_keep_nan(m3, vload(z + i + 3 * kWidth));
  }
  for (; i + kWidth <= n; i += kWidth) m0 = vmax_keep_nan(m0, vload(z + i));
  if (i < n) m0 = vmax_keep_nan(m0, vload_partial(z + i, static_cast<int>(n - i), -kInf));
  return hmax(vmax_keep_nan(vmax_keep_nan(m0, m1), vmax_keep_nan(m2, m3)));
}

// Adds sum(e) and, with kCentered, sum(e * d) for d = z/T - m, e = exp(d).
template <typename T, bool kCentered>
inline void block_sums(const T* z, int64_t n, float inv_t, float m, float& sum, float& centered) {
  const VF vt = vset(inv_t), vneg_m = vset(-m), lo = vset(kExpMin);
  VF s0 = vset(0.0f), s1 = s0, c0 = s0, c1 = s0;
  auto step = [&](VF x, VF& s, VF& c) {
    const VF d = fma(x, vt, vneg_m);
    const VF e = vexp(d);
    s = s + e;
    if (kCentered) c = fma(e, vmax_keep_nan(lo, d), c);
  };
  int64_t i = 0;
  for (; i + 2 * kWidth <= n; i += 2 * kWidth) {
    // Pull the next block towards L1 while this one is computed on, so the
    // exp work overlaps the memory stream instead of alternating with it.
    __builtin_prefetch(z + i + kBlock);
    __builtin_prefetch(reinterpret_cast<const char*>(z + i + kBlock) + 64);
    step(vload(z + i), s0, c0);
    step(vload(z + i + kWidth), s1, c1);
  }
  for (; i + kWidth <= n; i += kWidth) step(vload(z + i), s0, c0);
  if (i < n) step(vload_partial(z + i, static_cast<int>(n - i), -kInf), s1, c1);
  sum = hsum(s0 + s1);
  centered = kCentered ? hsum(c0 + c1) : 0.0f;
}

// Per row, with x = z/T: max m, S = sum exp(x - m), C = sum exp(x - m)(x - m).
// Then lse = m + log S and entropy H = log S - C / S.
struct RowStats {
  float max;
  double sum, centered;
  double lse() const { return max + std::log(sum); }
  double entropy() const { return std::log(sum) - centered / sum; }
};

template <typename T, bool kCentered>
inline RowStats row_stats(const T* z, int64_t vocab, float inv_t) {
  float m = -kInf;
  double s = 0.0, c = 0.0;
  for (int64_t b = 0; b < vocab; b += kBlock) {
    const int64_t n = std::min(kBlock, vocab - b);
    const float bm = block_max(z + b, n) * inv_t;
    if (bm > m) {
      if (s > 0.0) {
        const double shift = static_cast<double>(m) - bm;
        const double scale = std::exp(shift);
        c = scale * (c + shift * s);
        s *= scale;
      }
      m = bm;
    }
    if (m == -kInf) continue;  // every logit so far is -inf: nothing to add
    float bs, bc;
    block_sums<T, kCentered>(z + b, n, inv_t, m, bs, bc);
    s += bs;
    c += bc;
  }
  return {m, s, c};
}

inline float bf16_or_float(float x) { return x; }
inline float bf16_or_float(uint16_t h) { return bf16_to_float(h); }

template <typename T>
inline void logprobs_rows(const LogprobsArgs& a, int64_t begin, int64_t end) {
  const T* logits = static_cast<const T*>(a.logits);
  for (int64_t r = begin; r < end; ++r) {
    const T* z = logits + r * a.vocab;
    const float target = bf16_or_float(z[a.targets[r]]);
    if (a.entropy) {
      const RowStats st = row_stats<T, true>(z, a.vocab, a.inv_temperature);
      a.logp[r] = static_cast<float>(target * a.inv_temperature - st.lse());
      a.entropy[r] = static_cast<float>(st.entropy());
    } else {
      const RowStats st = row_stats<T, false>(z, a.vocab, a.inv_temperature);
      a.logp[r] = static_cast<float>(target * a.inv_temperature - st.lse());
    }
  }
}

template <typename T>
inline void logprobs_backward_rows(const LogprobsBackwardArgs& a, int64_t begin, int64_t end) {
  const T* logits = static_cast<const T*>(a.logits);
  T* dlogits = static_cast<T*>(a.dlogits);
  const float inv_t = a.inv_temperature;
  const VF vt = vset(inv_t), lo = vset(kExpMin);
  for (int64_t r = begin; r < end; ++r) {
    const T* z = logits + r * a.vocab;
    T* dz = dlogits + r * a.vocab;
    const float g = a.grad_logp ? a.grad_logp[r] : 0.0f;
    const float gh = a.grad_entropy ? a.grad_entropy[r] : 0.0f;
    const bool with_entropy = a.grad_entropy != nullptr;
    const RowStats st = with_entropy ? row_stats<T, true>(z, a.vocab, inv_t) : row_stats<T, false>(z, a.vocab, inv_t);
    // Read before the row is written: dlogits may be the logits buffer itself.
    const int32_t y = a.targets[r];
    const float z_y = bf16_or_float(z[y]);
    const float lse = static_cast<float>(st.lse());
    const float h = with_entropy ? static_cast<float>(st.entropy()) : 0.0f;
    // d/dz_j = (g (1[j=y] - p_j) - gh p_j (log p_j + H)) / T; the 1[j=y] term is added after.
    const VF vneg_lse = vset(-lse), vh = vset(h), vneg_g_t = vset(-g * inv_t), vneg_gh_t = vset(-gh * inv_t);
    auto grad = [&](VF x) {
      const VF lp = fma(x, vt, vneg_lse);
      const VF p = vexp(lp);
      VF d = vneg_g_t * p;
      if (with_entropy) d = fma(vneg_gh_t * p, vmax_keep_nan(lo, lp) + vh, d);
      return d;
    };
    int64_t i = 0;
    for (; i + kWidth <= a.vocab; i += kWidth) vstore(dz + i, grad(vload(z + i)));
    if (i < a.vocab) {
      const int n = static_cast<int>(a.vocab - i);
      vstore_partial(dz + i, grad(vload_partial(z + i, n, -kInf)), n);
    }
    const float lp_y = z_y * inv_t - lse;
    const float p_y = lp_y < kExpMin ? 0.0f : std::exp(lp_y);
    float d_y = g * (1.0f - p_y);
    if (with_entropy) d_y -= gh * p_y * (std::max(lp_y, kExpMin) + h);
    const VF out = vset(d_y * inv_t);
    vstore_partial(dz + y, out, 1);
  }
}

inline int64_t rows_per_chunk(int64_t vocab) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(vocab, 1)); }

inline void logprobs_impl(const LogprobsArgs& a) {
  parallel_for(a.rows, rows_per_chunk(a.vocab), [&](int64_t begin, int64_t end) {
    if (a.logits_dtype == DType::bf16) {
      logprobs_rows<uint16_t>(a, begin, end);
    } else {
      logprobs_rows<float>(a, begin, end);
    }
  });
}

inline void logprobs_backward_impl(const LogprobsBackwardArgs& a) {
  parallel_for(a.rows, rows_per_chunk(a.vocab), [&](int64_t begin, int64_t end) {
    if (a.logits_dtype == DType::bf16) {
      logprobs_backward_rows<uint16_t>(a, begin, end);
    } else {
      logprobs_backward_rows<float>(a, begin, end);
    }
  });
}

}  // namespace rlfarm::cpu::RLF_ISA

// Each per-ISA translation unit exports these two entry points.
#define RLFARM_DEFINE_LOGPROBS_ENTRIES                                                                   \
  namespace rlfarm::cpu::RLF_ISA {                                                                       \
  void logprobs_entry(const LogprobsArgs& a) { logprobs_impl(a); }                                      \
  void logprobs_backward_entry(const LogprobsBackwardArgs& a) { logprobs_backward_impl(a); }            \
  }
