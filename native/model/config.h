// The shape of a transformer, for the two families rlfarm runs: GPT-2
// (learned positions, LayerNorm, GELU-tanh, fused qkv with biases) and Llama
// (RMSNorm, RoPE, SwiGLU, grouped-query attention; optional q/k/v biases as
// Qwen2 has). TypeScript reads Hugging Face's config.json into this. Every
// field is given by the caller: the defaults live in one place,
// ts/model/config.ts (MODEL_DEFAULTS), so none are written here.
#pragma once

#include <cstdint>
#include <string>

namespace rlfarm::model {

enum class Arch { gpt2, llama };

enum class RopeScaling { none, linear, llama3 };

struct ModelConfig {
  Arch arch = Arch::llama;
  int64_t vocab = 0;
  int64_t dim = 0;         // hidden size
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;    // == heads for GPT-2
  int64_t head_dim = 0;    // usually dim / heads
  int64_t hidden = 0;      // MLP inner size (4 * dim for GPT-2)
  int64_t max_positions = 0;
  float norm_eps = 0;
  float rope_theta = 0;
  RopeScaling rope_scaling = RopeScaling::none;
  float rope_factor = 0;
  float rope_low_freq_factor = 0;
  float rope_high_freq_factor = 0;
  int64_t rope_original_max_positions = 0;
  bool tie_embeddings = false;
  bool qkv_bias = false;     // Llama with attention_bias, Qwen2
  bool scalar_head = false;  // a [1, dim] "score" head for reward and value models

  int64_t q_dim() const { return heads * head_dim; }
  int64_t kv_dim() const { return kv_heads * head_dim; }
  int64_t qkv_dim() const { return q_dim() + 2 * kv_dim(); }
  // Throws rlfarm::Error naming the first field that is out of range.
  void validate() const;
};

const char* arch_name(Arch arch);
// "gpt2" or "llama"; anything else is an error naming the field.
Arch arch_from_name(const std::string& name);
// "none", "linear" or "llama3".
RopeScaling rope_scaling_from_name(const std::string& name);

}  // namespace rlfarm::model
