// Preference pairs: batching chosen and rejected responses, the reward of each
// row, pairwise accuracy (against the labels and against the farm's gold),
// the reward-model step (Bradley-Terry), and the train / held-out split.
// Shared by the reward, DPO and West-of-N trainers and by evaluation.
import { collateSequences, lastPositionMask, type SequenceBatch } from '../data/batch.js'
import type { SequenceEncoder } from '../data/encode.js'
import { parsePreferenceRow, type PreferenceExample } from '../data/examples.js'
import type { Model } from '../model/model.js'
import { lastWithRows, microBatchBackward, type DataParallel } from '../distributed/data-parallel.js'
import * as ops from '../ops.js'
import { Tensor } from '../tensor.js'
import { goldPreference } from '../farm/farm.js'
import { parseTask } from '../farm/families.js'
import type { TrainerContext } from './context.js'
import { readRows, splitEval } from './data-order.js'
import { promptText } from './rollout.js'

/** chosen rows then rejected rows of a batch of pairs, as one right-padded batch. */
export function pairBatch(pairs: readonly PreferenceExample[], encoder: SequenceEncoder, pad: number): SequenceBatch {
  const chosen = pairs.map((p) => encoder.pair(p.prompt, p.chosen))
  const rejected = pairs.map((p) => encoder.pair(p.prompt, p.rejected))
  return collateSequences([...chosen, ...rejected], pad)
}

/** The reward of every row of a batch (the scalar head at its last token), on the model's device; `train` keeps activations. */
export async function rowRewards(model: Model, batch: SequenceBatch, train: boolean): Promise<{ rewards: Tensor; last: Tensor }> {
  const { values } = await model.forward(batch.tokens, { attentionMask: batch.attentionMask, train, logprobs: false, values: true, onDevice: true })
  const last = lastPositionMask(batch.lengths, batch.tokens.shape[1]).to(values!.device)
  return { rewards: ops.rowSum(values!, last), last }
}

/** Share of pairs whose chosen response gets the higher reward, and the mean reward gap. */
export async function pairAccuracy(
  model: Model,
  pairs: readonly PreferenceExample[],
  encoder: SequenceEncoder,
  pad: number,
  batchSize: number,
  /** Told after each batch: pairs done, and the accuracy so far. */
  onBatch?: (done: number, accuracy: number) => void,
) {
  let right = 0
  let gap = 0
  for (let i = 0; i < pairs.length; i += batchSize) {
    const chunk = pairs.slice(i, i + batchSize)
    const { rewards } = await rowRewards(model, pairBatch(chunk, encoder, pad), false)
    const r = rewards.to('cpu').data as Float32Array
    for (let k = 0; k < chunk.length; k++) {
      right += r[k] > r[k + chunk.length] ? 1 : 0
      gap += r[k] - r[k + chunk.length]
    }
    onBatch?.(i + chunk.length, right / (i + chunk.length))
  }
  return { accuracy: right / pairs.length, margin: gap / pairs.length }
}

/**
 * Held-out pairs relabelled by the farm's gold evaluator (chosen = the one
 * gold scores higher; pairs gold ties are left out): the pool's labels are
 * half coin flips, so accuracy on them cannot tell what a reward model
 * learned. Undefined when a prompt is not a farm instruction.
 */
export function goldLabelled(pairs: readonly PreferenceExample[]): PreferenceExample[] | undefined {
  if (pairs.length === 0 || pairs.some((p) => parseTask(promptText(p.prompt)) === undefined)) return undefined
  return pairs.flatMap((p) => {
    const g = goldPreference(promptText(p.prompt), p.chosen, p.rejected)
    return g === 0.5 ? [] : [g === 0 ? p : { ...p, chosen: p.rejected, rejected: p.chosen }]
  })
}

/**
 * Accuracy on the gold-labelled held-out pairs (gold_pair_accuracy, its standard
 * error, gold_pairs), for farm prompts; {} otherwise.
 */
export async function goldAccuracyMetrics(model: Model, pairs: readonly PreferenceExample[], encoder: SequenceEncoder, pad: number, batchSize: number): Promise<Record<string, number>> {
  const gold = goldLabelled(pairs)
  if (!gold || gold.length === 0) return {}
  const { accuracy } = await pairAccuracy(model, gold, encoder, pad, batchSize)
  return { gold_pair_accuracy: accuracy, gold_pair_accuracy_stderr: Math.sqrt((accuracy * (1 - accuracy)) / gold.length), gold_pairs: gold.length }
}

/**
 * The gradients of one reward-model step over micro-batches of pairs (the mean
 * loss over them), placed at each sequence's last token, added to gradients
 * that start at zero (optimizerStep leaves them so).
 * With `dp`, this rank takes its shard of each micro-batch, weighted by its
 * share of the micro-batch, and loss, accuracy and gradients are summed over the ranks.
 */
export async function rewardStep(
  model: Model,
  chunks: PreferenceExample[][],
  encoder: SequenceEncoder,
  pad: number,
  o: { margin: number; center_coef: number },
  dp?: DataParallel,
): Promise<{ loss: number; accuracy: number }> {
  let loss = 0
  let accuracy = 0
  const micro = chunks.length
  const shards = chunks.map((whole) => (dp ? dp.shard(whole) : whole))
  // This rank's last micro-batch with rows: its backward sums the gradients over the ranks as it goes.
  const reducing = lastWithRows(shards)
  for (const [k, whole] of chunks.entries()) {
    const pairs = shards[k]
    if (pairs.length === 0) continue
    // The loss is a mean over the micro-batch: this shard's mean counts for its share of it.
    const w = (dp ? pairs.length / whole.length : 1) / micro
    const batch = pairBatch(pairs, encoder, pad)
    const { rewards, last } = await rowRewards(model, batch, true)
    const n = pairs.length
    const margins = pairs.some((p) => p.margin !== undefined)
      ? Tensor.from(Float32Array.from(pairs, (p) => (p.margin ?? 0) + o.margin), [n], { device: rewards.device })
      : o.margin
    // On the model's device: only the loss and the accuracy come back to the host.
    const r = ops.rewardLoss(rewards.rows(0, n), rewards.rows(n), { margin: margins, centerCoef: o.center_coef, gradScale: w })
    await microBatchBackward(model, { gradValues: ops.broadcastRows(ops.concat([r.gradChosen, r.gradRejected]), last) }, k === reducing ? dp : undefined)
    loss += r.loss * w
    accuracy += r.accuracy * w
  }
  if (dp) {
    if (reducing < 0) await dp.allReduceGradients(model)
    ;[loss, accuracy] = await dp.sum([loss, accuracy])
  }
  return { loss, accuracy }
}

/** The training pairs of data.train and the held-out ones (data.eval, or data.eval_size rows of train). */
export async function preferenceSplit(ctx: TrainerContext): Promise<{ train: PreferenceExample[]; eval: PreferenceExample[] }> {
  const data = ctx.config.data
  const note = (m: string) => ctx.note(m)
  const rows = await readRows(data.train, 'train', parsePreferenceRow, data, note)
  return data.eval ? { train: rows, eval: await readRows(data.eval, 'eval', parsePreferenceRow, data, note) } : splitEval(rows, data.eval_size, ctx.rng)
}
