// Choosing the next token from a row of logits: greedy, or sampling at a
// temperature with optional top-k and top-p (nucleus) truncation. The random
// draw comes from a counter-based generator keyed by (seed, step), so a row's
// tokens depend on its own seed only, not on the batch it is in.
#pragma once

#include <cstdint>
#include <vector>

namespace rlfarm::model {

// A uniform double in [0, 1) from (seed, step) (splitmix64 of both).
double uniform_draw(uint64_t seed, uint64_t step);

struct Sample {
  int32_t token;
  float logprob;  // log-prob of the token under softmax(logits / temperature) (temperature 1 when greedy)
};

// temperature 0 picks the argmax (the first, on ties). top_k 0 and top_p 1
// turn those filters off. `scratch` is reused between calls.
Sample sample_token(const float* logits, int64_t vocab, float temperature, int64_t top_k, float top_p, double u,
                    std::vector<int32_t>& scratch);

}  // namespace rlfarm::model
