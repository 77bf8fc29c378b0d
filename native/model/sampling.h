// Choosing the next token from a row of logits: greedy, or sampling at a
// temperature with optional top-k and top-p (nucleus) truncation. The random
// draw comes from a counter-based generator keyed by (seed, step), so a row's
// tokens depend on its own seed only, not on the batch it is in. The rules are
// sampling_math.h's, which the CUDA engine's sampling kernel runs too.
#pragma once

#include <cstdint>
#include <vector>

#include "sampling_math.h"

namespace rlfarm::model {

using sampling::uniform_draw;

struct Sample {
  int32_t token;
  float logprob;  // log-prob of the token under softmax(logits / temperature) (temperature 1 when greedy)
};

// Reused between calls of one thread.
struct SampleScratch {
  std::vector<int32_t> order;
  std::vector<double> masses;
};

// temperature 0 picks the argmax (the first, on ties). top_k 0 and top_p 1
// turn those filters off.
Sample sample_token(const float* logits, int64_t vocab, float temperature, int64_t top_k, float top_p, double u,
                    SampleScratch& scratch);

}  // namespace rlfarm::model
