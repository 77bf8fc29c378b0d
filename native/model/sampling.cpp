#include "sampling.h"

#include <algorithm>
#include <cmath>

namespace rlfarm::model {

using namespace sampling;

Sample sample_token(const float* logits, int64_t vocab, float temperature, int64_t top_k, float top_p, double u,
                    SampleScratch& scratch) {
  const double inv_t = inverse_temperature(temperature);
  int64_t best = 0;
  for (int64_t j = 1; j < vocab; ++j) {
    if (logits[j] > logits[best]) best = j;
  }
  const double max = logits[best] * inv_t;
  const int64_t chunks = mass_chunks(vocab);
  scratch.masses.resize(static_cast<size_t>(chunks));
  for (int64_t c = 0; c < chunks; ++c) scratch.masses[c] = chunk_mass(logits, vocab, c, inv_t, max);
  const double sum = total_mass(scratch.masses.data(), chunks);
  const double lse = max + std::log(sum);
  const auto pick = [&](int32_t j) { return Sample{j, token_logprob(logits[j], inv_t, lse)}; };
  if (temperature == 0.0f) return pick(static_cast<int32_t>(best));
  if (!truncates(top_k, top_p, vocab)) {
    return pick(pick_by_index(logits, vocab, scratch.masses.data(), inv_t, max, u * sum, static_cast<int32_t>(best)));
  }

  // Candidates by decreasing logit (ties by index), cut by top-k, then by top-p.
  const auto before = [&](int32_t a, int32_t b) { return ranks_before(logits[a], a, logits[b], b); };
  std::vector<int32_t>& order = scratch.order;
  order.resize(static_cast<size_t>(vocab));
  for (int64_t j = 0; j < vocab; ++j) order[j] = static_cast<int32_t>(j);
  int64_t keep = top_k_keep(top_k, vocab);
  // Sorting a short head first is enough when it already holds top_p of the mass.
  int64_t sorted = top_p < 1.0f ? std::min<int64_t>(keep, 256) : keep;
  for (;;) {
    std::partial_sort(order.begin(), order.begin() + sorted, order.end(), before);
    if (top_p >= 1.0f) break;
    bool reached = false;
    const int64_t n = nucleus_size(logits, order.data(), sorted, inv_t, max, top_p * sum, reached);
    if (reached || sorted == keep) {
      keep = std::max<int64_t>(1, std::min(keep, n));
      break;
    }
    sorted = std::min(keep, sorted * 8);
  }
  keep = std::min(keep, sorted);
  return pick(pick_in_order(logits, order.data(), keep, inv_t, max, u));
}

}  // namespace rlfarm::model
