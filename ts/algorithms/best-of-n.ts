// Best-of-n: sample n responses per prompt (n up to 1024, a chunk of them per
// generation call), score each, keep the highest. As a stage it writes the
// chosen responses to outputs.jsonl; expert iteration and West-of-N use the
// same sampling.
import fs from 'node:fs'
import path from 'node:path'
import type { SequenceEncoder } from '../data/encode.js'
import type { Prompt } from '../data/examples.js'
import type { GenerationConfig } from '../config/types.generated.js'
import { dataParallel } from '../distributed/data-parallel.js'
import { distributed } from '../distributed/index.js'
import type { Model } from '../model/model.js'
import * as ops from '../ops.js'
import { writeFileAtomic } from '../util/fs.js'
import type { StageResult, TrainerContext } from '../training/context.js'
import { loadPolicy } from '../training/models.js'
import { meanOf } from '../training/host-tensors.js'
import { promptText, rowsOfRank, sampleResponses, shareOf } from '../training/rollout.js'
import { readPrompts } from '../training/data-order.js'
import { scorerFor, type Scorer } from '../training/scoring.js'

export interface Sample {
  /** The response's token ids (stop token included) and its text. */
  ids: number[]
  text: string
  score: number
  /** Log-prob of the response under the sampling distribution. */
  logprob: number
}

/**
 * n samples for each prompt, scored: for prompts[i], result[i] holds its n
 * samples in sampling order. Generation runs `chunk` samples of each of up to
 * `prompts per call` prompts at a time; seeds come from (seed, prompt, sample).
 * Data-parallel, each rank samples its prompts of each call (with the seeds
 * one process would use) and every rank gets all the samples.
 */
export async function sampleAndScore(
  policy: Model,
  scorer: Scorer,
  encoder: SequenceEncoder,
  prompts: number[][],
  options: { n: number; chunk: number; promptsPerCall: number; generation: GenerationConfig; seed: number; promptTexts?: string[]; rows?: Record<string, unknown>[] },
): Promise<Sample[][]> {
  const result: Sample[][] = prompts.map(() => [])
  const chunk = Math.min(options.chunk, options.n)
  const dp = dataParallel()
  const mine: number[] = []
  for (let p0 = 0; p0 < prompts.length; p0 += options.promptsPerCall) {
    const callPrompts = Array.from({ length: Math.min(options.promptsPerCall, prompts.length - p0) }, (_, i) => p0 + i)
    const promptIdx = rowsOfRank(callPrompts.length, dp).map((i) => p0 + i)
    mine.push(...promptIdx)
    if (promptIdx.length === 0) continue
    for (let s0 = 0; s0 < options.n; s0 += chunk) {
      const count = Math.min(chunk, options.n - s0)
      const batch = promptIdx.flatMap((p) => Array.from({ length: count }, () => prompts[p]))
      const seed = (options.seed * 1_000_003 + p0 * 4099 + s0) % 2 ** 40
      const texts = options.promptTexts && promptIdx.flatMap((p) => Array.from({ length: count }, () => options.promptTexts![p]))
      const rowIndices = promptIdx.flatMap((p) => Array.from({ length: count }, (_, k) => (p - p0) * count + k))
      const rollout = await sampleResponses(policy, encoder, batch, options.generation, seed, texts, shareOf(dp, rowIndices, callPrompts.map((p) => prompts[p])))
      const rows = options.rows && promptIdx.flatMap((p) => Array.from({ length: count }, () => options.rows![p]))
      const scores = await scorer.score(rollout.tokens, rollout.attentionMask, { ...rollout, rows })
      const seqLogp = ops.rowSum(rollout.sampleLogprobs).data as Float32Array
      const width = rollout.tokens.shape[1]
      const ids = rollout.tokens.data as Int32Array
      batch.forEach((_, k) => {
        const start = k * width + rollout.promptWidth
        result[promptIdx[Math.floor(k / count)]].push({
          ids: Array.from(ids.subarray(start, start + rollout.lengths[k])),
          text: rollout.texts[k],
          score: scores[k],
          logprob: seqLogp[k],
        })
      })
    }
  }
  return dp ? dp.gatherItems(mine.map((p) => result[p]), mine, prompts.length) : result
}

export function best(samples: Sample[]): Sample {
  return samples.reduce((a, b) => (b.score > a.score ? b : a))
}

export async function runBestOfN(ctx: TrainerContext): Promise<StageResult> {
  const { config } = ctx
  const o = config.best_of_n
  const { policy, encoder } = await loadPolicy(config)
  const { scorer } = await scorerFor(ctx, policy)
  const rows = await readPrompts(ctx)
  const out = o.output ?? path.join(ctx.runDir, 'outputs.jsonl')
  const lines: string[] = []
  const bestScores: number[] = []
  const firstScores: number[] = []
  const B = config.training.batch_size
  for (let start = 0; start < rows.length && !ctx.stopRequested(); start += B) {
    const chunk = rows.slice(start, start + B)
    const samples = await sampleAndScore(
      policy.model,
      scorer,
      encoder,
      chunk.map((r) => encoder.prompt(r.prompt)),
      { n: o.n, chunk: o.chunk, promptsPerCall: B, generation: config.generation, seed: config.seed + start, promptTexts: chunk.map((r) => promptText(r.prompt)), rows: chunk.map((r) => r.row) },
    )
    samples.forEach((s, i) => {
      const chosen = best(s)
      bestScores.push(chosen.score)
      firstScores.push(s[0].score)
      lines.push(JSON.stringify({ prompt: chunk[i].prompt as Prompt, response: chosen.text, score: chosen.score, n: o.n, ...chunk[i].extra }))
    })
    ctx.log(Math.min(start + B, rows.length), { best_score: meanOf(bestScores), single_sample_score: meanOf(firstScores) }, { totalSteps: rows.length, phase: 'sample' })
  }
  if (distributed.rank === 0) {
    fs.mkdirSync(path.dirname(out), { recursive: true })
    writeFileAtomic(out, lines.map((l) => `${l}\n`).join(''))
  }
  // The KL of best-of-n to its base policy is at most log n - (n - 1)/n (Stiennon et al. 2020; Beirami et al. 2024).
  const klBound = Math.log(o.n) - (o.n - 1) / o.n
  return { files: { outputs: out }, metrics: { best_score: meanOf(bestScores), single_sample_score: meanOf(firstScores), prompts: lines.length, kl_bound: klBound } }
}
