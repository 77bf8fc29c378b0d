// Supervised fine-tuning: maximise log p(response | prompt) over the
// demonstrations, the loss on response tokens only (or on every token), with
// optional packing of examples into full-length sequences.
import { collateSequences } from '../data/batch.js'
import type { EncodedPair } from '../data/encode.js'
import { parseSftRow, type SftExample } from '../data/examples.js'
import * as ops from '../ops.js'
import type { Model } from '../model/model.js'
import { dataParallel, microBatchBackward, type DataParallel } from '../distributed/data-parallel.js'
import { checkFinite, type StageResult, type TrainerContext } from '../training/context.js'
import { EpochBatches, readRows, splitEval, totalSteps } from '../training/data-order.js'
import { loadPolicy } from '../training/models.js'
import { makeOptimizer, optimizerStep } from '../training/optimizer.js'

/** Concatenates examples into sequences of exactly `length` tokens (the last may be shorter). */
export function packPairs(pairs: EncodedPair[], length: number, completionOnly: boolean): EncodedPair[] {
  const ids: number[] = []
  const targets: number[] = []
  for (const p of pairs) {
    p.ids.forEach((id, i) => {
      ids.push(id)
      targets.push(!completionOnly || i >= p.promptLength ? 1 : 0)
    })
  }
  const packed: EncodedPair[] = []
  for (let start = 0; start < ids.length; start += length) {
    const chunk = ids.slice(start, start + length)
    if (chunk.length < 2) break
    packed.push({ ids: chunk, promptLength: 0, targets: Uint8Array.from(targets.slice(start, start + length)) })
  }
  return packed
}

/**
 * The gradients of one SFT step over micro-batches of pairs: loss = -sum(mask
 * logp) / tokens over the whole step, so d loss / d logp = -mask / tokens.
 * The gradients start at zero (optimizerStep leaves them so). With `dp`, this
 * rank takes its shard of each micro-batch, tokens and loss count every rank's,
 * and the gradients are summed over the ranks.
 */
export async function sftStep(model: Model, chunks: EncodedPair[][], pad: number, step: number, dp?: DataParallel): Promise<{ loss: number; tokens: number }> {
  const batches = chunks.map((c) => (dp ? dp.shard(c) : c)).filter((c) => c.length > 0).map((c) => collateSequences(c, pad))
  let tokens = batches.reduce((n, b) => n + b.responseLengths.reduce((x, y) => x + y, 0), 0)
  if (dp) [tokens] = await dp.sum([tokens], 'i32')
  tokens = Math.max(tokens, 1)
  let nll = 0
  for (const [k, batch] of batches.entries()) {
    const { logp } = await model.forward(batch.tokens, { attentionMask: batch.attentionMask, train: true, onDevice: true })
    const responseMask = batch.responseMask.to(logp!.device)
    nll -= ops.total(ops.rowSum(logp!, responseMask))
    const grads = { gradLogp: ops.add(responseMask, undefined, { alpha: -1 / tokens }) }
    // The last micro-batch's backward sums the gradients over the ranks as it goes.
    await microBatchBackward(model, grads, k === batches.length - 1 ? dp : undefined)
  }
  if (dp) {
    if (batches.length === 0) await dp.allReduceGradients(model)
    ;[nll] = await dp.sum([nll])
  }
  return { loss: checkFinite(nll / tokens, 'the SFT loss', step), tokens }
}

/** Mean negative log-likelihood of the targets of `pairs`, without gradients. */
export async function evalLoss(model: Model, pairs: EncodedPair[], pad: number, batchSize: number): Promise<number> {
  let nll = 0
  let count = 0
  for (let i = 0; i < pairs.length; i += batchSize) {
    const batch = collateSequences(pairs.slice(i, i + batchSize), pad)
    const logp = await model.logprobs(batch.tokens, { attentionMask: batch.attentionMask })
    nll -= ops.total(ops.rowSum(logp, batch.responseMask))
    count += batch.responseLengths.reduce((a, b) => a + b, 0)
  }
  return count > 0 ? nll / count : NaN
}

export async function trainSft(ctx: TrainerContext): Promise<StageResult> {
  const { config } = ctx
  const { policy, encoder, pad } = await loadPolicy(config)
  const rows = await readRows(config.data.train, 'train', parseSftRow, config.data, (m) => ctx.note(m))
  const split = config.data.eval
    ? { train: rows, eval: await readRows(config.data.eval, 'eval', parseSftRow, config.data, (m) => ctx.note(m)) }
    : splitEval(rows, config.data.eval_size, ctx.rng)
  const encode = (examples: SftExample[]) =>
    examples.map((e) => {
      const pair = encoder.pair(e.prompt, e.response)
      return config.sft.completion_only ? pair : { ...pair, targets: Uint8Array.from(pair.ids, (_, i) => (i > 0 ? 1 : 0)) }
    })
  let train = encode(split.train)
  if (config.sft.packing) train = packPairs(train, encoder.maxLength, config.sft.completion_only)
  const evalPairs = encode(split.eval)

  const opt = makeOptimizer(policy.model, config.optimizer)
  await ctx.track({ models: { policy: policy.model }, optimizers: { policy: opt } })
  const resumed = ctx.resumed
  const order = new EpochBatches(train.length, config.training.batch_size, config.seed + 101, resumed?.order as never)
  const steps = totalSteps(config, train.length)
  let step = resumed?.step ?? 0
  const dp = dataParallel()

  while (step < steps && !ctx.stopRequested()) {
    const chunks = Array.from({ length: config.training.gradient_accumulation }, () => order.next().map((i) => train[i]))
    const { loss, tokens } = await sftStep(policy.model, chunks, pad, step, dp)
    const { gradNorm, lr } = await optimizerStep(opt, config.optimizer, step, steps)
    step++
    const metrics: Record<string, number> = { loss, grad_norm: gradNorm, lr, epoch: order.epoch }
    const evalEvery = config.training.eval_every
    if (evalPairs.length > 0 && evalEvery > 0 && step % evalEvery === 0) {
      metrics.eval_loss = await evalLoss(policy.model, evalPairs, pad, config.training.batch_size)
    }
    ctx.log(step, metrics, { tokens, totalSteps: steps })
    await ctx.afterStep(() => ({ step, order: order.state() }))
  }

  const metrics: Record<string, number> = { steps: step }
  if (evalPairs.length > 0) {
    metrics.eval_loss = await evalLoss(policy.model, evalPairs, pad, config.training.batch_size)
    ctx.log(step, { eval_loss: metrics.eval_loss }, { phase: 'eval' })
  }
  const model = await ctx.saveModel(policy.model, policy.tokenizer, policy.tokenizerSource)
  return { model, metrics }
}
