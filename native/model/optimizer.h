// AdamW as PyTorch computes it (torch.optim.AdamW, decoupled weight decay),
// over a model's flat parameter buffer, and global gradient-norm clipping.
#pragma once

#include <cstdint>
#include <vector>

#include "../core/tensor.h"
#include "layout.h"

namespace rlfarm::model {

struct AdamWOptions {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
};

// A stretch of the buffer and whether weight decay applies to it.
struct DecayRange {
  int64_t offset, numel;
  bool decay;
};

// One step; `step` counts from 1. m and v are the first and second moments.
void adamw_step(float* params, const float* grads, float* m, float* v, int64_t step, const AdamWOptions& o,
                const std::vector<DecayRange>& ranges);

// sqrt(sum of squares) of all gradients, summed in a fixed order.
double gradient_norm(const float* grads, int64_t n);

// Scales the gradients by min(1, max_norm / (norm + 1e-6)), as
// torch.nn.utils.clip_grad_norm_; returns the norm before clipping.
double clip_gradient_norm(float* grads, int64_t n, double max_norm);

// One flag per parameter of the layout (whether weight decay applies) as
// ranges of the buffer; the flags must match the layout's parameters.
std::vector<DecayRange> decay_ranges(const ParamLayout& layout, const std::vector<bool>& decay);

// Checks the moments (cpu f32 tensors of `total` elements, the model's
// parameter count) and the step (from 1); errors name the argument.
void check_adamw_state(const Tensor& m, const Tensor& v, int64_t step, int64_t total);

// The error of a step whose gradient norm is NaN or infinite.
void check_finite_norm(double norm);

// The optimizer step a trainer takes: the global gradient norm, clipped to
// max_norm when max_norm > 0; a NaN or infinite norm stops the step (nothing
// is changed but the clipping); then one AdamW update. Returns the norm before
// clipping.
double clipped_adamw_step(float* params, float* grads, float* m, float* v, int64_t n, int64_t step,
                          const AdamWOptions& o, const std::vector<DecayRange>& ranges, double max_norm);

}  // namespace rlfarm::model
