// Evaluation: a policy's responses to the prompts, scored by the reward model
// or reward function (mean reward, written to outputs.jsonl); when the rows
// carry a `reference` output, win-rates against it (AlpacaFarm's (wins +
// ties/2)/N with its standard error): by the farm's gold evaluator and its
// simulated pool for farm instructions, and by the configured judge when it
// is an LLM or an HTTP endpoint. With a `reference` model: KL(policy ||
// reference) on fresh samples. Without a policy, the rows' own `response`s
// are judged (best-of-n outputs, another system's outputs). When the
// evaluated model has a scalar head and held-out pairs are given: its
// pairwise accuracy.
import path from 'node:path'
import { dataParallel } from '../distributed/data-parallel.js'
import { distributed } from '../distributed/index.js'
import { writeFileAtomic } from '../util/fs.js'
import type { StageResult, TrainerContext } from '../training/context.js'
import { goldScore } from '../farm/farm.js'
import { parseTask } from '../farm/families.js'
import type { SequenceEncoder } from '../data/encode.js'
import * as ops from '../ops.js'
import { encoderFor, isGiven, loadModelSpec, loadPolicy, padIdOf, referenceSpec, sameTokenizer, type LoadedModel } from '../training/models.js'
import { hasScorer, scorerFor, type Scorer } from '../training/scoring.js'
import { meanOf } from '../training/host-tensors.js'
import { promptText, rowsOfRank, sampleResponses, shareOf, sequenceLogprobs } from '../training/rollout.js'
import { readPrompts } from '../training/data-order.js'
import { respond, winRateMetrics } from '../training/evaluation.js'
import { goldAccuracyMetrics, pairAccuracy, preferenceSplit } from '../training/preference-pairs.js'

export async function runEval(ctx: TrainerContext): Promise<StageResult> {
  const { config } = ctx
  const B = config.training.batch_size
  if (config.policy.scalar_head) {
    const rm = await loadModelSpec(config.policy, 'policy', { scalarHead: true, seed: config.seed })
    const split = await preferenceSplit(ctx)
    const pairs = split.eval.length > 0 ? split.eval : split.train
    const encoder = encoderFor(rm.tokenizer, config.data, rm.model)
    const pad = padIdOf(rm.tokenizer)
    // Progress by pairs, as a policy's evaluation goes by prompts: a total and an ETA.
    const e = await pairAccuracy(rm.model, pairs, encoder, pad, B, (done, accuracy) => {
      if (done < pairs.length) ctx.log(done, { accuracy }, { totalSteps: pairs.length, phase: 'eval' })
    })
    const gold = await goldAccuracyMetrics(rm.model, pairs, encoder, pad, B)
    ctx.log(pairs.length, { accuracy: e.accuracy, margin: e.margin, ...(gold.gold_pair_accuracy === undefined ? {} : { gold_pair_accuracy: gold.gold_pair_accuracy }) }, { totalSteps: pairs.length, phase: 'eval' })
    return { metrics: { accuracy: e.accuracy, margin: e.margin, pairs: pairs.length, ...gold } }
  }
  const rows = await readPrompts(ctx, config.data.prompts ?? config.data.eval ?? config.data.train)
  const texts = rows.map((r) => promptText(r.prompt))
  const references = rows.map((r) => r.extra.reference)
  const withReferences = references.every((r) => typeof r === 'string')
  const metrics: Record<string, number> = {}
  let sampled: { responses: string[]; lengths: number[]; scores: number[] }
  if (isGiven(config.policy)) {
    const { policy, encoder } = await loadPolicy(config)
    const scorer: Scorer | undefined = hasScorer(config) ? (await scorerFor(ctx, policy)).scorer : undefined
    if (!scorer && !withReferences) {
      throw new Error('eval: give reward_model or reward_function to score responses, or prompts with a `reference` output in each row for win-rates')
    }
    sampled = await respond(policy.model, encoder, rows, texts, {
      generation: config.generation,
      seed: config.seed,
      batch: B,
      scorer,
      onBatch: (done, s, scoreMetrics) => ctx.log(done, scorer ? { reward: meanOf(s), ...scoreMetrics } : {}, { totalSteps: rows.length, phase: 'eval' }),
      stop: () => ctx.stopRequested(),
    })
    if (scorer) metrics.reward = meanOf(sampled.scores)
    if (isGiven(config.reference)) metrics.kl = await klToReference(ctx, policy, encoder, rows.slice(0, sampled.responses.length).map((r) => encoder.prompt(r.prompt)))
  } else {
    // No policy: judge the responses the rows carry.
    const responses = rows.map((r, i) => {
      const response = r.extra.response
      if (typeof response !== 'string') throw new Error(`eval: without policy.path, each row needs a 'response' string to judge; prompt ${i + 1} has none`)
      return response
    })
    if (!withReferences) throw new Error('eval: without a policy, the rows need a `reference` output each to compare their responses with')
    sampled = { responses, lengths: [], scores: [] }
  }
  const { responses, scores, lengths } = sampled
  const done = responses.length
  const farm = texts.every((t) => parseTask(t) !== undefined)
  const outcomes: { gold?: number[]; pool?: number[] } = {}
  let winRates: Record<string, number> = {}
  if (withReferences && done > 0) {
    const items = rows.slice(0, done).map((_, i) => ({ prompt: texts[i], response: responses[i], reference: references[i] as string }))
    winRates = await winRateMetrics(items, config.judge, { seed: config.seed, chatTemplate: config.data.chat_template }, outcomes)
  }
  const lines = rows.slice(0, done).map((row, i) => {
    const extra: Record<string, unknown> = {}
    if (scores.length) extra.score = scores[i]
    if (farm) extra.gold = goldScore(texts[i], responses[i])
    // Against the reference (1 win, 0.5 tie, 0 loss): what a comparison's bootstrap resamples.
    if (outcomes.gold) Object.assign(extra, { gold_outcome: outcomes.gold[i], pool_outcome: outcomes.pool![i] })
    return JSON.stringify({ ...row.extra, prompt: row.prompt, response: responses[i], ...extra })
  })
  const out = path.join(ctx.runDir, 'outputs.jsonl')
  if (distributed.rank === 0) writeFileAtomic(out, lines.map((l) => `${l}\n`).join(''))
  metrics.response_length = lengths.length ? meanOf(lengths) : meanOf(responses.map((r) => r.length))
  metrics.prompts = done
  Object.assign(metrics, winRates)
  ctx.log(done, Object.fromEntries(Object.entries(metrics).filter(([k]) => k !== 'prompts' && k !== 'n')), { phase: 'eval' })
  return { metrics, files: { outputs: out } }
}

/**
 * KL(policy || reference) per response, estimated on one fresh sample per
 * prompt at temperature 1: the mean over samples of log pi(y|x) - log ref(y|x).
 */
async function klToReference(ctx: TrainerContext, policy: LoadedModel, encoder: SequenceEncoder, prompts: number[][]): Promise<number> {
  const { config } = ctx
  const reference = await loadModelSpec(referenceSpec(config), 'reference', { seed: config.seed, tokenizer: sameTokenizer(config.reference, policy) })
  const sampling = { ...config.generation, temperature: 1, top_k: 0, top_p: 1 }
  const B = config.training.batch_size
  const dp = dataParallel()
  let sum = 0
  for (let start = 0; start < prompts.length; start += B) {
    const chunk = prompts.slice(start, start + B)
    // Data-parallel: this rank's rows of the batch, the sums added up below.
    const mine = rowsOfRank(chunk.length, dp)
    if (mine.length === 0) continue
    const rollout = await sampleResponses(policy.model, encoder, mine.map((i) => chunk[i]), sampling, config.seed * 31 + start + 7, undefined, shareOf(dp, mine, chunk))
    const lp = await sequenceLogprobs(policy.model, rollout.tokens, rollout.attentionMask)
    const lr = (await sequenceLogprobs(reference.model, rollout.tokens, rollout.attentionMask)).to(lp.device)
    // The log-probs stay on the policy's device; only the per-row sums come back.
    const mask = rollout.actionMask.to(lp.device)
    const perRow = ops.rowSum(ops.klPenalty(lp, lr, mask, { estimator: 'k1' }), mask).to('cpu').data as Float32Array
    for (const v of perRow) sum += v
  }
  if (dp) [sum] = await dp.sum([sum])
  return sum / prompts.length
}
