// A decoder-only transformer on the CPU: forward (with or without a training
// cache) and backward into a gradient buffer (transformer.cpp), and batched
// generation with a KV cache (generate.cpp); both run the same layer
// (layer_forward). Parameters and gradients are single contiguous buffers laid out by
// ParamLayout. Not thread-safe: one call at a time (the binding enforces it).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "../core/huge_pages.h"
#include "../core/tensor.h"
#include "block_impl.h"
#include "config.h"
#include "layers.h"
#include "layout.h"

namespace rlfarm::model {

// Activation and cache buffers: large, reused, walked by the GEMMs.
using Buffer = std::vector<float, HugePageAllocator<float>>;

struct ForwardOptions {
  bool train = false;     // keep activations for backward()
  bool logprobs = true;   // log p(tokens[t+1] | tokens[..t]), [B, T-1]
  bool entropy = false;   // entropy of each next-token distribution, [B, T-1]
  float temperature = 1;  // log-probs and entropy of softmax(logits / temperature)
  bool logits = false;    // all logits, [B, T, V] (memory-hungry; for tests and small vocabularies)
  bool values = false;    // the scalar head at every position, [B, T]
  // With values: only the positions that have a log-prob, [B, T-1] (value t
  // beside logp[t], what a PPO value model needs); backward then takes
  // gradValues on that grid too.
  bool action_values = false;
  bool on_device = false; // a cuda model's logp, entropy and values stay on its device (a cpu model ignores it)
  std::string op = "model.forward";  // the call that errors name (model.logprobs runs a forward too)
};

struct ForwardResult {
  Tensor logp, entropy, logits, values;
};

struct GenerateOptions {
  int64_t max_new_tokens = 16;
  float temperature = 1;  // 0: greedy (argmax)
  int64_t top_k = 0;      // 0: off
  float top_p = 1;        // 1: off
  std::vector<int32_t> stop_tokens;
  int32_t pad_token = 0;  // written after a row has stopped
  std::vector<uint64_t> seeds;  // one per row
};

struct GenerateResult {
  Tensor tokens;    // [B, P + n] i32: the prompts, then the new tokens (pad after a stop)
  Tensor logprobs;  // [B, n] f32: log-prob of each new token under softmax(logits / temperature), 0 after a stop
  Tensor lengths;   // [B] i32: new tokens per row, the stop token included
  // The masks a trainer needs, made here so that no caller loops over tokens:
  Tensor attention_mask;  // [B, P + n] u8: the prompt's mask, then 1 for each new token of the row
  Tensor action_mask;     // [B, P + n - 1] f32: 1 at the log-prob positions of the new tokens
  Tensor last_mask;       // [B, P + n - 1] f32: 1 at the log-prob position of each row's last new token
};

// Values on the log-prob grid: [B, T] -> [B, T-1] (the last position has no
// next token), and a gradient on that grid back to [B, T] (zero there). Both
// engines share these (on the host, or on a cuda model's device).
Tensor values_on_action_grid(const Tensor& values);
Tensor grad_from_action_grid(const Tensor& grad, int64_t steps);

// The prompts of a generate() call, checked: tokens, positions and validity as
// a forward's, each row's token count and its last token's index.
struct GeneratePrompts {
  int64_t batch = 0, width = 0;
  std::vector<int32_t> tokens, positions, length, last;
  std::vector<uint8_t> key_valid;
};

// generate()'s result from its sampled tokens: out_tokens and out_logprobs are
// [batch, new_tokens] of which the first steps_done columns were sampled;
// lengths [batch] counts each row's new tokens.
GenerateResult generate_result(const GeneratePrompts& p, int64_t new_tokens, int64_t steps_done,
                               const int32_t* out_tokens, const float* out_logprobs, const int32_t* lengths);

// Hugging Face's positions for padded batches: cumsum(mask) - 1, at least 0;
// valid[i] is 1 where the mask is (every token without a mask).
void positions_from_mask(const Tensor& mask, int64_t batch, int64_t steps, std::vector<int32_t>& positions,
                         std::vector<uint8_t>& valid);
// GPT-2's learned positions end at n_positions: an error naming op past them.
void check_positions(const ModelConfig& config, const std::vector<int32_t>& positions, const char* op);

class Transformer {
 public:
  explicit Transformer(const ModelConfig& config);

  const ModelConfig& config() const { return config_; }
  const ParamLayout& layout() const { return layout_; }
  const Tensor& params() const { return params_; }
  // The gradient buffer, allocated (as zeros) on first use.
  const Tensor& grads();
  void zero_grad();

  // Normal(0, 0.02) weights (output projections scaled by 1/sqrt(2 layers)),
  // ones for norm weights, zeros for biases; deterministic in the seed.
  void init_random(uint64_t seed);

  // tokens [B, T] i32; mask [B, T] (1 = real token) or undefined.
  ForwardResult forward(const Tensor& tokens, const Tensor& mask, const ForwardOptions& options);
  // Gradients at the outputs of the last training forward ([B, T-1] for
  // log-probs and entropy, [B, T] for values; each may be undefined); adds the
  // parameter gradients into grads(). on_final, when given, is called with
  // each region of gradient_regions_in_backward_order(layout()), in that
  // order, as soon as backward has written its last gradient there (a data-
  // parallel caller all-reduces it while backward goes on).
  using RegionFinal = std::function<void(const FlatRange&)>;
  void backward(const Tensor& grad_logp, const Tensor& grad_entropy, const Tensor& grad_values,
                const RegionFinal& on_final = nullptr);
  GenerateResult generate(const Tensor& prompts, const Tensor& mask, const GenerateOptions& options);

  // The checks of forward(), backward() and generate() (the CUDA engine makes the same ones).
  GeneratePrompts check_generate(const Tensor& prompts, const Tensor& mask, const GenerateOptions& o) const;
  void check_tokens(const Tensor& tokens, const Tensor& mask, const char* op) const;
  static void check_mask_values(const Tensor& mask, const char* op);
  void check_forward(const Tensor& tokens, const Tensor& mask, const ForwardOptions& o) const;
  // device >= 0 (a cuda model's engine): gradients on cuda:device are taken too.
  void check_backward(const Tensor& grad_logp, const Tensor& grad_entropy, const Tensor& grad_values, int64_t batch,
                      int64_t steps, bool entropy_kept, bool action_values, int device = -1) const;

 private:
  struct Saved;  // activations of one forward

  // Keys and values of every layer during generation: [layers, batch, slots, kv_dim] each.
  struct KvCache {
    Buffer k, v;
    int64_t slots = 0;
  };
  // The rows one pass of a layer works on: `queries` rows for each of `batch`
  // sequences, at `positions` [batch * queries]. With a cache, this pass's keys
  // and values are stored in it (query i of row b at slot query_slot[b] + i;
  // query_slot null: slot i), and with read_cache attention reads every key
  // from it (a decoding step) instead of from this pass's rows.
  struct LayerStep {
    int64_t batch, queries;
    const int32_t* positions;
    const uint8_t* key_valid;  // [batch, key slots], or null: all valid
    KvCache* cache;
    const int32_t* query_slot;
    bool read_cache;
  };
  using LayerBuffers = BlockBuffers;

  // One transformer block (block_forward over the CPU's ops), written once for every caller.
  void layer_forward(int64_t layer, const LayerStep& step, const LayerBuffers& buffers);
  // Embeddings, every layer and the final norm over s's tokens (a forward, or a prefill into `cache`).
  void run_layers(Saved& s, KvCache* cache);
  void head_logprobs(Saved& s, const ForwardOptions& o, ForwardResult& r);

  ModelConfig config_;
  ParamLayout layout_;
  Tensor params_, grads_;
  RopeTable rope_;

  struct SavedDeleter {
    void operator()(Saved* s) const;
  };
  std::unique_ptr<Saved, SavedDeleter> saved_;  // the last training forward
};

}  // namespace rlfarm::model
