// GRPO (Shao et al. 2024, DeepSeekMath) and its family as TRL's GRPOTrainer
// has it: for each prompt sample a group of G responses, score them, and use
// the group as the baseline,
//   A_i = r_i - mean(r_group), divided by std(group) + 1e-4, std(batch) + 1e-4 or 1 (scale_rewards)
// broadcast to every token of response i, with PPO's clipped ratio against the
// sampling policy (per token, or per sequence: GSPO), beta * k3 KL to the
// reference added to each token's loss, and the token losses averaged as
// loss_type says (grpo, bnpo, dr_grpo, dapo). DAPO's dynamic sampling drops
// groups whose rewards are all equal and samples more prompts to fill the
// batch. RLOO (rloo.ts) runs the same loop with the leave-one-out baseline and
// the KL in the reward. The formulas, with their sources, are in README.md
// ("GRPO and RLOO").
// Data-parallel, each rank samples the groups of its prompts of the batch
// (prompts rank, rank + N, ...): a group stays on one rank. Its scores, KL and
// lengths are gathered, so dynamic sampling, advantages (the batch std too)
// and every logged figure are the whole batch's; the loss parts are weighed
// by the whole batch (and micro-batch), and gradients summed before AdamW.
import type { GroupConfig } from '../config/types.generated.js'
import { microBatchBackward } from '../distributed/data-parallel.js'
import * as ops from '../ops.js'
import { Tensor } from '../tensor.js'
import { checkFinite, type StageResult, type TrainerContext } from '../training/context.js'
import { optimizerStep } from '../training/optimizer.js'
import { maskedMean, meanOf } from '../training/host-tensors.js'
import { setupOnPolicy } from '../training/on-policy.js'
import { rowsOfRank, sequenceLogprobs, type Rollout } from '../training/rollout.js'

export type GroupBaseline = 'grpo' | 'rloo'
export type LossType = 'grpo' | 'bnpo' | 'dr_grpo' | 'dapo'
export type ScaleRewards = 'group' | 'batch' | 'none'
export type ImportanceSamplingLevel = 'token' | 'sequence'

/** TRL's epsilon in A = (r - mean) / (std + eps). */
export const GROUP_STD_EPSILON = 1e-4

/** Sample standard deviation (torch.std, as TRL's nanstd). */
function sampleStd(xs: ArrayLike<number>): number {
  const n = xs.length
  if (n < 2) return 0
  let mean = 0
  for (let i = 0; i < n; i++) mean += xs[i] / n
  let ss = 0
  for (let i = 0; i < n; i++) ss += (xs[i] - mean) ** 2
  return Math.sqrt(ss / (n - 1))
}

/** Whether every reward of a group is the same (std 0: no learning signal; DAPO drops such groups). */
export function allEqual(group: ArrayLike<number>): boolean {
  for (let i = 1; i < group.length; i++) if (group[i] !== group[0]) return false
  return true
}

/**
 * Per-response advantages from group scores (groups of `size` consecutive rows).
 * grpo: r - mean(group), divided by std(group) + 1e-4 (scale 'group'), by the
 * std of all the scores + 1e-4 ('batch'), or not divided ('none'), as TRL.
 * rloo: r - mean of the other responses of the group (scale is not used).
 */
export function groupAdvantages(scores: Float32Array, size: number, baseline: GroupBaseline, scale: ScaleRewards = 'group'): Float32Array {
  if (scores.length % size !== 0) throw new RangeError(`groupAdvantages: ${scores.length} scores do not make groups of ${size}`)
  const out = new Float32Array(scores.length)
  const batchStd = scale === 'batch' ? sampleStd(scores) : 0
  for (let start = 0; start < scores.length; start += size) {
    const group = scores.subarray(start, start + size)
    const sum = group.reduce((a, b) => a + b, 0)
    const mean = sum / size
    const divisor = scale === 'group' ? sampleStd(group) + GROUP_STD_EPSILON : scale === 'batch' ? batchStd + GROUP_STD_EPSILON : 1
    for (let i = 0; i < size; i++) {
      const r = group[i]
      out[start + i] = baseline === 'grpo' ? (r - mean) / divisor : r - (sum - r) / (size - 1)
    }
  }
  return out
}

/** Share of groups (of `size` consecutive scores) whose scores are all equal. */
export function zeroStdShare(scores: Float32Array, size: number): number {
  const groups = scores.length / size
  let zero = 0
  for (let start = 0; start < scores.length; start += size) if (allEqual(scores.subarray(start, start + size))) zero++
  return groups > 0 ? zero / groups : 0
}

export interface GroupLossOptions {
  lossType: LossType
  level: ImportanceSamplingLevel
  clipLow: number
  clipHigh: number
  /** beta of the k-estimator KL to the reference added to each token's loss (needs refLogp). */
  klCoef: number
  klEstimator: ops.KlEstimator
  /** dr_grpo's constant: the longest completion (generation.max_new_tokens). */
  maxCompletionLength: number
}

/** The rollout batch a micro-batch belongs to: its rows and its response tokens. */
export interface GroupBatchSize {
  rows: number
  tokens: number
}

export interface GroupLossPart {
  /** This micro-batch's part of the batch's loss (the parts sum to the loss). */
  loss: number
  /** d loss / d logp, [rows, T]. */
  grad: Tensor
  /** Its part of the batch's policy term alone and of beta * KL (loss = policyLoss + klLoss). */
  policyLoss: number
  klLoss: number
  /**
   * Its part of the batch's clip shares (TRL's clip_ratio/low_mean, high_mean,
   * region_mean: over tokens, or over sequences with sequence-level ratios) and
   * of the token mean of (logp - oldLogp)^2 / 2.
   */
  clipLow: number
  clipHigh: number
  clipRegion: number
  approxKl: number
}

/**
 * One micro-batch's part of the GRPO-family loss of a rollout batch (TRL's
 * GRPOTrainer._compute_loss): the parts of the batch's micro-batches sum to
 * the loss of one optimizer step over the batch with gradient accumulation.
 * logp, oldLogp, refLogp, mask: [rows, T]; advantages: one per row. `micro`:
 * the micro-batch these rows are a share of (a data-parallel rank's rows of
 * it; default these rows), which bnpo's token mean is over. No work is done
 * per token here: the per-token math runs in native ops.
 */
export function groupLossPart(
  logp: Tensor,
  oldLogp: Tensor,
  refLogp: Tensor | undefined,
  advantages: Float32Array,
  mask: Tensor,
  batch: GroupBatchSize,
  o: GroupLossOptions,
  micro?: GroupBatchSize,
): GroupLossPart {
  const rows = mask.shape[0]
  if (advantages.length !== rows) throw new RangeError(`groupLossPart: ${advantages.length} advantages for ${rows} rows`)
  if (o.klCoef > 0 && !refLogp) throw new Error('groupLossPart: klCoef > 0 needs refLogp')
  // Everything here lives on the mask's device (the policy's); per-row sums come back, never per-token values.
  const device = mask.device
  const rowTokens = ops.rowSum(mask).to('cpu').data as Float32Array
  const tokens = rowTokens.reduce((a, b) => a + b, 0)
  const rowsWithTokens = rowTokens.reduce((a, c) => a + (c > 0 ? 1 : 0), 0)
  // Every loss type weighs the tokens of a row alike: rowWeight[i] is that
  // weight in the batch's loss. ppoPolicyLoss averages (over tokens, or per
  // sequence then over sequences) and `scale` turns its mean into this part.
  const aggregate: ops.Aggregate = o.lossType === 'grpo' ? 'seq-mean' : 'token-mean'
  let scale: number
  switch (o.lossType) {
    case 'grpo': // mean over the batch's sequences of each one's token mean
      scale = rowsWithTokens / batch.rows
      break
    case 'bnpo': // token mean of the micro-batch; micro-batches weighed by their rows (TRL: / gradient accumulation steps)
      scale = micro ? (tokens / Math.max(micro.tokens, 1)) * (micro.rows / batch.rows) : rows / batch.rows
      break
    case 'dr_grpo': // sum over tokens / (rows x max completion length)
      scale = tokens / (batch.rows * o.maxCompletionLength)
      break
    case 'dapo': // sum over tokens / the batch's tokens
      scale = tokens / Math.max(batch.tokens, 1)
      break
  }
  const rowWeight = Float32Array.from(rowTokens, (c) => (c === 0 ? 0 : aggregate === 'seq-mean' ? scale / (c * rowsWithTokens) : scale / tokens))
  const adv = ops.broadcastRows(Tensor.from(advantages, [rows], { device }), mask)
  const clip = { clipLow: o.clipLow, clipHigh: o.clipHigh }
  let pg: ops.PpoPolicyLossResult
  let clipShares: { low: number; high: number; region: number; weight: number }
  let approxKl: number
  if (o.level === 'token') {
    pg = ops.ppoPolicyLoss(logp, oldLogp, adv, mask, { ...clip, aggregate })
    clipShares = { low: pg.clipLowFraction, high: pg.clipHighFraction, region: pg.clipFraction, weight: tokens / Math.max(batch.tokens, 1) }
    approxKl = pg.approxKl
  } else {
    // GSPO: s_i = exp(mean over the tokens of row i of logp - oldLogp), one
    // clipped ratio per sequence. Every token of row i carries the log of s_i
    // and the row's advantage, so the token losses are the sequence's loss and
    // each token's gradient is its weight times d loss_i / d log s_i: with
    // weights equal along a row, exactly the gradient through the mean
    // (d log s_i / d logp_t = 1 / |row i|), which is GSPO-token's too.
    const logRatio = ops.add(logp, oldLogp, { alpha: 1, beta: -1 })
    const seqLogRatio = Float32Array.from(ops.rowSum(logRatio, mask).to('cpu').data as Float32Array, (s, i) => s / Math.max(rowTokens[i], 1))
    const seqLogp = ops.broadcastRows(Tensor.from(seqLogRatio, [rows], { device }), mask)
    pg = ops.ppoPolicyLoss(seqLogp, Tensor.zeros(mask.shape, { device }), adv, mask, { ...clip, aggregate })
    // TRL counts clipped sequences, not tokens, at this level.
    const perSequence = ops.ppoPolicyLoss(Tensor.from(seqLogRatio, [rows, 1]), Tensor.zeros([rows, 1]), Tensor.from(advantages, [rows, 1]), undefined, clip)
    clipShares = { low: perSequence.clipLowFraction, high: perSequence.clipHighFraction, region: perSequence.clipFraction, weight: rows / batch.rows }
    approxKl = maskedMean(ops.mul(logRatio, logRatio), mask) / 2
  }
  const policyLoss = pg.loss * scale
  let grad = ops.add(pg.grad, undefined, { alpha: scale })
  let klLoss = 0
  if (o.klCoef > 0 && refLogp) {
    // beta * KL_t joins each token's loss, so it is averaged with the same weights.
    const weights = ops.broadcastRows(Tensor.from(rowWeight, [rows], { device }), mask)
    const kl = ops.klPenalty(logp, refLogp, mask, { estimator: o.klEstimator })
    klLoss = o.klCoef * ops.total(ops.rowSum(ops.mul(kl, weights)))
    grad = ops.add(grad, ops.mul(ops.klPenaltyGrad(logp, refLogp, mask, { estimator: o.klEstimator }), weights), { alpha: 1, beta: o.klCoef })
  }
  const tokenWeight = tokens / Math.max(batch.tokens, 1)
  return {
    loss: policyLoss + klLoss,
    grad,
    policyLoss,
    klLoss,
    clipLow: clipShares.low * clipShares.weight,
    clipHigh: clipShares.high * clipShares.weight,
    clipRegion: clipShares.region * clipShares.weight,
    approxKl: approxKl * tokenWeight,
  }
}

/** The group options in use, with the former names (epochs, aggregate) resolved; a clear error for conflicts. */
export interface ResolvedGroupOptions {
  lossType: LossType
  scaleRewards: ScaleRewards
  level: ImportanceSamplingLevel
  numIterations: number
}

export function resolveGroupOptions(o: GroupConfig, baseline: GroupBaseline): ResolvedGroupOptions {
  if (o.epochs !== undefined && o.num_iterations !== undefined && o.epochs !== o.num_iterations) {
    throw new Error(`group.epochs (${o.epochs}) and group.num_iterations (${o.num_iterations}) are one setting (epochs is its former name): give num_iterations only`)
  }
  const fromAggregate: Record<string, LossType> = { 'token-mean': 'bnpo', 'seq-mean': 'grpo' }
  if (o.aggregate !== undefined && o.loss_type !== undefined && fromAggregate[o.aggregate] !== o.loss_type) {
    throw new Error(
      `group.aggregate (${o.aggregate}) and group.loss_type (${o.loss_type}) disagree: aggregate is loss_type's former form (token-mean is bnpo, seq-mean is grpo); give loss_type only`,
    )
  }
  if (baseline === 'rloo' && o.scale_rewards !== undefined && o.scale_rewards !== 'none') {
    throw new Error(`group.scale_rewards (${o.scale_rewards}) applies to grpo; rloo's leave-one-out advantage is not scaled (leave it out, or 'none')`)
  }
  return {
    lossType: (o.loss_type ?? (o.aggregate !== undefined ? fromAggregate[o.aggregate] : 'dapo')) as LossType,
    scaleRewards: (o.scale_rewards ?? (baseline === 'grpo' ? 'group' : 'none')) as ScaleRewards,
    level: o.importance_sampling_level as ImportanceSamplingLevel,
    numIterations: o.num_iterations ?? o.epochs ?? 1,
  }
}

/** Rows `rows` of a rollout. */
function selectRollout(r: Rollout, rows: readonly number[]): Rollout {
  const [tokens, attentionMask, actionMask, lastMask, sampleLogprobs] = ops.selectRows([r.tokens, r.attentionMask, r.actionMask, r.lastMask, r.sampleLogprobs], rows)
  return {
    tokens,
    attentionMask,
    actionMask,
    lastMask,
    promptWidth: r.promptWidth,
    lengths: rows.map((i) => r.lengths[i]),
    stopped: rows.map((i) => r.stopped[i]),
    sampleLogprobs,
    texts: rows.map((i) => r.texts[i]),
    ...(r.prompts ? { prompts: rows.map((i) => r.prompts![i]) } : {}),
  }
}

/** Groups sampled in one round (or kept from it): G consecutive rows per prompt. */
interface SampledGroups {
  /** This rank's rows (all of them with one process); undefined when it has none. */
  rollout: Rollout | undefined
  /** The index of each of them among the round's rows. */
  rows: number[]
  /** The scores of all the round's rows, in order. */
  scores: Float32Array
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

/** The response-length figures TRL logs: mean, max, and the share cut at max_new_tokens without a stop token. */
function lengthMetrics(lengths: number[], stopped: boolean[], maxNewTokens: number): Record<string, number> {
  const cut = lengths.map((n, i) => !stopped[i] && n >= maxNewTokens)
  return {
    response_length: meanOf(lengths),
    response_length_max: lengths.reduce((a, b) => Math.max(a, b), 0),
    response_clipped: cut.filter(Boolean).length / Math.max(cut.length, 1),
  }
}

export async function trainGroupRl(ctx: TrainerContext, baseline: GroupBaseline): Promise<StageResult> {
  const { config } = ctx
  const o = config.group
  const G = o.group_size
  const resolved = resolveGroupOptions(o, baseline)
  const mu = resolved.numIterations
  // RLOO folds the KL into the reward and GRPO into the loss: either way a reference is needed only with a KL.
  const run = await setupOnPolicy(ctx, { reference: o.kl_coef > 0 })
  const { policy, scorer, reference, order, steps, temperature, dp } = run
  const opt = run.optimizer
  const B = config.training.batch_size
  const lossOptions: GroupLossOptions = {
    lossType: resolved.lossType,
    level: resolved.level,
    clipLow: o.clip_low,
    clipHigh: o.clip_high ?? o.clip_low,
    // RLOO puts the KL into the reward; GRPO adds it to the loss.
    klCoef: baseline === 'grpo' ? o.kl_coef : 0,
    klEstimator: o.kl_estimator as ops.KlEstimator,
    maxCompletionLength: config.generation.max_new_tokens,
  }
  let step = run.firstStep
  // The scorer's figures for the rows of the last round on this rank, and how many.
  let scored: { metrics: Record<string, number>; rows: number } = { metrics: {}, rows: 0 }

  /** G responses to each of the prompts `picked` (this rank's share of them), scored. */
  const sampleGroups = async (picked: number[], seed: number): Promise<SampledGroups> => {
    const mine = rowsOfRank(picked.length, dp)
    const rowsOf = mine.flatMap((p) => Array.from({ length: G }, (_, j) => p * G + j))
    const each = rowsOf.map((r) => picked[Math.floor(r / G)])
    let rollout: Rollout | undefined
    let scores: Float32Array = new Float32Array(0)
    scored = { metrics: {}, rows: 0 }
    if (each.length > 0) {
      ;({ rollout, scores } = await run.sample(each, seed, step, { rows: rowsOf, prompts: picked }))
      scored = { metrics: scorer.metrics?.() ?? {}, rows: each.length }
    }
    return { rollout, rows: rowsOf, scores: dp ? await dp.gatherRows(scores, rowsOf, picked.length * G) : scores }
  }

  /** The rows `keepRows` of a round (in that order), the rank's among them. */
  const keepOf = (sampled: SampledGroups, keepRows: number[]): SampledGroups => {
    const position = new Map(keepRows.map((r, k) => [r, k]))
    const local = sampled.rows.flatMap((r, j) => (position.has(r) ? [j] : []))
    return {
      rollout: local.length > 0 ? selectRollout(sampled.rollout!, local) : undefined,
      rows: local.map((j) => position.get(sampled.rows[j])!),
      scores: Float32Array.from(keepRows, (i) => sampled.scores[i]),
    }
  }

  while (step < steps && !ctx.stopRequested()) {
    // Sampling: one round of B prompts; with dynamic sampling, groups whose
    // rewards are all equal are dropped and more rounds fill the batch.
    const kept: SampledGroups[] = []
    const sampledScores: Float32Array[] = []
    let keptGroups = 0
    let promptsDrawn = 0
    let rounds = 0
    let last: SampledGroups | undefined
    while (rounds < (o.dynamic_sampling ? o.max_sampling_rounds : 1) && keptGroups < B) {
      const picked = order.next()
      // The first round's seed is the one GRPO always used; later rounds get their own.
      const sampled = await sampleGroups(picked, config.seed * 1_000_003 + step + rounds * 1_000_000_007)
      rounds++
      promptsDrawn += picked.length
      sampledScores.push(sampled.scores)
      last = sampled
      const groups = Array.from({ length: picked.length }, (_, g) => g)
      const keep = o.dynamic_sampling
        ? groups.filter((g) => !allEqual(sampled.scores.subarray(g * G, (g + 1) * G))).slice(0, B - keptGroups)
        : groups
      if (keep.length === 0) continue
      keptGroups += keep.length
      const keepRows = keep.flatMap((g) => Array.from({ length: G }, (_, j) => g * G + j))
      kept.push(keep.length === groups.length ? sampled : keepOf(sampled, keepRows))
    }
    // A step that keeps no group has nothing to learn from: it logs its samples and makes no update.
    const update = kept.length > 0
    const chunks = update ? kept : [last!]

    const chunkData = []
    for (const c of chunks) {
      const { rollout } = c
      let logprobs: { oldLogp: Tensor; refLogp: Tensor | undefined; actionMask: Tensor } | undefined
      // Per row: the sequence KL to the reference, the response length, whether it stopped.
      const local = new Float32Array(c.rows.length * 3)
      if (rollout) {
        const oldLogp = await sequenceLogprobs(policy.model, rollout.tokens, rollout.attentionMask, temperature)
        const refLogp = reference ? (await sequenceLogprobs(reference.model, rollout.tokens, rollout.attentionMask, temperature)).to(oldLogp.device) : undefined
        // The mask joins the log-probs on the policy's device.
        const actionMask = rollout.actionMask.to(oldLogp.device)
        const seqKl = refLogp ? (ops.rowSum(ops.klPenalty(oldLogp, refLogp, actionMask, { estimator: o.kl_estimator }), actionMask).to('cpu').data as Float32Array) : new Float32Array(rollout.lengths.length)
        logprobs = { oldLogp, refLogp, actionMask }
        c.rows.forEach((_, j) => local.set([seqKl[j], rollout.lengths[j], Number(rollout.stopped[j])], j * 3))
      }
      const n = c.scores.length
      const perRow = dp ? await dp.gatherRows(local, c.rows, n, 3) : local
      const column = (k: number) => Float32Array.from({ length: n }, (_, i) => perRow[i * 3 + k])
      chunkData.push({ rollout, rows: c.rows, logprobs, seqKl: column(0), lengths: Array.from(column(1)), stopped: Array.from(column(2), Boolean) })
    }
    const scores = concat(chunks.map((c) => c.scores))
    const seqKl = concat(chunkData.map((c) => c.seqKl))
    const rewards = baseline === 'rloo' ? Float32Array.from(scores, (s, i) => s - o.kl_coef * seqKl[i]) : scores
    const advantages = groupAdvantages(rewards, G, baseline, resolved.scaleRewards)
    const lengths = chunkData.flatMap((c) => c.lengths)
    const batch: GroupBatchSize = { rows: scores.length, tokens: chunkData.reduce((a, c) => a + c.lengths.reduce((x, y) => x + y, 0), 0) }

    const m = { loss: 0, policy_loss: 0, kl_loss: 0, clip_fraction: 0, clip_fraction_low: 0, clip_fraction_high: 0, approx_kl: 0, entropy: 0 }
    let gradNorm = 0
    let lr = 0
    // Micro-batches of B rows; their parts sum to the loss of the whole batch.
    // This rank's rows of each: mb, of the chunk's rows [start, end); offset is the chunk's first row in the batch.
    const micros: { c: (typeof chunkData)[number]; offset: number; start: number; end: number; mb: number[] }[] = []
    let chunkOffset = 0
    for (const c of chunkData) {
      const n = c.lengths.length
      for (let start = 0; start < n; start += B) {
        const end = Math.min(start + B, n)
        const mb = c.rows.flatMap((r, j) => (r >= start && r < end ? [j] : []))
        if (mb.length > 0 && c.rollout && c.logprobs) micros.push({ c, offset: chunkOffset, start, end, mb })
      }
      chunkOffset += n
    }
    for (let iteration = 0; update && iteration < mu; iteration++) {
      let iterationLoss = 0
      for (const [k, { c, offset, start, end, mb }] of micros.entries()) {
        const rollout = c.rollout!
        const logprobs = c.logprobs!
        const [mbMask, mbTokens, attention, oldLogp, refLogp] = ops.selectRows(
          [logprobs.actionMask, rollout.tokens, rollout.attentionMask, logprobs.oldLogp, ...(logprobs.refLogp ? [logprobs.refLogp] : [])],
          mb,
        )
        const out = await policy.model.forward(mbTokens, { attentionMask: attention, train: true, temperature, entropy: true, onDevice: true })
        const micro = dp ? { rows: end - start, tokens: c.lengths.slice(start, end).reduce((x, y) => x + y, 0) } : undefined
        const part = groupLossPart(
          out.logp!,
          oldLogp,
          refLogp,
          dp ? Float32Array.from(mb, (j) => advantages[offset + c.rows[j]]) : advantages.subarray(offset + start, offset + start + mb.length),
          mbMask,
          batch,
          lossOptions,
          micro,
        )
        // This rank's last micro-batch sums the gradients over the ranks as its backward goes.
        await microBatchBackward(policy.model, { gradLogp: part.grad }, k === micros.length - 1 ? dp : undefined)
        // With more ranks the loss is checked once summed (below), so that every rank stops alike.
        if (!dp) checkFinite(part.loss, `the ${baseline.toUpperCase()} loss`, step)
        iterationLoss += part.loss
        const tokens = ops.total(ops.rowSum(mbMask))
        m.loss += part.loss / mu
        m.policy_loss += part.policyLoss / mu
        m.kl_loss += part.klLoss / mu
        m.clip_fraction += part.clipRegion / mu
        m.clip_fraction_low += part.clipLow / mu
        m.clip_fraction_high += part.clipHigh / mu
        m.approx_kl += part.approxKl / mu
        m.entropy += (maskedMean(out.entropy!, mbMask) * tokens) / Math.max(batch.tokens, 1) / mu
      }
      if (dp) {
        if (micros.length === 0) await dp.allReduceGradients(policy.model)
        checkFinite((await dp.sum([iterationLoss]))[0], `the ${baseline.toUpperCase()} loss`, step)
      }
      const r = await optimizerStep(opt, config.optimizer, step * mu + iteration, steps * mu)
      gradNorm = r.gradNorm
      lr = r.lr
    }
    if (dp) {
      const keys = Object.keys(m) as (keyof typeof m)[]
      const sums = await dp.sum(keys.map((k) => m[k]))
      keys.forEach((k, i) => (m[k] = sums[i]))
    }
    const scoreMetrics = dp ? await dp.poolMetrics(scored.metrics, scored.rows) : scorer.metrics?.()
    step++
    const allSampled = concat(sampledScores)
    ctx.log(
      step,
      {
        score: meanOf(scores),
        score_std: Math.sqrt(meanOf(Float32Array.from(scores, (s) => (s - meanOf(scores)) ** 2))),
        reward: meanOf(rewards),
        kl: meanOf(seqKl),
        ...m,
        ...scoreMetrics,
        ...lengthMetrics(lengths, chunkData.flatMap((c) => c.stopped), config.generation.max_new_tokens),
        zero_std_groups: zeroStdShare(allSampled, G),
        ...(o.dynamic_sampling ? { prompts_drawn: promptsDrawn, sampling_rounds: rounds, groups_kept: keptGroups } : {}),
        advantage_abs: Math.sqrt(lengths.reduce((a, len, i) => a + advantages[i] ** 2 * len, 0) / Math.max(batch.tokens, 1)),
        grad_norm: gradNorm,
        lr,
      },
      { tokens: batch.tokens, totalSteps: steps },
    )
    await ctx.afterStep(() => ({ step, order: order.state() }))
  }
  const model = await ctx.saveModel(policy.model, policy.tokenizer, policy.tokenizerSource)
  return { model, metrics: { steps: step } }
}

export const trainGrpo = (ctx: TrainerContext) => trainGroupRl(ctx, 'grpo')
