#include "sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace rlfarm::model {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

double uniform_draw(uint64_t seed, uint64_t step) {
  const uint64_t bits = splitmix64(splitmix64(seed) ^ (step * 0xd1b54a32d192ed03ull + 1));
  return static_cast<double>(bits >> 11) * (1.0 / 9007199254740992.0);  // 53 random bits
}

Sample sample_token(const float* logits, int64_t vocab, float temperature, int64_t top_k, float top_p, double u,
                    std::vector<int32_t>& scratch) {
  const bool greedy = temperature == 0.0f;
  const double inv_t = greedy ? 1.0 : 1.0 / temperature;
  int64_t best = 0;
  for (int64_t j = 1; j < vocab; ++j) {
    if (logits[j] > logits[best]) best = j;
  }
  const double max = logits[best] * inv_t;
  double sum = 0.0;
  for (int64_t j = 0; j < vocab; ++j) sum += std::exp(logits[j] * inv_t - max);
  const double lse = max + std::log(sum);
  const auto logprob = [&](int64_t j) { return static_cast<float>(logits[j] * inv_t - lse); };
  if (greedy) return {static_cast<int32_t>(best), logprob(best)};

  const bool truncate = (top_k > 0 && top_k < vocab) || top_p < 1.0f;
  if (!truncate) {  // inverse CDF over the whole vocabulary
    const double target = u * sum;
    double acc = 0.0;
    for (int64_t j = 0; j < vocab; ++j) {
      acc += std::exp(logits[j] * inv_t - max);
      if (acc > target) return {static_cast<int32_t>(j), logprob(j)};
    }
    return {static_cast<int32_t>(best), logprob(best)};  // rounding left u * sum at the very top
  }

  // Candidates by decreasing logit (ties by index), cut by top-k, then by top-p.
  const auto before = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  scratch.resize(static_cast<size_t>(vocab));
  for (int64_t j = 0; j < vocab; ++j) scratch[j] = static_cast<int32_t>(j);
  int64_t keep = top_k > 0 ? std::min(top_k, vocab) : vocab;
  // Sorting a short head first is enough when it already holds top_p of the mass.
  int64_t sorted = top_p < 1.0f ? std::min<int64_t>(keep, 256) : keep;
  for (;;) {
    std::partial_sort(scratch.begin(), scratch.begin() + sorted, scratch.end(), before);
    if (top_p >= 1.0f) break;
    double acc = 0.0;
    int64_t n = 0;
    while (n < sorted && acc < top_p * sum) acc += std::exp(logits[scratch[n++]] * inv_t - max);
    if (acc >= top_p * sum || sorted == keep) {
      keep = std::max<int64_t>(1, std::min(keep, n));
      break;
    }
    sorted = std::min(keep, sorted * 8);
  }
  keep = std::min(keep, sorted);
  double kept = 0.0;
  for (int64_t i = 0; i < keep; ++i) kept += std::exp(logits[scratch[i]] * inv_t - max);
  const double target = u * kept;
  double acc = 0.0;
  for (int64_t i = 0; i < keep; ++i) {
    acc += std::exp(logits[scratch[i]] * inv_t - max);
    if (acc > target) return {scratch[i], logprob(scratch[i])};
  }
  return {scratch[keep - 1], logprob(scratch[keep - 1])};
}

}  // namespace rlfarm::model
