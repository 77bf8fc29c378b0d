// ZeRO-1 (distributed.shard_optimizer): each rank keeps AdamW's moments for
// its shard of the model's flat parameter buffer. The step itself is native
// (native/distributed/zero.cpp: reduce-scatter, global-norm clipping, the
// shard's update, all-gather); here an optimizer is switched to it, and its
// moments are gathered back into the unsharded layout checkpoints hold.
import type { Model } from '../model/model.js'
import type { AdamW, AdamWState } from '../model/optim.js'
import { Tensor } from '../tensor.js'
import { allGather, distributed, nativeGroup } from './index.js'

// Models whose optimizer reduces their gradients itself (reduce-scatter in its step).
const reducedByStep = new WeakSet<Model>()

/**
 * Shards `optimizer` over the process group (ZeRO-1); with one rank it stays
 * as it is. Every rank calls it, before the first step; a state loaded before
 * or after is kept (each rank keeps its shard of it).
 */
export function shardOptimizer(optimizer: AdamW): void {
  const group = distributed.initialized ? nativeGroup('shardOptimizer') : undefined
  if (!group) return
  if (optimizer.model.device !== 'cpu') {
    throw new Error(`distributed.shard_optimizer: ZeRO-1 takes cpu models (the Gloo group moves host tensors); this model is on ${optimizer.model.device}`)
  }
  optimizer.shardOver(group)
  reducedByStep.add(optimizer.model)
}

/** Whether `model`'s optimizer step sums its gradients over the ranks (ZeRO-1), so they must not be all-reduced before it. */
export function gradientsReducedByStep(model: Model): boolean {
  return reducedByStep.has(model)
}

/**
 * The optimizer's state in the unsharded layout (the whole model's moments),
 * as checkpoints hold it. For a sharded optimizer this is a collective: every
 * rank calls it, in the same order.
 */
export async function optimizerState(optimizer: AdamW): Promise<AdamWState> {
  if (!optimizer.sharded) return optimizer.state()
  const { step, m, v } = optimizer.shardState()
  // Every rank's shard is padded to the same size, so the gathered blocks sit
  // end to end and the model's moments are their first parameterCount values.
  const total = optimizer.model.parameterCount
  const whole = async (t: Tensor) => Tensor.from((await allGather(t)).data.slice(0, total) as Float32Array)
  return { step, m: await whole(m), v: await whole(v) }
}
