#include "zero.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../core/error.h"

namespace rlfarm::distributed {

Shard shard_of(int64_t total, int rank, int world_size) {
  RLF_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "ZeRO-1: rank ", rank, " of ", world_size);
  const int64_t per = (total + world_size - 1) / world_size;
  const int64_t block = (per + kShardAlign - 1) / kShardAlign * kShardAlign;
  const int64_t begin = std::min(total, rank * block);
  return Shard{begin, std::min(total, begin + block), block};
}

double sharded_adamw_step(ProcessGroup& group, float* params, float* grads, model::AdamW& optimizer, int64_t step,
                          double lr, double max_norm, Milliseconds timeout) {
  const int64_t total = optimizer.total();
  const Shard s = shard_of(total, group.rank(), group.world_size());
  RLF_CHECK(optimizer.begin() == s.begin && optimizer.end() == s.end, "optimizer.step: the optimizer holds [",
            optimizer.begin(), ", ", optimizer.end(), ") but rank ", group.rank(), " of ", group.world_size(),
            " owns [", s.begin, ", ", s.end, ")");
  RLF_CHECK(step >= 1, "optimizer.step: step counts from 1; got ", step);
  group.reduce_scatter_blocks(grads, total, s.block, timeout);
  // The global norm: every rank's sum of squares (in double), gathered and
  // added in rank order, so every rank clips and checks with the same figure.
  const int64_t n = s.end - s.begin;
  const double mine = model::sum_of_squares(grads + s.begin, n);
  Tensor sums = zeros({static_cast<int64_t>(sizeof(double)) * group.world_size()}, DType::u8, Device::host());
  Tensor own = zeros({static_cast<int64_t>(sizeof(double))}, DType::u8, Device::host());
  std::memcpy(own.raw(), &mine, sizeof mine);
  group.all_gather(own, sums, timeout);
  double squares = 0.0;
  for (int r = 0; r < group.world_size(); ++r) {
    double part;
    std::memcpy(&part, static_cast<const char*>(sums.raw()) + sizeof(double) * r, sizeof part);
    squares += part;
  }
  const double norm = std::sqrt(squares);
  if (max_norm > 0) model::scale_to_norm(grads + s.begin, n, norm, max_norm);
  model::check_finite_norm(norm);
  model::adamw_step(params, grads, optimizer.m().data<float>(), optimizer.v().data<float>(), s.begin, step,
                    optimizer.with_lr(lr), optimizer.ranges());
  group.all_gather_blocks(params, total, s.block, timeout);
  return norm;
}

}  // namespace rlfarm::distributed
