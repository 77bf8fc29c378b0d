// Evaluating responses: win-rates against references (by the farm's gold
// evaluator, its pool, or an llm/http judge), a policy's responses to a set
// of prompts with their scores, and a trainer's held-out check.
import { dataParallel } from '../distributed/data-parallel.js'
import { AnnotatorPool, goldPreference, goldScore, poolPreference, winRateOf, type WinRate } from '../farm/farm.js'
import { FAMILIES, parseTask } from '../farm/families.js'
import { judgeWinRate } from '../farm/judges.js'
import type { GenerationConfig, JudgeConfig, RunConfig } from '../config/types.generated.js'
import type { PromptExample } from '../data/examples.js'
import type { SequenceEncoder } from '../data/encode.js'
import type { Model } from '../model/model.js'
import type { Scorer } from './scoring.js'
import { meanOf } from './host-tensors.js'
import { promptText, rowsOfRank, sampleResponses, shareOf } from './rollout.js'
import { judgeFor } from './judges.js'

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
export async function respond(
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
