// West-of-N (Pace et al. 2024): synthetic preferences for reward modelling.
// Each round: for every unlabelled prompt sample N responses with the policy,
// score them with the current (base) reward model, and take the best and the
// worst as a pair; keep the pairs whose confidence sigmoid(r_best - r_worst)
// and, optionally, joint likelihood log p(best) + log p(worst) are above the
// given quantiles; train the reward model on a 1:1 mix of these and the base
// pairs; the trained model is the next round's base. Reports the held-out
// accuracy of the base and the new model.
import type { PreferenceExample, Prompt } from '../data/examples.js'
import type { StageResult, TrainerContext } from '../training/context.js'
import { dataParallel } from '../distributed/data-parallel.js'
import { best, sampleAndScore } from './best-of-n.js'
import { EpochBatches, readPrompts } from '../training/data-order.js'
import { loadModelSpec, loadPolicy, padIdOf, sameTokenizer } from '../training/models.js'
import { makeOptimizer, optimizerStep } from '../training/optimizer.js'
import { RewardModelScorer } from '../training/scoring.js'
import { checkFinite } from '../training/context.js'
import { pairAccuracy, preferenceSplit, rewardStep } from '../training/preference-pairs.js'

/** The q-quantile (0..1) of values, by linear interpolation. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const pos = q * (sorted.length - 1)
  const lo = Math.floor(pos)
  return sorted[lo] + (sorted[Math.min(lo + 1, sorted.length - 1)] - sorted[lo]) * (pos - lo)
}

interface RoundState {
  round: number
  roundStep: number
  mix: PreferenceExample[]
  baseAccuracy: number
  order?: unknown
}

export async function trainWestOfN(ctx: TrainerContext): Promise<StageResult> {
  const { config } = ctx
  const o = config.west_of_n
  const { policy, encoder } = await loadPolicy(config)
  const rm = await loadModelSpec(config.reward_model, 'reward_model', { scalarHead: true, seed: config.seed + 2, tokenizer: sameTokenizer(config.reward_model, policy) })
  const pad = padIdOf(rm.tokenizer)
  const promptRows = await readPrompts(ctx, config.data.prompts)
  const prompts = promptRows.map((r) => encoder.prompt(r.prompt))
  const split = await preferenceSplit(ctx)
  if (split.eval.length === 0) throw new Error('west_of_n needs held-out pairs to report accuracy: give data.eval or data.eval_size')
  const B = config.training.batch_size
  const accuracy = async () => (await pairAccuracy(rm.model, split.eval, encoder, pad, B)).accuracy

  const opt = makeOptimizer(rm.model, config.optimizer)
  await ctx.track({ models: { reward_model: rm.model }, optimizers: { reward_model: opt } })
  const resumed = ctx.resumed as (RoundState & { step: number }) | undefined
  let step = resumed?.step ?? 0
  let state: RoundState | undefined = resumed
  const metrics: Record<string, number> = {}
  // Data-parallel, the ranks split the sampling's prompts (sampleAndScore) and each batch's pairs (rewardStep).
  const dp = dataParallel()

  for (let round = state?.round ?? 0; round < o.rounds && !ctx.stopRequested(); round++) {
    if (!state || state.round !== round) {
      const baseAccuracy = await accuracy()
      ctx.note(`round ${round + 1}/${o.rounds}: ${o.n} samples for each of ${prompts.length} prompts`)
      const samples = await sampleAndScore(policy.model, new RewardModelScorer(rm.model), encoder, prompts, {
        n: o.n,
        chunk: Math.min(o.n, 16),
        promptsPerCall: B,
        generation: config.generation,
        seed: config.seed * 7919 + round,
      })
      const candidates = samples.map((s, i) => {
        const top = best(s)
        const bottom = s.reduce((a, b) => (b.score < a.score ? b : a))
        return {
          pair: { prompt: promptRows[i].prompt as Prompt, chosen: top.text, rejected: bottom.text },
          confidence: 1 / (1 + Math.exp(-(top.score - bottom.score))),
          likelihood: top.logprob + bottom.logprob,
          distinct: top.text !== bottom.text,
        }
      })
      const usable = candidates.filter((c) => c.distinct)
      const minConfidence = quantile(usable.map((c) => c.confidence), o.confidence_quantile)
      const minLikelihood = quantile(usable.map((c) => c.likelihood), o.likelihood_quantile)
      const synthetic = usable.filter((c) => c.confidence >= minConfidence && c.likelihood >= minLikelihood).map((c) => c.pair)
      if (synthetic.length === 0) throw new Error('west_of_n: no synthetic pair survived (every best and worst response was the same)')
      // 1:1 with the base pairs.
      const base = [...split.train]
      ctx.rng.shuffle(base)
      const k = Math.min(synthetic.length, base.length)
      const mix = [...synthetic.slice(0, k), ...base.slice(0, k)]
      ctx.rng.shuffle(mix)
      state = { round, roundStep: 0, mix, baseAccuracy }
      ctx.log(step, { base_accuracy: baseAccuracy, synthetic_pairs: synthetic.length, candidates: candidates.length }, { phase: `round ${round + 1}` })
    }
    const current = state
    const order = new EpochBatches(current.mix.length, B, config.seed + 101, current.order as never)
    const roundSteps = Math.ceil(current.mix.length / (B * config.training.gradient_accumulation)) * config.training.epochs
    const allSteps = roundSteps * o.rounds
    while (current.roundStep < roundSteps && !ctx.stopRequested()) {
      const chunks = Array.from({ length: config.training.gradient_accumulation }, () => order.next().map((i) => current.mix[i]))
      const { loss, accuracy: trainAccuracy } = await rewardStep(rm.model, chunks, encoder, pad, config.reward, dp)
      checkFinite(loss, 'the reward-model loss', step)
      const { gradNorm, lr } = await optimizerStep(opt, config.optimizer, step, allSteps)
      step++
      current.roundStep++
      ctx.log(step, { loss, accuracy: trainAccuracy, grad_norm: gradNorm, lr, round: round + 1 }, { totalSteps: allSteps })
      await ctx.afterStep(() => ({ step, ...current, order: order.state() }))
    }
    if (current.roundStep >= roundSteps) {
      const newAccuracy = await accuracy()
      metrics[`round${round + 1}_base_accuracy`] = current.baseAccuracy
      metrics[`round${round + 1}_accuracy`] = newAccuracy
      if (round === 0) metrics.base_accuracy = current.baseAccuracy
      metrics.accuracy = newAccuracy
      ctx.log(step, { base_accuracy: current.baseAccuracy, new_accuracy: newAccuracy }, { phase: 'eval' })
    }
  }
  const model = await ctx.saveModel(rm.model, rm.tokenizer, rm.tokenizerSource)
  return { model, metrics: { steps: step, ...metrics } }
}
