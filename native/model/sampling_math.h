// The sampling rules of generation, written once for the CPU (sampling.cpp)
// and the CUDA engine's sampling kernel (cuda/engine.cu), __host__ __device__
// under nvcc: the counter-based random draw, the order of candidates, the
// top-k and top-p cuts, the inverse-CDF pick and the log-prob of the pick.
//
// Sums of exp(logit / T - max) run in one fixed order on both: over chunks of
// kMassChunk consecutive tokens, each chunk summed in index order, then the
// chunk sums in chunk order (a GPU block sums the chunks in parallel and
// reaches the same doubles). Given the same logits, the two differ only where
// the host's and the device's double exp differ in the last bit, which moves a
// pick only if the draw lands within ~1e-16 of a boundary.
#pragma once

#include <math.h>

#include <cstdint>

#include "../core/host_device.h"

namespace rlfarm::model::sampling {

constexpr int64_t kMassChunk = 256;

RLF_HD uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A uniform double in [0, 1) from (seed, step): a row's draws depend on its seed only.
RLF_HD double uniform_draw(uint64_t seed, uint64_t step) {
  const uint64_t bits = splitmix64(splitmix64(seed) ^ (step * 0xd1b54a32d192ed03ull + 1));
  return static_cast<double>(bits >> 11) * (1.0 / 9007199254740992.0);  // 53 random bits
}

// Candidate order: larger logit first, ties by smaller index.
RLF_HD bool ranks_before(float la, int32_t a, float lb, int32_t b) { return la > lb || (la == lb && a < b); }

// 1 / temperature, and 1 for greedy (temperature 0): the log-probs of a greedy pick are at temperature 1.
RLF_HD double inverse_temperature(float temperature) { return temperature == 0.0f ? 1.0 : 1.0 / temperature; }

RLF_HD double scaled_exp(float logit, double inv_t, double max) { return exp(logit * inv_t - max); }

RLF_HD float token_logprob(float logit, double inv_t, double lse) { return static_cast<float>(logit * inv_t - lse); }

RLF_HD int64_t mass_chunks(int64_t vocab) { return (vocab + kMassChunk - 1) / kMassChunk; }

// Sum of scaled_exp over chunk `chunk`'s tokens, in index order.
RLF_HD double chunk_mass(const float* logits, int64_t vocab, int64_t chunk, double inv_t, double max) {
  const int64_t end = (chunk + 1) * kMassChunk < vocab ? (chunk + 1) * kMassChunk : vocab;
  double s = 0.0;
  for (int64_t j = chunk * kMassChunk; j < end; ++j) s += scaled_exp(logits[j], inv_t, max);
  return s;
}

RLF_HD double total_mass(const double* chunk_masses, int64_t chunks) {
  double s = 0.0;
  for (int64_t c = 0; c < chunks; ++c) s += chunk_masses[c];
  return s;
}

// Inverse CDF in index order: the first token whose running mass passes target, else fallback.
RLF_HD int32_t pick_by_index(const float* logits, int64_t vocab, const double* chunk_masses, double inv_t, double max,
                             double target, int32_t fallback) {
  const int64_t chunks = mass_chunks(vocab);
  double acc = 0.0;
  for (int64_t c = 0; c < chunks; ++c) {
    if (acc + chunk_masses[c] > target) {
      const int64_t end = (c + 1) * kMassChunk < vocab ? (c + 1) * kMassChunk : vocab;
      for (int64_t j = c * kMassChunk; j < end; ++j) {
        acc += scaled_exp(logits[j], inv_t, max);
        if (acc > target) return static_cast<int32_t>(j);
      }
      return fallback;  // the chunk's sum passed target, its running sum did not: rounding at the very top
    }
    acc += chunk_masses[c];
  }
  return fallback;  // rounding left target at the very top
}

// Top-p over candidates in order: the fewest whose mass reaches limit (top_p times
// the whole mass); n when the first n do not (reached false).
RLF_HD int64_t nucleus_size(const float* logits, const int32_t* order, int64_t n, double inv_t, double max,
                            double limit, bool& reached) {
  double acc = 0.0;
  int64_t count = 0;
  while (count < n && acc < limit) acc += scaled_exp(logits[order[count++]], inv_t, max);
  reached = acc >= limit;
  return count;
}

// Tokens kept by top-k alone (top_k 0: all).
RLF_HD int64_t top_k_keep(int64_t top_k, int64_t vocab) { return top_k > 0 && top_k < vocab ? top_k : vocab; }

RLF_HD bool truncates(int64_t top_k, float top_p, int64_t vocab) { return (top_k > 0 && top_k < vocab) || top_p < 1.0f; }

// Inverse CDF over the first `keep` candidates in order; the last of them when rounding leaves target at the top.
RLF_HD int32_t pick_in_order(const float* logits, const int32_t* order, int64_t keep, double inv_t, double max, double u) {
  double kept = 0.0;
  for (int64_t i = 0; i < keep; ++i) kept += scaled_exp(logits[order[i]], inv_t, max);
  const double target = u * kept;
  double acc = 0.0;
  for (int64_t i = 0; i < keep; ++i) {
    acc += scaled_exp(logits[order[i]], inv_t, max);
    if (acc > target) return order[i];
  }
  return order[keep - 1];
}

}  // namespace rlfarm::model::sampling
