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

// One step over `ranges`; `step` counts from 1. m and v are the first and
// second moments of the buffer from element moments_begin on (0: all of it).
void adamw_step(float* params, const float* grads, float* m, float* v, int64_t moments_begin, int64_t step,
                const AdamWOptions& o, const std::vector<DecayRange>& ranges);

// The sum of squares of the gradients (in double, in a fixed order), and its root.
double sum_of_squares(const float* grads, int64_t n);
double gradient_norm(const float* grads, int64_t n);

// Scales the gradients by min(1, max_norm / (norm + 1e-6)), as
// torch.nn.utils.clip_grad_norm_; returns the norm before clipping.
double clip_gradient_norm(float* grads, int64_t n, double max_norm);
// The scaling of clip_gradient_norm, given the norm (the global one, under ZeRO-1).
void scale_to_norm(float* grads, int64_t n, double norm, double max_norm);

// One flag per parameter of the layout (whether weight decay applies) as
// ranges of the buffer; the flags must match the layout's parameters.
std::vector<DecayRange> decay_ranges(const ParamLayout& layout, const std::vector<bool>& decay);

// The error of a step whose gradient norm is NaN or infinite.
void check_finite_norm(double norm);

// The optimizer step a trainer takes: the global gradient norm, clipped to
// max_norm when max_norm > 0; a NaN or infinite norm stops the step (nothing
// is changed but the clipping); then one AdamW update. Returns the norm before
// clipping.
double clipped_adamw_step(float* params, float* grads, float* m, float* v, int64_t n, int64_t step,
                          const AdamWOptions& o, const std::vector<DecayRange>& ranges, double max_norm);

// An AdamW optimizer of one model: its hyperparameters (the learning rate is
// each step's), the decay ranges of the model's layout, and the moments of the
// stretch [begin, end) of the flat buffer it updates: all of it, or one rank's
// shard under ZeRO-1. Made once; each step only runs the update.
class AdamW {
 public:
  AdamW(const ParamLayout& layout, const std::vector<bool>& decay, const AdamWOptions& options);

  // Keeps the moments of [begin, end) only (what it held there is kept), in
  // buffers of `capacity` >= end - begin elements (the rest zeros, for collectives
  // that move equal blocks).
  void set_shard(int64_t begin, int64_t end, int64_t capacity);

  int64_t total() const { return total_; }
  int64_t begin() const { return begin_; }
  int64_t end() const { return end_; }
  bool sharded() const { return begin_ != 0 || end_ != total_; }
  // The moments (zeros until the first step), allocated when first asked for:
  // an optimizer sharded before then never holds the whole model's.
  const Tensor& m();
  const Tensor& v();
  // This step's options: the hyperparameters with the learning rate `lr`.
  AdamWOptions with_lr(double lr) const;
  // The decay ranges (offsets in the whole buffer) that fall in [begin, end).
  const std::vector<DecayRange>& ranges() const { return shard_ranges_; }

  // The whole buffer's step on the CPU (not sharded): clipped_adamw_step.
  double step(float* params, float* grads, int64_t step, double lr, double max_norm);

  // A cuda model's engine keeps the moments on its device between steps:
  // which copy changed last. The engine reads the host's again when it did
  // (m() and v() were handed out, or loaded); the host's is brought up to date
  // only when asked for (cuda::Engine::download_moments), never per step.
  bool host_moments_changed = true;
  bool device_moments_changed = false;

 private:
  int64_t total_;
  int64_t begin_ = 0, end_ = 0, capacity_ = 0;
  AdamWOptions options_;
  std::vector<DecayRange> ranges_, shard_ranges_;
  Tensor m_, v_;
};

}  // namespace rlfarm::model
