// CPU kernels of the RLHF ops other than log-probs: GAE, whitening, KL penalty,
// PPO policy and value losses, the DPO family, the reward-model loss, casts.
// Per-token formulas come from ops/rl_math.h (shared with CUDA); sums are
// taken in double, in a fixed order, so results do not depend on the thread count.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../core/error.h"
#include "../ops/kernels.h"
#include "../ops/cast_math.h"
#include "../ops/rl_math.h"
#include "../core/thread_pool.h"

namespace rlfarm::cpu {
namespace {

// Calls f with the mask's data as a typed pointer (float, int32 or uint8).
template <typename F>
void with_mask(const MaskRef& mask, F&& f) {
  switch (mask.dtype) {
    case DType::f32: f(static_cast<const float*>(mask.data)); break;
    case DType::i32: f(static_cast<const int32_t*>(mask.data)); break;
    case DType::u8: f(static_cast<const uint8_t*>(mask.data)); break;
    default: fail("mask: unsupported dtype ", dtype_name(mask.dtype));
  }
}

template <typename M>
inline bool on(const M* mask, int64_t i) {
  return mask[i] != M(0);
}

// Sums K quantities over [0, n) in fixed blocks of `block` items: blocks run in
// parallel, each accumulates in double, and the block sums are added in order,
// so the result does not depend on the number of threads.
template <int K, typename F>
std::array<double, K> reduce_blocks(int64_t n, int64_t block, F&& body) {
  const int64_t blocks = (n + block - 1) / block;
  std::vector<std::array<double, K>> partial(static_cast<size_t>(blocks));
  parallel_for(blocks, std::max<int64_t>(1, 16384 / block), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      std::array<double, K> acc{};
      body(b * block, std::min(n, (b + 1) * block), acc);
      partial[b] = acc;
    }
  });
  std::array<double, K> total{};
  for (const auto& p : partial) {
    for (int k = 0; k < K; ++k) total[k] += p[k];
  }
  return total;
}

constexpr int64_t kReduceBlock = 4096;

}  // namespace

void gae(const GaeArgs& a) {
  with_mask(a.mask, [&](auto* mask) {
    const float gl = a.gamma * a.lambda;
    parallel_for(a.rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(a.steps, 1)), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t base = r * a.steps;
        float next_adv = 0.0f, next_value = 0.0f;  // A_{t+1} and V_{t+1} m_{t+1}
        for (int64_t t = a.steps - 1; t >= 0; --t) {
          const int64_t i = base + t;
          if (!on(mask, i)) {
            a.advantages[i] = 0.0f;
            a.returns[i] = 0.0f;
            next_adv = 0.0f;
            next_value = 0.0f;
            continue;
          }
          const float v = a.values[i];
          const float delta = a.rewards[i] + a.gamma * next_value - v;
          const float adv = delta + gl * next_adv;
          a.advantages[i] = adv;
          a.returns[i] = adv + v;
          next_adv = adv;
          next_value = v;
        }
      }
    });
  });
}

void whiten(const WhitenArgs& a) {
  with_mask(a.mask, [&](auto* mask) {
    const auto [sum, count] = reduce_blocks<2>(a.n, kReduceBlock, [&](int64_t b, int64_t e, std::array<double, 2>& acc) {
      for (int64_t i = b; i < e; ++i) {
        if (on(mask, i)) {
          acc[0] += a.x[i];
          acc[1] += 1.0;
        }
      }
    });
    if (count == 0) {
      std::memset(a.out, 0, sizeof(float) * a.n);
      return;
    }
    const double mean = sum / count;
    const auto [sq] = reduce_blocks<1>(a.n, kReduceBlock, [&](int64_t b, int64_t e, std::array<double, 1>& acc) {
      for (int64_t i = b; i < e; ++i) {
        if (on(mask, i)) acc[0] += (a.x[i] - mean) * (a.x[i] - mean);
      }
    });
    // Unbiased variance, as TRL's masked_whiten; a single token has variance 0.
    const double var = count > 1 ? sq / (count - 1) : 0.0;
    const double inv_std = 1.0 / std::sqrt(var + 1e-8);
    const double shift = a.shift_mean ? 0.0 : mean;
    parallel_for(a.n, kReduceBlock, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        a.out[i] = on(mask, i) ? static_cast<float>((a.x[i] - mean) * inv_std + shift) : 0.0f;
      }
    });
  });
}

void kl_penalty(const KlPenaltyArgs& a) {
  with_mask(a.mask, [&](auto* mask) {
    parallel_for(a.n, kReduceBlock, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const bool keep = on(mask, i);
        if (a.kl) a.kl[i] = keep ? math::kl_estimate(a.logp[i], a.ref_logp[i], a.estimator, a.clamp) : 0.0f;
        if (a.grad) a.grad[i] = keep ? math::kl_grad(a.logp[i], a.ref_logp[i], a.estimator, a.clamp) : 0.0f;
      }
    });
  });
}

void shape_rewards(const ShapeRewardsArgs& a) {
  with_mask(a.mask, [&](auto* mask) {
    using M = std::remove_const_t<std::remove_pointer_t<decltype(mask)>>;
    const M* last = static_cast<const M*>(a.last_mask.data);
    parallel_for(a.rows * a.steps, kReduceBlock, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const float kl = on(mask, i) ? math::kl_estimate(a.logp[i], a.ref_logp[i], a.estimator, a.clamp) : 0.0f;
        a.kl[i] = kl;
        a.rewards[i] = math::shaped_reward(kl, a.neg_kl_coef, on(last, i), a.scores[i / a.steps]);
      }
    });
  });
}

void elementwise(const ElementwiseArgs& a) {
  parallel_for(a.n, 1 << 15, [&](int64_t b, int64_t e) {
    if (a.op == ElementwiseOp::mul) {
      for (int64_t i = b; i < e; ++i) a.out[i] = a.a[i] * a.b[i];
    } else if (a.b == nullptr) {
      for (int64_t i = b; i < e; ++i) a.out[i] = a.alpha * a.a[i];
    } else {
      for (int64_t i = b; i < e; ++i) a.out[i] = a.alpha * a.a[i] + a.beta * a.b[i];
    }
  });
}

void row_sum(const RowSumArgs& a) {
  const auto sum_rows = [&](auto* mask) {
    parallel_for(a.rows, std::max<int64_t>(1, kReduceBlock / std::max<int64_t>(a.cols, 1)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        double sum = 0.0;
        for (int64_t c = 0; c < a.cols; ++c) {
          const int64_t i = r * a.cols + c;
          if (mask == nullptr || on(mask, i)) sum += a.x[i];  // a select: NaN under the mask stays out
        }
        a.out[r] = static_cast<float>(sum);
      }
    });
  };
  if (a.mask.data == nullptr) sum_rows(static_cast<const uint8_t*>(nullptr));
  else with_mask(a.mask, sum_rows);
}

void row_broadcast(const RowBroadcastArgs& a) {
  with_mask(a.mask, [&](auto* mask) {
    parallel_for(a.rows, std::max<int64_t>(1, kReduceBlock / std::max<int64_t>(a.cols, 1)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t c = 0; c < a.cols; ++c) {
          const int64_t i = r * a.cols + c;
          a.out[i] = on(mask, i) ? a.values[r] : 0.0f;
        }
      }
    });
  });
}

void ppo_policy_loss(const PpoPolicyLossArgs& a) {
  with_mask(a.mask, [&](auto* mask) {
    // Tokens per row, and rows with at least one token, fix the normalisation.
    std::vector<int64_t> row_count(a.rows, 0);
    parallel_for(a.rows, std::max<int64_t>(1, kReduceBlock / a.steps), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        int64_t n = 0;
        for (int64_t t = 0; t < a.steps; ++t) n += on(mask, r * a.steps + t) ? 1 : 0;
        row_count[r] = n;
      }
    });
    int64_t tokens = 0, rows_with_tokens = 0;
    for (int64_t n : row_count) {
      tokens += n;
      rows_with_tokens += n > 0 ? 1 : 0;
    }
    // One block per row: [loss, clipped, dual-clipped, squared log-ratio, clipped low, clipped high].
    const auto total = reduce_blocks<6>(a.rows * a.steps, a.steps, [&](int64_t b, int64_t e, std::array<double, 6>& acc) {
      const int64_t r = b / a.steps;
      double weight = 0.0;  // d(aggregate)/d(token loss)
      if (row_count[r] > 0) {
        weight = a.aggregate == Aggregate::token_mean ? 1.0 / tokens : 1.0 / (double(row_count[r]) * rows_with_tokens);
      }
      for (int64_t i = b; i < e; ++i) {
        if (!on(mask, i)) {
          a.grad[i] = 0.0f;
          continue;
        }
        const math::PpoToken tok =
            math::ppo_token(a.logp[i], a.old_logp[i], a.advantages[i], a.clip_low, a.clip_high, a.dual_clip);
        acc[0] += weight * tok.loss;
        a.grad[i] = static_cast<float>(weight * tok.grad);
        acc[1] += tok.clipped ? 1.0 : 0.0;
        acc[2] += tok.dual_clipped ? 1.0 : 0.0;
        acc[3] += 0.5 * double(tok.log_ratio) * tok.log_ratio;
        acc[4] += tok.clipped_low ? 1.0 : 0.0;
        acc[5] += tok.clipped_high ? 1.0 : 0.0;
      }
    });
    const double per_token = tokens > 0 ? 1.0 / tokens : 0.0;
    a.stats[0] = static_cast<float>(total[0]);
    a.stats[1] = static_cast<float>(total[1] * per_token);
    a.stats[2] = static_cast<float>(total[3] * per_token);
    a.stats[3] = static_cast<float>(total[2] * per_token);
    a.stats[4] = static_cast<float>(total[4] * per_token);
    a.stats[5] = static_cast<float>(total[5] * per_token);
  });
}

void value_loss(const ValueLossArgs& a) {
  with_mask(a.mask, [&](auto* mask) {
    const auto [tokens] = reduce_blocks<1>(a.n, kReduceBlock, [&](int64_t b, int64_t e, std::array<double, 1>& acc) {
      for (int64_t i = b; i < e; ++i) acc[0] += on(mask, i) ? 1.0 : 0.0;
    });
    const double weight = tokens > 0 ? 1.0 / tokens : 0.0;
    const auto [loss, clipped] = reduce_blocks<2>(a.n, kReduceBlock, [&](int64_t b, int64_t e, std::array<double, 2>& acc) {
      for (int64_t i = b; i < e; ++i) {
        if (!on(mask, i)) {
          a.grad[i] = 0.0f;
          continue;
        }
        const math::ValueToken tok = math::value_token(a.values[i], a.old_values[i], a.returns[i], a.clip);
        acc[0] += tok.loss;
        acc[1] += tok.clipped ? 1.0 : 0.0;
        a.grad[i] = static_cast<float>(weight * tok.grad);
      }
    });
    a.stats[0] = static_cast<float>(loss * weight);
    a.stats[1] = static_cast<float>(clipped * weight);
  });
}

namespace {
// A pair loss over its batch: each pair's terms, then the mean loss and accuracy.
template <typename Args>
void pair_loss(const Args& a) {
  const double inv_batch = 1.0 / a.batch;
  double loss = 0.0, correct = 0.0, invalid = 0.0;
  for (int64_t i = 0; i < a.batch; ++i) {
    const math::PairTerms p = math::pair_terms(a, i, inv_batch);
    loss += p.loss;
    correct += p.correct;
    invalid += p.invalid;
  }
  a.stats[0] = static_cast<float>(loss * inv_batch);
  a.stats[1] = static_cast<float>(correct * inv_batch);
  if constexpr (Args::kStats > 2) a.stats[2] = static_cast<float>(invalid);
}
}  // namespace

void dpo_loss(const DpoLossArgs& a) { pair_loss(a); }

void reward_loss(const RewardLossArgs& a) { pair_loss(a); }

void ordered_sum(const OrderedSumArgs& a) { *a.out = math::ordered_sum(a.x, a.n); }

void cast(const CastArgs& a) {
  parallel_for(a.n, 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) math::cast_element(a, i);
  });
}

}  // namespace rlfarm::cpu
