// Batched sampling with a KV cache: a prefill of the prompts through the
// forward's layers (run_layers), then one decoding step per new token through
// the same layer (layer_forward) with its keys read from the cache.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "../core/thread_pool.h"
#include "layers.h"
#include "sampling.h"
#include "transformer.h"
#include "transformer_impl.h"

namespace rlfarm::model {

GeneratePrompts Transformer::check_generate(const Tensor& prompts, const Tensor& mask, const GenerateOptions& o) const {
  const char* op = "model.generate";
  check_tokens(prompts, mask, op);
  const ModelConfig& c = config_;
  const int64_t B = prompts.shape[0], P = prompts.shape[1], new_tokens = o.max_new_tokens;
  RLF_CHECK(new_tokens >= 0, op, ": maxNewTokens must be >= 0; got ", new_tokens);
  RLF_CHECK(std::isfinite(o.temperature) && o.temperature >= 0, op, ": temperature must be >= 0; got ", o.temperature);
  RLF_CHECK(o.top_k >= 0, op, ": topK must be >= 0; got ", o.top_k);
  RLF_CHECK(o.top_p > 0 && o.top_p <= 1, op, ": topP must be in (0, 1]; got ", o.top_p);
  RLF_CHECK(o.seeds.size() == static_cast<size_t>(B), op, ": give one seed per prompt (", B, "); got ", o.seeds.size());
  for (int32_t t : o.stop_tokens) {
    RLF_CHECK(t >= 0 && t < c.vocab, op, ": stop token ", t, " is outside the vocabulary [0, ", c.vocab, ")");
  }
  RLF_CHECK(o.pad_token >= 0 && o.pad_token < c.vocab, op, ": padToken ", o.pad_token, " is outside the vocabulary");

  GeneratePrompts p;
  p.batch = B;
  p.width = P;
  p.tokens.assign(prompts.data<int32_t>(), prompts.data<int32_t>() + B * P);
  positions_from_mask(mask, B, P, p.positions, p.key_valid);
  p.length.assign(B, 0);
  p.last.assign(B, 0);
  int64_t longest = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < P; ++t) {
      if (p.key_valid[b * P + t]) {
        ++p.length[b];
        p.last[b] = static_cast<int32_t>(t);
      }
    }
    RLF_CHECK(p.length[b] > 0, op, ": prompt ", b, " has no tokens (its attention mask is all 0)");
    longest = std::max<int64_t>(longest, p.length[b]);
  }
  // Positions run to the longest prompt's length plus the new tokens: the model's context bounds them.
  const int64_t room = c.max_positions - longest;
  RLF_CHECK(new_tokens <= room, op, ": maxNewTokens is ", new_tokens, ", but the longest prompt has ", longest,
            " tokens and the model's context length (maxPositions) is ", c.max_positions, ": at most ",
            std::max<int64_t>(0, room), " new tokens fit");
  return p;
}

GenerateResult generate_result(const GeneratePrompts& p, int64_t new_tokens, int64_t steps_done,
                               const int32_t* out_tokens, const float* out_logprobs, const int32_t* lengths) {
  const int64_t B = p.batch, P = p.width;
  GenerateResult r;
  r.tokens = empty({B, P + steps_done}, DType::i32, Device::host());
  r.logprobs = empty({B, steps_done}, DType::f32, Device::host());
  r.lengths = empty({B}, DType::i32, Device::host());
  for (int64_t b = 0; b < B; ++b) {
    std::memcpy(r.tokens.data<int32_t>() + b * (P + steps_done), p.tokens.data() + b * P, sizeof(int32_t) * P);
    std::memcpy(r.tokens.data<int32_t>() + b * (P + steps_done) + P, out_tokens + b * new_tokens,
                sizeof(int32_t) * steps_done);
    std::memcpy(r.logprobs.data<float>() + b * steps_done, out_logprobs + b * new_tokens, sizeof(float) * steps_done);
    r.lengths.data<int32_t>()[b] = lengths[b];
  }
  const int64_t width = P + steps_done;
  r.attention_mask = zeros({B, width}, DType::u8, Device::host());
  r.action_mask = zeros({B, width - 1}, DType::f32, Device::host());
  r.last_mask = zeros({B, width - 1}, DType::f32, Device::host());
  for (int64_t b = 0; b < B; ++b) {
    uint8_t* attention = r.attention_mask.data<uint8_t>() + b * width;
    float* action = r.action_mask.data<float>() + b * (width - 1);
    std::memcpy(attention, p.key_valid.data() + b * P, P);
    // New token j sits at P + j; its log-prob at P - 1 + j (predicted from the token before it).
    for (int64_t j = 0; j < lengths[b]; ++j) {
      attention[P + j] = 1;
      action[P - 1 + j] = 1.0f;
    }
    if (lengths[b] > 0) r.last_mask.data<float>()[b * (width - 1) + P - 1 + lengths[b] - 1] = 1.0f;
  }
  return r;
}

GenerateResult Transformer::generate(const Tensor& prompts, const Tensor& mask, const GenerateOptions& o) {
  const GeneratePrompts gp = check_generate(prompts, mask, o);
  const ModelConfig& c = config_;
  const int64_t B = gp.batch, P = gp.width, new_tokens = o.max_new_tokens;
  const std::vector<int32_t>& length = gp.length;
  const std::vector<int32_t>& last = gp.last;

  Saved s;
  s.batch = B;
  s.steps = P;
  s.rows = B * P;
  s.tokens = gp.tokens;
  s.positions = gp.positions;
  s.key_valid = gp.key_valid;
  s.masked = true;
  const int64_t d = c.dim, V = c.vocab, kv = c.kv_dim(), qkv_dim = c.qkv_dim();
  const int64_t slots = P + std::max<int64_t>(new_tokens, 1);
  const int64_t up_width = c.arch == Arch::gpt2 ? c.hidden : 2 * c.hidden;
  KvCache cache;
  cache.slots = slots;
  reserve(cache.k, static_cast<size_t>(c.layers * B * slots * kv), "the KV cache");
  reserve(cache.v, static_cast<size_t>(c.layers * B * slots * kv), "the KV cache");
  reserve(s.x, static_cast<size_t>(s.rows * d), "activations");
  reserve(s.stats, static_cast<size_t>(2 * s.rows), "activations");
  reserve(s.qkv, static_cast<size_t>(s.rows * qkv_dim), "activations");
  reserve(s.lse, static_cast<size_t>(B * c.heads * P), "activations");
  reserve(s.att, static_cast<size_t>(s.rows * c.q_dim()), "activations");
  reserve(s.pre, static_cast<size_t>(s.rows * up_width), "activations");
  reserve(s.final_normed, static_cast<size_t>(s.rows * d), "activations");
  reserve(s.normed, static_cast<size_t>(s.rows * d), "activations");
  reserve(s.act, static_cast<size_t>(s.rows * c.hidden), "activations");
  if (c.arch != Arch::gpt2) rope_.ensure(*std::max_element(length.begin(), length.end()) + new_tokens + 1);
  run_layers(s, &cache);

  std::vector<uint8_t> valid(static_cast<size_t>(B * slots), 0);
  for (int64_t b = 0; b < B; ++b) std::memcpy(valid.data() + b * slots, s.key_valid.data() + b * P, P);

  const float* Pm = params_.data<float>();
  const auto opt = [&](size_t offset) { return offset == kNone ? nullptr : Pm + offset; };
  std::vector<float> x(B * d), normed(B * d), stats(2 * B), qkv(B * qkv_dim), att(B * c.q_dim()), pre(B * up_width),
      act(B * c.hidden), logits(B * V);
  for (int64_t b = 0; b < B; ++b) std::memcpy(normed.data() + b * d, s.final_normed.data() + (b * P + last[b]) * d, sizeof(float) * d);
  linear(normed.data(), B, d, Pm + layout_.lm_head, V, logits.data(), V, false);

  std::vector<int32_t> out_tokens(static_cast<size_t>(B * new_tokens), o.pad_token), lengths(B, 0);
  std::vector<float> out_logprobs(static_cast<size_t>(B * new_tokens), 0.0f);
  std::vector<uint8_t> finished(B, 0);
  std::vector<int32_t> step_tokens(B), step_positions(B), query_slot(B);
  int64_t steps_done = 0;
  for (int64_t step = 0; step < new_tokens; ++step) {
    parallel_for(B, 1, [&](int64_t b0, int64_t b1) {
      SampleScratch scratch;
      for (int64_t b = b0; b < b1; ++b) {
        if (finished[b]) {
          step_tokens[b] = o.pad_token;
          continue;
        }
        const Sample pick = sample_token(logits.data() + b * V, V, o.temperature, o.top_k, o.top_p,
                                         uniform_draw(o.seeds[b], static_cast<uint64_t>(step)), scratch);
        step_tokens[b] = pick.token;
        out_tokens[b * new_tokens + step] = pick.token;
        out_logprobs[b * new_tokens + step] = pick.logprob;
        lengths[b] = static_cast<int32_t>(step + 1);
        if (std::find(o.stop_tokens.begin(), o.stop_tokens.end(), pick.token) != o.stop_tokens.end()) finished[b] = 1;
      }
    });
    steps_done = step + 1;
    if (step + 1 == new_tokens || std::all_of(finished.begin(), finished.end(), [](uint8_t f) { return f != 0; })) break;

    // One decoding step: the new token of each row at slot P + step.
    const int64_t slot = P + step;
    for (int64_t b = 0; b < B; ++b) {
      step_positions[b] = length[b] + static_cast<int32_t>(step);
      query_slot[b] = static_cast<int32_t>(slot);
      valid[b * slots + slot] = 1;
    }
    embed(step_tokens.data(), step_positions.data(), Pm + layout_.token_embedding, opt(layout_.position_embedding),
          x.data(), B, d);
    const LayerStep decode{B, 1, step_positions.data(), valid.data(), &cache, query_slot.data(), true};
    const LayerBuffers buffers{x.data(),   x.data(),    x.data(), stats.data(), stats.data(), normed.data(),
                               qkv.data(), att.data(), pre.data(), act.data(),   nullptr};
    for (int64_t l = 0; l < c.layers; ++l) layer_forward(l, decode, buffers);
    norm_forward(x.data(), Pm + layout_.final_norm_w, opt(layout_.final_norm_b), normed.data(), stats.data(), B, d,
                 c.norm_eps);
    linear(normed.data(), B, d, Pm + layout_.lm_head, V, logits.data(), V, false);
  }

  return generate_result(gp, new_tokens, steps_done, out_tokens.data(), out_logprobs.data(), lengths.data());
}

}  // namespace rlfarm::model
