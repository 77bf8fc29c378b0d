// Where each parameter lives in a model's single contiguous buffer (llm.c
// style): gradients and the optimizer's moments use the same layout. Names
// are Hugging Face's; matrices are stored [out, in] (as nn.Linear), so GPT-2's
// Conv1D weights, which Hugging Face stores [in, out], are transposed on load
// and save (ParamInfo::hf_transposed).
//
// Fused layouts: a layer's q, k and v weights are adjacent, forming one
// [q_dim + 2 kv_dim, dim] matrix (and their biases one vector); Llama's gate
// and up weights are adjacent, forming one [2 hidden, dim] matrix.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "../core/tensor.h"
#include "config.h"

namespace rlfarm::model {

struct ParamInfo {
  std::string name;     // Hugging Face name
  Shape shape;          // as stored here ([out, in] for matrices)
  size_t offset;        // in floats from the start of the buffer
  size_t numel;
  bool decay;           // AdamW weight decay applies by default
  bool hf_transposed;   // Hugging Face stores it as shape reversed
};

struct LayerOffsets {
  size_t norm1_w, norm1_b;  // norm1_b only for GPT-2
  size_t qkv_w, qkv_b;      // qkv_b for GPT-2 and qkv_bias models
  size_t out_w, out_b;      // out_b only for GPT-2
  size_t norm2_w, norm2_b;
  size_t up_w, up_b;        // GPT-2 c_fc [hidden, dim]; Llama gate|up [2 hidden, dim]
  size_t down_w, down_b;    // down_b only for GPT-2
};

constexpr size_t kNone = static_cast<size_t>(-1);

struct ParamLayout {
  std::vector<ParamInfo> params;
  std::vector<LayerOffsets> layers;
  size_t token_embedding = kNone;
  size_t position_embedding = kNone;  // GPT-2
  size_t final_norm_w = kNone, final_norm_b = kNone;
  size_t lm_head = kNone;  // == token_embedding when tied
  size_t score = kNone;    // scalar head [1, dim]
  size_t total = 0;        // floats

  const ParamInfo* find(const std::string& name) const;
};

ParamLayout make_layout(const ModelConfig& config);

// [begin, end) in floats of the flat buffer.
struct FlatRange {
  int64_t begin, end;
};

// The regions of the gradient buffer in the order Transformer::backward makes
// them final: what follows the last layer (final norm, an untied LM head, the
// scalar head), then each layer from the last to the first, then what comes
// before the first layer (the embeddings, which a tied LM head shares and so
// are final only at the end). Empty regions are left out.
std::vector<FlatRange> gradient_regions_in_backward_order(const ParamLayout& layout);

}  // namespace rlfarm::model
