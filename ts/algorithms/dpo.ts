// Direct preference optimisation and its relatives (ops.dpoLoss: sigmoid/cDPO,
// robust, hinge, IPO, BCO pair, SPPO hard, NCA pair, APO zero, SimPO): the
// policy's sequence log-probs of chosen and rejected responses against a frozen
// reference's, whose log-probs are computed once before training.
import type { SequenceBatch } from '../data/batch.js'
import type { SequenceEncoder } from '../data/encode.js'
import type { PreferenceExample } from '../data/examples.js'
import type { Model } from '../model/model.js'
import { dataParallel, lastWithRows, microBatchBackward, type DataParallel } from '../distributed/data-parallel.js'
import * as ops from '../ops.js'
import { Tensor } from '../tensor.js'
import { checkFinite, type StageResult, type TrainerContext } from '../training/context.js'
import { EpochBatches, totalSteps } from '../training/data-order.js'
import { isGiven, loadModelSpec, loadPolicy, sameTokenizer } from '../training/models.js'
import { makeOptimizer, optimizerStep } from '../training/optimizer.js'
import { meanOf } from '../training/host-tensors.js'
import { pairBatch, preferenceSplit } from '../training/preference-pairs.js'

/**
 * Sequence log-probs (sums over response tokens) of every row of a pair batch,
 * [chosen..., rejected...], and the response mask, both on the model's device.
 */
async function sequenceSums(model: Model, batch: SequenceBatch, train: boolean): Promise<{ sums: Tensor; responseMask: Tensor }> {
  const { logp } = await model.forward(batch.tokens, { attentionMask: batch.attentionMask, train, onDevice: true })
  const responseMask = batch.responseMask.to(logp!.device)
  return { sums: ops.rowSum(logp!, responseMask), responseMask }
}

/**
 * Reference sequence log-probs of every pair: [chosen..., rejected...] per
 * batch, flattened per pair. With `dp`, each rank scores every worldSize-th
 * batch and the ranks sum what they have (zeros elsewhere), so all hold all.
 */
async function referenceSums(reference: Model, pairs: PreferenceExample[], encoder: SequenceEncoder, pad: number, batchSize: number, dp?: DataParallel) {
  const chosen = new Float32Array(pairs.length)
  const rejected = new Float32Array(pairs.length)
  for (let i = 0; i < pairs.length; i += batchSize) {
    if (dp && (i / batchSize) % dp.worldSize !== dp.rank) continue
    const chunk = pairs.slice(i, i + batchSize)
    const sums = (await sequenceSums(reference, pairBatch(chunk, encoder, pad), false)).sums.to('cpu').data as Float32Array
    chosen.set(sums.subarray(0, chunk.length), i)
    rejected.set(sums.subarray(chunk.length), i)
  }
  if (dp) {
    await dp.sumInPlace(chosen)
    await dp.sumInPlace(rejected)
  }
  return { chosen, rejected }
}

export async function trainDpo(ctx: TrainerContext): Promise<StageResult> {
  const { config } = ctx
  const o = config.dpo
  const { policy, encoder, pad } = await loadPolicy(config)
  const split = await preferenceSplit(ctx)
  const batchSize = config.training.batch_size
  const needsReference = !o.reference_free && o.variant !== 'simpo'
  const dp = dataParallel()

  // The reference's log-probs, once: from `reference` if given, else from the initial policy.
  let ref = { chosen: new Float32Array(split.train.length), rejected: new Float32Array(split.train.length) }
  let evalRef = { chosen: new Float32Array(split.eval.length), rejected: new Float32Array(split.eval.length) }
  if (needsReference) {
    const reference = isGiven(config.reference)
      ? (await loadModelSpec(config.reference, 'reference', { seed: config.seed, tokenizer: sameTokenizer(config.reference, policy) })).model
      : policy.model
    ctx.note('computing reference log-probs')
    ref = await referenceSums(reference, split.train, encoder, pad, batchSize, dp)
    evalRef = await referenceSums(reference, split.eval, encoder, pad, batchSize, dp)
  }

  // One batch of pairs on the policy's device: only the loss's scalars come back to the host.
  const dpo = async (pairs: PreferenceExample[], refChosen: Float32Array, refRejected: Float32Array, train: boolean, gradScale = 1) => {
    const batch = pairBatch(pairs, encoder, pad)
    const n = pairs.length
    const { sums, responseMask } = await sequenceSums(policy.model, batch, train)
    const on = { device: sums.device }
    const lengths = Float32Array.from(batch.responseLengths, (l) => Math.max(l, 1))
    const loss = ops.dpoLoss(
      {
        policyChosen: sums.rows(0, n),
        policyRejected: sums.rows(n),
        refChosen: Tensor.from(refChosen, [n], on),
        refRejected: Tensor.from(refRejected, [n], on),
        chosenLength: Tensor.from(lengths.slice(0, n), [n], on),
        rejectedLength: Tensor.from(lengths.slice(n), [n], on),
      },
      { beta: o.beta, variant: o.variant, labelSmoothing: o.label_smoothing, gamma: o.gamma, referenceFree: o.reference_free, gradScale },
    )
    return { responseMask, loss }
  }

  const evaluate = async () => {
    let loss = 0
    let accuracy = 0
    for (let i = 0; i < split.eval.length; i += batchSize) {
      const chunk = split.eval.slice(i, i + batchSize)
      const r = await dpo(chunk, evalRef.chosen.slice(i, i + chunk.length), evalRef.rejected.slice(i, i + chunk.length), false)
      loss += r.loss.loss * chunk.length
      accuracy += r.loss.accuracy * chunk.length
    }
    return { eval_loss: loss / split.eval.length, eval_accuracy: accuracy / split.eval.length }
  }

  const opt = makeOptimizer(policy.model, config.optimizer)
  await ctx.track({ models: { policy: policy.model }, optimizers: { policy: opt } })
  const order = new EpochBatches(split.train.length, batchSize, config.seed + 101, ctx.resumed?.order as never)
  const steps = totalSteps(config, split.train.length)
  let step = ctx.resumed?.step ?? 0
  if (split.eval.length > 0 && step === 0) ctx.log(0, await evaluate(), { phase: 'eval' })
  const micro = config.training.gradient_accumulation

  while (step < steps && !ctx.stopRequested()) {
    const m = { loss: 0, accuracy: 0, chosen_reward: 0, rejected_reward: 0 }
    // With dp: this rank's shard of each micro-batch; its means count for its share.
    const wholes = Array.from({ length: micro }, () => order.next())
    const shards = wholes.map((whole) => (dp ? dp.shard(whole) : whole))
    // This rank's last micro-batch with rows: its backward sums the gradients over the ranks as it goes.
    const reducing = lastWithRows(shards)
    for (const [k, whole] of wholes.entries()) {
      const idx = shards[k]
      if (idx.length === 0) continue
      // This micro-batch's share of the step's mean loss (with dp, its shard's share of the micro-batch).
      const w = (dp ? idx.length / whole.length : 1) / micro
      const pairs = idx.map((i) => split.train[i])
      const r = await dpo(pairs, Float32Array.from(idx, (i) => ref.chosen[i]), Float32Array.from(idx, (i) => ref.rejected[i]), true, w)
      // d loss / d logp of a response token is d loss / d (its sequence's log-prob).
      const gradLogp = ops.broadcastRows(ops.concat([r.loss.gradChosen, r.loss.gradRejected]), r.responseMask)
      await microBatchBackward(policy.model, { gradLogp }, k === reducing ? dp : undefined)
      m.loss += r.loss.loss * w
      m.accuracy += r.loss.accuracy * w
      m.chosen_reward += meanOf(r.loss.chosenReward) * w
      m.rejected_reward += meanOf(r.loss.rejectedReward) * w
    }
    if (dp) {
      if (reducing < 0) await dp.allReduceGradients(policy.model)
      ;[m.loss, m.accuracy, m.chosen_reward, m.rejected_reward] = await dp.sum([m.loss, m.accuracy, m.chosen_reward, m.rejected_reward])
    }
    checkFinite(m.loss, 'the DPO loss', step)
    const { gradNorm, lr } = await optimizerStep(opt, config.optimizer, step, steps)
    step++
    const metrics: Record<string, number> = { ...m, margin: m.chosen_reward - m.rejected_reward, grad_norm: gradNorm, lr, epoch: order.epoch }
    if (split.eval.length > 0 && config.training.eval_every > 0 && step % config.training.eval_every === 0) Object.assign(metrics, await evaluate())
    ctx.log(step, metrics, { totalSteps: steps })
    await ctx.afterStep(() => ({ step, order: order.state() }))
  }

  const metrics: Record<string, number> = { steps: step }
  if (split.eval.length > 0) {
    Object.assign(metrics, await evaluate())
    ctx.log(step, { eval_loss: metrics.eval_loss, eval_accuracy: metrics.eval_accuracy }, { phase: 'eval' })
  }
  const model = await ctx.saveModel(policy.model, policy.tokenizer, policy.tokenizerSource)
  return { model, metrics }
}
