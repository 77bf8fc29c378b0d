#include "optimizer.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/error.h"
#include "../core/thread_pool.h"
#include "nn_math.h"

namespace rlfarm::model {

void adamw_step(float* params, const float* grads, float* m, float* v, int64_t moments_begin, int64_t step,
                const AdamWOptions& o, const std::vector<DecayRange>& ranges) {
  const math::AdamWScalars k = math::adamw_scalars(o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, step);
  for (const DecayRange& r : ranges) {
    const float keep = r.decay ? k.decay : 1.0f;  // decoupled weight decay: p *= 1 - lr wd
    parallel_for(r.numel, 1 << 15, [&](int64_t begin, int64_t end) {
      float* p = params + r.offset;
      const float* g = grads + r.offset;
      float* mr = m + (r.offset - moments_begin);
      float* vr = v + (r.offset - moments_begin);
      for (int64_t i = begin; i < end; ++i) math::adamw_update(p[i], g[i], mr[i], vr[i], keep, k);
    });
  }
}

double sum_of_squares(const float* grads, int64_t n) {
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
  return total;
}

double gradient_norm(const float* grads, int64_t n) { return std::sqrt(sum_of_squares(grads, n)); }

double clip_gradient_norm(float* grads, int64_t n, double max_norm) {
  const double norm = gradient_norm(grads, n);
  scale_to_norm(grads, n, norm, max_norm);
  return norm;
}

void scale_to_norm(float* grads, int64_t n, double norm, double max_norm) {
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) {
    const float c = static_cast<float>(coef);
    parallel_for(n, 1 << 15, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) grads[i] *= c;
    });
  }
}

std::vector<DecayRange> decay_ranges(const ParamLayout& layout, const std::vector<bool>& decay) {
  const auto& params = layout.params;
  RLF_CHECK(decay.size() == params.size(), "AdamW: decay must have one flag per parameter (", params.size(), "); got ",
            decay.size());
  std::vector<DecayRange> ranges;
  for (size_t i = 0; i < params.size(); ++i) {
    ranges.push_back({static_cast<int64_t>(params[i].offset), static_cast<int64_t>(params[i].numel), decay[i]});
  }
  return ranges;
}

void check_finite_norm(double norm) {
  RLF_CHECK(std::isfinite(norm), "optimizer.step: the gradient norm is ", norm,
            " (NaN or Inf in the gradients); the step was not taken");
}

double clipped_adamw_step(float* params, float* grads, float* m, float* v, int64_t n, int64_t step,
                          const AdamWOptions& o, const std::vector<DecayRange>& ranges, double max_norm) {
  const double norm = max_norm > 0 ? clip_gradient_norm(grads, n, max_norm) : gradient_norm(grads, n);
  check_finite_norm(norm);
  adamw_step(params, grads, m, v, 0, step, o, ranges);
  return norm;
}

AdamW::AdamW(const ParamLayout& layout, const std::vector<bool>& decay, const AdamWOptions& options)
    : total_(static_cast<int64_t>(layout.total)), options_(options), ranges_(decay_ranges(layout, decay)) {
  set_shard(0, total_, total_);
}

void AdamW::set_shard(int64_t begin, int64_t end, int64_t capacity) {
  RLF_CHECK(0 <= begin && begin <= end && end <= total_ && capacity >= end - begin, "AdamW: the shard [", begin, ", ",
            end, ") in buffers of ", capacity, " does not fit a model of ", total_, " parameters");
  if (m_.defined()) {
    // What this optimizer held of the new stretch stays (a state loaded before sharding).
    Tensor m = zeros({capacity}, DType::f32, Device::host());
    Tensor v = zeros({capacity}, DType::f32, Device::host());
    const int64_t from = std::max(begin, begin_), to = std::min(end, end_);
    for (int64_t i = from; i < to; ++i) {
      m.data<float>()[i - begin] = m_.data<float>()[i - begin_];
      v.data<float>()[i - begin] = v_.data<float>()[i - begin_];
    }
    m_ = m;
    v_ = v;
  }
  begin_ = begin;
  end_ = end;
  capacity_ = capacity;
  shard_ranges_.clear();
  for (const DecayRange& r : ranges_) {
    const int64_t from = std::max(begin, r.offset), to = std::min(end, r.offset + r.numel);
    if (from < to) shard_ranges_.push_back({from, to - from, r.decay});
  }
}

const Tensor& AdamW::m() {
  if (!m_.defined()) {
    m_ = zeros({capacity_}, DType::f32, Device::host());
    v_ = zeros({capacity_}, DType::f32, Device::host());
  }
  return m_;
}

const Tensor& AdamW::v() {
  m();
  return v_;
}

AdamWOptions AdamW::with_lr(double lr) const {
  AdamWOptions o = options_;
  o.lr = lr;
  return o;
}

double AdamW::step(float* params, float* grads, int64_t step, double lr, double max_norm) {
  RLF_CHECK(!sharded(), "AdamW: a sharded optimizer steps through its process group");
  RLF_CHECK(step >= 1, "optimizer.step: step counts from 1; got ", step);
  return clipped_adamw_step(params, grads, m().data<float>(), v().data<float>(), total_, step, with_lr(lr), ranges_, max_norm);
}

}  // namespace rlfarm::model
