// The CUDA engine's attention kernels beside the reference (batched GEMMs and a
// masked softmax, engine.cu), and its sampler. Each launches what plan.h plans
// and returns false where the plan says it does not apply, so that the caller
// runs the reference instead.
#pragma once

#include <cstdint>

#include "../model/layers.h"

namespace rlfarm::cuda {

// Forward attention of model::AttentionArgs (a training forward or a
// prefill): fused causal kernel, writing out and lse (if given).
bool attention_flash(const model::AttentionArgs& a);
// Its backward (training: queries are the keys), from the forward's out and
// lse: dq, dk, dv written (not added), as the reference backward writes them.
bool attention_flash_backward(const model::AttentionGradArgs& ga);
// One query per row over a KV cache (a.queries == 1, a.query_slot given).
bool attention_decode(const model::AttentionArgs& a);

// One sampling step for every row of [batch, vocab] logits on the device.
// Rows not yet finished take a token by model/sampling_math.h's rules, with the
// draw uniform_draw(seeds[b], step), and record it: step_tokens[b],
// out_tokens / out_logprobs [b, step] (rows of new_tokens), lengths[b] =
// step + 1, finished[b] = 1 on a stop token. Finished rows take pad_token
// into step_tokens alone. sort_keys / order: plan_sampling's scratch (null
// without top-k and top-p).
struct SampleArgs {
  const float* logits;
  int64_t batch, vocab;
  float temperature;
  int64_t top_k;
  float top_p;
  const uint64_t* seeds;
  const int32_t* stop_tokens;
  int64_t stop_count;
  int32_t pad_token;
  int64_t step, new_tokens;
  int32_t *step_tokens, *out_tokens;
  float* out_logprobs;
  int32_t* lengths;
  uint8_t* finished;
  uint64_t* sort_keys;
  int32_t* order;
  int64_t sort_width;
};
void sample_tokens(const SampleArgs& a);

}  // namespace rlfarm::cuda
