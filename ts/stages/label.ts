// Preference labelling, as AlpacaFarm builds its preference data: two
// responses per instruction sampled from the policy (the SFT model), and a
// judge (the simulated pool by default) says which is better (or
// label.pairs_per_prompt such pairs per instruction). Pairs the judge
// cannot split (identical responses, ties) are left out and counted.
// Writes preferences.jsonl rows {prompt, chosen, rejected, ...the row's other
// fields}, which the reward and dpo trainers read. Data-parallel, each rank
// samples its prompts of each batch; rank 0 asks the judge about the whole
// batch (once) and every rank gets its verdicts.
// label.mode rate, as UltraFeedback builds its data: completions_per_prompt
// completions per instruction from a pool of policies (label.policies), each
// rated by the judge (pool, gold, llm, http or critic) on four aspects with
// rationales, an overall score and a critique; a completion the judge gives
// no usable rating is left out and counted. ratings.jsonl holds UltraFeedback's raw rows, which
// data.format ultrafeedback binarises.
import path from 'node:path'
import { dataParallel } from '../distributed/data-parallel.js'
import { distributed } from '../distributed/index.js'
import { goldPreference, goldScore, hash32 } from '../farm/farm.js'
import { parseTask } from '../farm/families.js'
import { ultraFeedbackCompletion } from '../farm/ratings.js'
import { spearman } from '../farm/report.js'
import { writeFileAtomic } from '../util/fs.js'
import type { StageResult, TrainerContext } from '../training/context.js'
import { encoderFor, loadModelSpec, loadPolicy } from '../training/models.js'
import { meanOf } from '../training/host-tensors.js'
import { promptText, rowsOfRank, sampleResponses, shareOf } from '../training/rollout.js'
import { readPrompts } from '../training/data-order.js'
import { judgeFor, raterFor } from '../training/judges.js'

export async function labelPreferences(ctx: TrainerContext): Promise<StageResult> {
  const { config } = ctx
  if (config.label.mode === 'rate') return rateCompletions(ctx)
  const { policy, encoder } = await loadPolicy(config)
  const judge = await judgeFor(config.judge, { seed: config.seed, chatTemplate: config.data.chat_template })
  // Each prompt pairs_per_prompt times in a row: independent pairs (seeds differ by row).
  const pairsPerPrompt = config.label.pairs_per_prompt
  const rows = (await readPrompts(ctx)).flatMap((r) => Array.from({ length: pairsPerPrompt }, () => r))
  const texts = rows.map((r) => promptText(r.prompt))
  // A judge that cannot read these prompts says so before any sampling.
  judge.checkPrompts?.(texts)
  const farm = texts.every((t) => parseTask(t) !== undefined)
  const B = Math.max(1, Math.floor(config.training.batch_size / 2))
  const lines: string[] = []
  let undecided = 0
  // Pairs the judge gave no usable answer for (an HTTP judge's unreadable replies, after its retries).
  let skipped = 0
  let goldAgree = 0
  let goldDecided = 0
  const lengths: number[] = []
  const dp = dataParallel()
  for (let start = 0; start < rows.length && !ctx.stopRequested(); start += B) {
    const chunk = rows.slice(start, start + B)
    const mine = rowsOfRank(chunk.length, dp)
    const prompts = chunk.map((r) => encoder.prompt(r.prompt))
    // Each prompt twice in one batch: two independent samples (seeds differ by row).
    const encoded = mine.flatMap((i) => [prompts[i], prompts[i]])
    const chunkTexts = texts.slice(start, start + B)
    let sampled: { a: string; b: string; lengths: [number, number] }[] = []
    if (mine.length > 0) {
      const share = shareOf(dp, mine.flatMap((i) => [2 * i, 2 * i + 1]), prompts)
      const rollout = await sampleResponses(policy.model, encoder, encoded, config.generation, config.seed * 1_000_003 + start, undefined, share)
      sampled = mine.map((_, j) => ({ a: rollout.texts[2 * j], b: rollout.texts[2 * j + 1], lengths: [rollout.lengths[2 * j], rollout.lengths[2 * j + 1]] }))
    }
    if (dp) sampled = await dp.gatherItems(sampled, mine, chunk.length)
    const pairs = chunk.map((_, i) => ({ prompt: chunkTexts[i], a: sampled[i].a, b: sampled[i].b }))
    const verdicts = dp ? await dp.fromRankZero('judge', () => judge.compare(pairs)) : await judge.compare(pairs)
    chunk.forEach((row, i) => {
      const v = verdicts[i]
      const p = pairs[i]
      lengths.push(...sampled[i].lengths)
      if (v === null) {
        skipped++
        return
      }
      if (v === 0.5 || p.a === p.b) {
        undecided++
        return
      }
      const [chosen, rejected] = v === 0 ? [p.a, p.b] : [p.b, p.a]
      if (farm) {
        const g = goldPreference(p.prompt, chosen, rejected)
        if (g !== 0.5) {
          goldDecided++
          if (g === 0) goldAgree++
        }
      }
      lines.push(JSON.stringify({ ...row.extra, prompt: row.prompt, chosen, rejected }))
    })
    ctx.log(Math.min(start + B, rows.length), { pairs: lines.length, undecided }, { totalSteps: rows.length, phase: 'label' })
  }
  if (lines.length === 0) throw new Error(`label: the judge could not split any of the ${rows.length} pairs (all responses identical or tied); sample with a higher temperature`)
  const out = path.join(ctx.runDir, 'preferences.jsonl')
  if (distributed.rank === 0) writeFileAtomic(out, lines.map((l) => `${l}\n`).join(''))
  const metrics: Record<string, number> = { pairs: lines.length, undecided, response_length: meanOf(lengths) }
  if (skipped > 0) metrics.judge_skipped = skipped
  // How often the judge agrees with gold where gold has a preference: the label quality.
  if (farm && goldDecided > 0) metrics.gold_agreement = goldAgree / goldDecided
  ctx.note(`label: ${lines.length} pairs by the ${judge.name} judge, ${undecided} left out (identical or tied)${skipped > 0 ? `, ${skipped} without a usable answer from the judge` : ''}${metrics.gold_agreement !== undefined ? `, agreeing with gold on ${(100 * metrics.gold_agreement).toFixed(1)}%` : ''}`)
  return { files: { preferences: out, outputs: out }, metrics }
}

/** The name a rated completion gives its policy: the stage that trained it (…/<stage>/model), else the directory's name. */
function policyName(modelPath: string): string {
  const base = path.basename(modelPath)
  return base === 'model' ? path.basename(path.dirname(modelPath)) : base
}

async function rateCompletions(ctx: TrainerContext): Promise<StageResult> {
  const { config } = ctx
  const specs = config.label.policies.length > 0 ? config.label.policies : [config.policy]
  const rows = await readPrompts(ctx)
  const texts = rows.map((r) => promptText(r.prompt))
  const rater = await raterFor(config.judge, { seed: config.seed, chatTemplate: config.data.chat_template })
  // A rater that cannot read these prompts (the farm's, on other instructions) says so before any sampling.
  rater.checkPrompts?.(texts)
  const farm = texts.every((t) => parseTask(t) !== undefined)
  const n = config.label.completions_per_prompt
  // Completion j of prompt i comes from policy (start_i + j) mod k, start_i a seeded hash of the prompt.
  const starts = texts.map((t) => hash32(t, config.seed) % specs.length)
  const responses: string[][] = rows.map(() => new Array<string>(n))
  const models: string[][] = rows.map(() => new Array<string>(n))
  const B = config.training.batch_size
  for (const [k, spec] of specs.entries()) {
    const policy = await loadModelSpec(spec, config.label.policies.length > 0 ? `label.policies[${k}]` : 'policy', { seed: config.seed })
    const encoder = encoderFor(policy.tokenizer, config.data, policy.model)
    const name = spec.path ? policyName(spec.path) : `policy_${k}`
    const slots = rows.flatMap((_, i) => Array.from({ length: n }, (_, j) => [i, j] as const).filter(([, j]) => (starts[i] + j) % specs.length === k))
    for (let start = 0; start < slots.length && !ctx.stopRequested(); start += B) {
      const chunk = slots.slice(start, start + B)
      const rollout = await sampleResponses(policy.model, encoder, chunk.map(([i]) => encoder.prompt(rows[i].prompt)), config.generation, config.seed * 1_000_003 + k * 7919 + start)
      chunk.forEach(([i, j], m) => {
        responses[i][j] = rollout.texts[m]
        models[i][j] = name
      })
      ctx.log(start + chunk.length, { policy: k }, { totalSteps: slots.length, phase: 'label' })
    }
  }
  if (ctx.stopRequested()) return { metrics: { prompts: 0 } }
  const items = rows.flatMap((_, i) => responses[i].map((response) => ({ prompt: texts[i], response })))
  // Rated once, on rank 0 (a model or HTTP judge is asked once); every rank gets the ratings.
  const dp = dataParallel()
  const rated = dp ? await dp.fromRankZero('rate', () => rater.rate(items)) : await rater.rate(items)
  const overall: number[] = []
  const gold: number[] = []
  let skipped = 0
  const lines = rows.flatMap((row, i) => {
    const completions: Record<string, unknown>[] = []
    const kept: string[] = []
    responses[i].forEach((response, j) => {
      const r = rated[i * n + j]
      if (r === null) {
        skipped++
        return
      }
      overall.push(r.overall)
      if (farm) gold.push(goldScore(texts[i], response))
      completions.push(ultraFeedbackCompletion(models[i][j], response, r))
      kept.push(models[i][j])
    })
    // A row needs two rated completions to give a preference.
    if (completions.length < 2) return []
    const answers = farm ? { correct_answers: [parseTask(texts[i])!.answer], incorrect_answers: [] } : {}
    return [JSON.stringify({ ...row.extra, source: farm ? 'farm' : 'rlfarm', instruction: texts[i], models: kept, completions, ...answers })]
  })
  if (lines.length === 0) throw new Error(`label: the ${rater.name} judge rated fewer than two completions of every one of the ${rows.length} prompts (${skipped} left out without a usable rating)`)
  const out = path.join(ctx.runDir, 'ratings.jsonl')
  // Not split across ranks: each rank rates every prompt alike (seeds fixed), and rank 0 writes.
  if (distributed.rank === 0) writeFileAtomic(out, lines.map((l) => `${l}\n`).join(''))
  const metrics: Record<string, number> = { prompts: rows.length, completions: overall.length, overall_score: meanOf(overall) }
  if (skipped > 0) metrics.judge_skipped = skipped
  // How the overall scores rank the completions against gold: the ratings' quality.
  if (farm && overall.length >= 2) metrics.gold_spearman = spearman(overall, gold)
  ctx.note(`label: ${overall.length} completions of ${rows.length} prompts from ${specs.length} ${specs.length === 1 ? 'policy' : 'policies'} rated by the ${rater.name} judge${skipped > 0 ? `, ${skipped} left out without a usable rating` : ''}${metrics.gold_spearman !== undefined ? `, Spearman ${metrics.gold_spearman.toFixed(3)} with gold` : ''}`)
  return { files: { ratings: out, outputs: out }, metrics }
}
