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
import type { StageResult, TrainerContext } from './context.js'
import { AnnotatorPool, goldPreference, goldScore, poolPreference, winRateOf, type WinRate } from '../farm/farm.js'
import { FAMILIES, parseTask } from '../farm/families.js'
import { judgeWinRate } from '../farm/judges.js'
import type { GenerationConfig, JudgeConfig, RunConfig } from '../config/types.generated.js'
import type { PromptExample } from '../data/examples.js'
import type { SequenceEncoder } from '../data/encode.js'
import type { Model } from '../model/model.js'
import * as ops from '../ops.js'
import {
  encoderFor,
  hasScorer,
  isGiven,
  loadModelSpec,
  meanOf,
  padIdOf,
  promptText,
  readPrompts,
  referenceSpec,
  rowsOfRank,
  sameTokenizer,
  sampleResponses,
  scorerFor,
  shareOf,
  sequenceLogprobs,
  type LoadedModel,
  type Scorer,
} from './common.js'
import { judgeFor } from './judge.js'
import { goldAccuracyMetrics, pairAccuracy, preferenceSplit } from './reward.js'

/** The pool that judges win-rates: judge.eval_label_noise, when set, replaces the training pool's label noise. */
export function evaluationPool(judge: JudgeConfig): AnnotatorPool {
  return new AnnotatorPool({ p: judge.eval_label_noise ?? judge.label_noise, seed: judge.seed })
}

/**
 * Win-rates of responses against references: by gold and by the pool for
 * farm instructions (win_rate, pool_win_rate), and by an llm or http judge
 * (judge_win_rate, or win_rate when the prompts are not the farm's).
 * `outcomes`, when given, gets each item's gold and pool outcome (1 win,
 * 0.5 tie, 0 loss), which a comparison resamples for its intervals.
 */
export async function winRateMetrics(
  items: readonly { prompt: string; response: string; reference: string }[],
  judge: JudgeConfig,
  options: { seed: number; chatTemplate: boolean },
  outcomes?: { gold?: number[]; pool?: number[] },
): Promise<Record<string, number>> {
  const metrics: Record<string, number> = {}
  const put = (name: string, w: WinRate) => Object.assign(metrics, { [name]: w.winRate, [`${name}_stderr`]: w.stderr })
  const farm = items.every((it) => parseTask(it.prompt) !== undefined)
  if (farm) {
    const gold = items.map((it) => 1 - goldPreference(it.prompt, it.response, it.reference))
    put('win_rate', winRateOf(gold))
    metrics.gold_score = meanOf(items.map((it) => goldScore(it.prompt, it.response)))
    // On the closed families (one right answer): the share answered exactly (gold 1).
    const closed = items.filter((it) => FAMILIES.find((f) => f.name === parseTask(it.prompt)!.family)?.kind === 'closed')
    if (closed.length > 0) {
      const exact = winRateOf(closed.map((it) => Number(goldScore(it.prompt, it.response) === 1)))
      Object.assign(metrics, { gold_accuracy: exact.winRate, gold_accuracy_stderr: exact.stderr, gold_accuracy_n: closed.length })
    }
    const evalPool = evaluationPool(judge)
    const pool = items.map((it) => 1 - poolPreference(evalPool, it.prompt, it.response, it.reference))
    put('pool_win_rate', winRateOf(pool))
    if (outcomes) Object.assign(outcomes, { gold, pool })
  }
  if (judge.kind === 'llm' || judge.kind === 'http' || judge.kind === 'critic') {
    const name = farm ? 'judge_win_rate' : 'win_rate'
    // A model or an endpoint judges once, on rank 0, in a data-parallel run.
    const dp = dataParallel()
    const ask = async () => judgeWinRate(await judgeFor(judge, options), items)
    const w = dp ? await dp.fromRankZero('judge', ask) : await ask()
    put(name, w)
    if (w.skipped > 0) metrics[`${name}_skipped`] = w.skipped
  }
  metrics.n = items.length
  return metrics
}

/**
 * Responses to `rows` in batches of `batch` (seeds from `seed` and the row),
 * with their scores when a scorer is given. `onBatch` sees the progress and
 * the scorer's figures; `stop` ends the loop early (the responses so far are
 * returned). Data-parallel, each rank answers its rows of each batch and
 * every rank gets all the answers, in prompt order.
 */
async function respond(
  policy: Model,
  encoder: SequenceEncoder,
  rows: readonly PromptExample[],
  texts: readonly string[],
  options: {
    generation: GenerationConfig
    seed: number
    batch: number
    scorer?: Scorer
    onBatch?: (done: number, scores: number[], metrics: Record<string, number> | undefined) => void
    stop?: () => boolean
  },
): Promise<{ responses: string[]; lengths: number[]; scores: number[] }> {
  const out = { responses: [] as string[], lengths: [] as number[], scores: [] as number[] }
  const B = options.batch
  const dp = dataParallel()
  for (let start = 0; start < rows.length && !options.stop?.(); start += B) {
    const chunk = rows.slice(start, start + B)
    const prompts = chunk.map((r) => encoder.prompt(r.prompt))
    const mine = rowsOfRank(chunk.length, dp)
    let answers: { text: string; length: number; score?: number }[] = []
    let metrics = undefined as Record<string, number> | undefined
    if (mine.length > 0) {
      const rollout = await sampleResponses(policy, encoder, mine.map((i) => prompts[i]), options.generation, options.seed + start, mine.map((i) => texts[start + i]), shareOf(dp, mine, prompts))
      const scores = options.scorer ? await options.scorer.score(rollout.tokens, rollout.attentionMask, { ...rollout, rows: mine.map((i) => chunk[i].row) }) : undefined
      metrics = options.scorer?.metrics?.()
      answers = rollout.texts.map((text, j) => ({ text, length: rollout.lengths[j], ...(scores ? { score: scores[j] } : {}) }))
    }
    if (dp) {
      if (options.scorer) metrics = await dp.poolMetrics(metrics ?? {}, mine.length)
      answers = await dp.gatherItems(answers, mine, chunk.length)
    }
    if (options.scorer) out.scores.push(...answers.map((a) => a.score!))
    out.responses.push(...answers.map((a) => a.text))
    out.lengths.push(...answers.map((a) => a.length))
    options.onBatch?.(Math.min(start + B, rows.length), out.scores, metrics)
  }
  return out
}

/**
 * A trainer's held-out check: greedy responses to `rows` (which carry
 * references), their mean score by the trainer's scorer (eval_reward), and
 * their win-rates (eval_win_rate, eval_pool_win_rate ...).
 */
export async function evaluateHeldOut(
  policy: Model,
  encoder: SequenceEncoder,
  scorer: Scorer,
  rows: readonly PromptExample[],
  config: RunConfig,
): Promise<Record<string, number>> {
  const texts = rows.map((r) => promptText(r.prompt))
  const greedy = { ...config.generation, temperature: 0 }
  const { responses, scores } = await respond(policy, encoder, rows, texts, { generation: greedy, seed: config.seed, batch: Math.max(config.training.batch_size, 64), scorer })
  const items = rows.flatMap((r, i) => (typeof r.extra.reference === 'string' ? [{ prompt: texts[i], response: responses[i], reference: r.extra.reference }] : []))
  const out: Record<string, number> = { eval_reward: meanOf(scores) }
  if (items.length > 0) {
    const w = await winRateMetrics(items, config.judge, { seed: config.seed, chatTemplate: config.data.chat_template })
    for (const [k, v] of Object.entries(w)) if (k !== 'n') out[`eval_${k}`] = v
  }
  return out
}

export async function runEval(ctx: TrainerContext): Promise<StageResult> {
  const { config } = ctx
  const B = config.training.batch_size
  if (config.policy.scalar_head) {
    const rm = await loadModelSpec(config.policy, 'policy', { scalarHead: true, seed: config.seed })
    const split = await preferenceSplit(ctx)
    const pairs = split.eval.length > 0 ? split.eval : split.train
    // Progress by pairs, as a policy's evaluation goes by prompts: a total and an ETA.
    const e = await pairAccuracy(rm.model, pairs, encoderFor(rm.tokenizer, config.data), padIdOf(rm.tokenizer), B, (done, accuracy) => {
      if (done < pairs.length) ctx.log(done, { accuracy }, { totalSteps: pairs.length, phase: 'eval' })
    })
    const gold = await goldAccuracyMetrics(rm.model, pairs, encoderFor(rm.tokenizer, config.data), padIdOf(rm.tokenizer), B)
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
    const policy = await loadModelSpec(config.policy, 'policy', { seed: config.seed })
    const encoder = encoderFor(policy.tokenizer, config.data)
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
    const lr = await sequenceLogprobs(reference.model, rollout.tokens, rollout.attentionMask)
    const perRow = ops.rowSum(ops.klPenalty(lp, lr, rollout.actionMask, { estimator: 'k1' }), rollout.actionMask).data as Float32Array
    for (const v of perRow) sum += v
  }
  if (dp) [sum] = await dp.sum([sum])
  return sum / prompts.length
}
