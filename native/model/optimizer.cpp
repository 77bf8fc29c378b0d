#include "optimizer.h"

#include <cmath>
#include <vector>

#include "../core/error.h"
#include "../core/thread_pool.h"
#include "nn_math.h"

namespace rlfarm::model {

void adamw_step(float* params, const float* grads, float* m, float* v, int64_t step, const AdamWOptions& o,
                const std::vector<DecayRange>& ranges) {
  const math::AdamWScalars k = math::adamw_scalars(o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, step);
  for (const DecayRange& r : ranges) {
    const float keep = r.decay ? k.decay : 1.0f;  // decoupled weight decay: p *= 1 - lr wd
    parallel_for(r.numel, 1 << 15, [&](int64_t begin, int64_t end) {
      float* p = params + r.offset;
      const float* g = grads + r.offset;
      float* mr = m + r.offset;
      float* vr = v + r.offset;
      for (int64_t i = begin; i < end; ++i) math::adamw_update(p[i], g[i], mr[i], vr[i], keep, k);
    });
  }
}

double gradient_norm(const float* grads, int64_t n) {
  constexpr int64_t kBlock = 1 << 16;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(blocks), 0.0);
  parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      double s = 0.0;
      const int64_t end = std::min(n, (b + 1) * kBlock);
      for (int64_t i = b * kBlock; i < end; ++i) s += double(grads[i]) * grads[i];
      partial[b] = s;
    }
  });
  double total = 0.0;
  for (double s : partial) total += s;
  return std::sqrt(total);
}

double clip_gradient_norm(float* grads, int64_t n, double max_norm) {
  const double norm = gradient_norm(grads, n);
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) {
    const float c = static_cast<float>(coef);
    parallel_for(n, 1 << 15, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) grads[i] *= c;
    });
  }
  return norm;
}

std::vector<DecayRange> decay_ranges(const ParamLayout& layout, const std::vector<bool>& decay) {
  const auto& params = layout.params;
  RLF_CHECK(decay.size() == params.size(), "optimizer.step: decay must have one flag per parameter");
  std::vector<DecayRange> ranges;
  for (size_t i = 0; i < params.size(); ++i) {
    ranges.push_back({static_cast<int64_t>(params[i].offset), static_cast<int64_t>(params[i].numel), decay[i]});
  }
  return ranges;
}

void check_adamw_state(const Tensor& m, const Tensor& v, int64_t step, int64_t total) {
  for (const auto& [t, name] : {std::pair{&m, "m"}, std::pair{&v, "v"}}) {
    check_usable(*t, "optimizer.step");
    RLF_CHECK(t->dtype == DType::f32 && t->device().is_cpu() && t->numel() == total, "optimizer.step: ", name,
              " must be a cpu f32 tensor of ", total, " elements (the model's parameters); got ", t->describe());
  }
  RLF_CHECK(step >= 1, "optimizer.step: step counts from 1; got ", step);
}

void check_finite_norm(double norm) {
  RLF_CHECK(std::isfinite(norm), "optimizer.step: the gradient norm is ", norm,
            " (NaN or Inf in the gradients); the step was not taken");
}

double clipped_adamw_step(float* params, float* grads, float* m, float* v, int64_t n, int64_t step,
                          const AdamWOptions& o, const std::vector<DecayRange>& ranges, double max_norm) {
  const double norm = max_norm > 0 ? clip_gradient_norm(grads, n, max_norm) : gradient_norm(grads, n);
  check_finite_norm(norm);
  adamw_step(params, grads, m, v, step, o, ranges);
  return norm;
}

}  // namespace rlfarm::model
