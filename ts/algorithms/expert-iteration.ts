// Expert iteration (as AlpacaFarm's and the ReST/RAFT line run it): each round
// samples n responses to the unlabelled prompts with the current policy, keeps
// the best by the reward, and fine-tunes the policy on those winners.
// Data-parallel, the ranks split the prompts of the sampling and the rows of
// each SFT batch (sampleAndScore and sftStep).
import type { EncodedPair } from '../data/encode.js'
import { dataParallel } from '../distributed/data-parallel.js'
import type { StageResult, TrainerContext } from '../training/context.js'
import { best, sampleAndScore } from './best-of-n.js'
import { EpochBatches, readPrompts } from '../training/data-order.js'
import { loadPolicy } from '../training/models.js'
import { makeOptimizer, optimizerStep } from '../training/optimizer.js'
import { meanOf } from '../training/host-tensors.js'
import { promptText } from '../training/rollout.js'
import { scorerFor } from '../training/scoring.js'
import { sftStep } from './sft.js'

interface RoundState {
  round: number
  /** Steps taken within the round. */
  roundStep: number
  /** The round's winners (kept in checkpoints so a resumed round trains on the same data). */
  winners: EncodedPair[]
  winnerScore: number
  /** Mean score of all samples, per round so far: the policy's progress. */
  sampleScores: number[]
  order?: unknown
}

export async function trainExpertIteration(ctx: TrainerContext): Promise<StageResult> {
  const { config } = ctx
  const o = config.expert_iteration
  const { policy, encoder, pad } = await loadPolicy(config)
  const { scorer } = await scorerFor(ctx, policy)
  const rows = await readPrompts(ctx)
  const prompts = rows.map((r) => encoder.prompt(r.prompt))
  const opt = makeOptimizer(policy.model, config.optimizer)
  await ctx.track({ models: { policy: policy.model }, optimizers: { policy: opt } })
  const resumed = ctx.resumed as (RoundState & { step: number }) | undefined
  let step = resumed?.step ?? 0
  let state: RoundState | undefined = resumed ? { ...resumed, winners: resumed.winners.map((w) => ({ ...w })), sampleScores: [...(resumed.sampleScores ?? [])] } : undefined
  const B = config.training.batch_size
  const perRound = o.prompts_per_round > 0 ? Math.min(o.prompts_per_round, prompts.length) : prompts.length
  const roundSteps = Math.ceil(perRound / (B * config.training.gradient_accumulation)) * config.training.epochs
  const allSteps = roundSteps * o.rounds
  const dp = dataParallel()

  for (let round = state?.round ?? 0; round < o.rounds && !ctx.stopRequested(); round++) {
    if (!state || state.round !== round) {
      // Best-of-n on this round's prompts with the current policy.
      const order = prompts.map((_, i) => i)
      ctx.rng.shuffle(order)
      const chosen = order.slice(0, perRound)
      ctx.note(`round ${round + 1}/${o.rounds}: best of ${o.n} on ${chosen.length} prompts`)
      const samples = await sampleAndScore(policy.model, scorer, encoder, chosen.map((i) => prompts[i]), {
        n: o.n,
        chunk: Math.min(o.n, 16),
        promptsPerCall: B,
        generation: config.generation,
        seed: config.seed * 7919 + round,
        promptTexts: chosen.map((i) => promptText(rows[i].prompt)),
        rows: chosen.map((i) => rows[i].row),
      })
      const winners = samples.map((s, k) => {
        const w = best(s)
        const ids = [...prompts[chosen[k]], ...w.ids].slice(0, encoder.maxLength)
        return { pair: { ids, promptLength: prompts[chosen[k]].length }, score: w.score }
      })
      const sampleScore = meanOf(samples.flatMap((s) => s.map((x) => x.score)))
      state = { round, roundStep: 0, winners: winners.map((w) => w.pair), winnerScore: meanOf(winners.map((w) => w.score)), sampleScores: [...(state?.sampleScores ?? []), sampleScore] }
      ctx.log(step, { round: round + 1, winner_score: state.winnerScore, sample_score: sampleScore }, { phase: 'sample' })
    }
    const current = state
    const order = new EpochBatches(current.winners.length, B, config.seed + 101, current.order as never)
    while (current.roundStep < roundSteps && !ctx.stopRequested()) {
      const chunks = Array.from({ length: config.training.gradient_accumulation }, () => order.next().map((i) => current.winners[i]))
      const { loss, tokens } = await sftStep(policy.model, chunks, pad, step, dp)
      const { gradNorm, lr } = await optimizerStep(opt, config.optimizer, step, allSteps)
      step++
      current.roundStep++
      ctx.log(step, { loss, grad_norm: gradNorm, lr, round: round + 1, winner_score: current.winnerScore }, { tokens, totalSteps: allSteps })
      await ctx.afterStep(() => ({ step, ...current, order: order.state() }))
    }
  }
  const model = await ctx.saveModel(policy.model, policy.tokenizer, policy.tokenizerSource)
  const scores = state?.sampleScores ?? []
  const metrics: Record<string, number> = { steps: step, winner_score: state?.winnerScore ?? NaN, initial_score: scores[0] ?? NaN, final_score: scores.at(-1) ?? NaN }
  scores.forEach((s, i) => (metrics[`round${i + 1}_sample_score`] = s))
  return { model, metrics }
}
