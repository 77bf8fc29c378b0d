// ZeRO-1 (Rajbhandari et al. 2020, stage 1; as llm.c shards AdamW): each rank
// keeps AdamW's moments for its shard of the flat parameter buffer. A step
// reduce-scatters the gradients, clips them by the global norm, updates this
// rank's shard, and all-gathers the parameters.
#pragma once

#include <cstdint>

#include "../model/optimizer.h"
#include "process_group.h"

namespace rlfarm::distributed {

// Shards are whole multiples of this many floats (64 bytes), the last one shorter.
constexpr int64_t kShardAlign = 16;

// The shard of rank `rank` of `world_size` over `total` floats: [begin, end)
// and the block size every shard is padded to.
struct Shard {
  int64_t begin, end, block;
};
Shard shard_of(int64_t total, int rank, int world_size);

// One ZeRO-1 step of `optimizer` (sharded as shard_of gives for this rank)
// over the model's parameters and gradients (`total` floats each, summed over
// the ranks here: the gradients must not have been all-reduced). The gradient
// norm is the global one, before clipping; a NaN or infinite norm stops the
// step on every rank. Afterwards every rank holds the same parameters, and its
// gradients hold the summed gradients of its own shard only.
double sharded_adamw_step(ProcessGroup& group, float* params, float* grads, model::AdamW& optimizer, int64_t step,
                          double lr, double max_norm, Milliseconds timeout);

}  // namespace rlfarm::distributed
