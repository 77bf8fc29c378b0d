// Evaluation: a policy's responses to the prompts, scored by the reward model
// or reward function (mean reward, written to outputs.jsonl), and, when the
// evaluated model has a scalar head and held-out pairs are given, its
// pairwise accuracy.
import path from 'node:path'
import { writeFileAtomic } from '../util/fs.js'
import type { StageResult, TrainerContext } from './context.js'
import { encoderFor, loadModelSpec, meanOf, padIdOf, readPrompts, sampleResponses, scorerFor } from './common.js'
import { pairAccuracy, preferenceSplit } from './reward.js'

export async function runEval(ctx: TrainerContext): Promise<StageResult> {
  const { config } = ctx
  const metrics: Record<string, number> = {}
  const files: Record<string, string> = {}
  const B = config.training.batch_size
  if (config.policy.scalar_head) {
    const rm = await loadModelSpec(config.policy, 'policy', { scalarHead: true, seed: config.seed })
    const split = await preferenceSplit(ctx)
    const pairs = split.eval.length > 0 ? split.eval : split.train
    const e = await pairAccuracy(rm.model, pairs, encoderFor(rm.tokenizer, config.data), padIdOf(rm.tokenizer), B)
    Object.assign(metrics, { accuracy: e.accuracy, margin: e.margin, pairs: pairs.length })
    ctx.log(0, { accuracy: e.accuracy, margin: e.margin }, { phase: 'eval' })
    return { metrics }
  }
  const policy = await loadModelSpec(config.policy, 'policy', { seed: config.seed })
  const encoder = encoderFor(policy.tokenizer, config.data)
  const { scorer } = await scorerFor(config, policy)
  const rows = await readPrompts(ctx, config.data.prompts ?? config.data.eval ?? config.data.train)
  const scores: number[] = []
  const lengths: number[] = []
  const lines: string[] = []
  for (let start = 0; start < rows.length && !ctx.stopRequested(); start += B) {
    const chunk = rows.slice(start, start + B)
    const rollout = await sampleResponses(policy.model, encoder, chunk.map((r) => encoder.prompt(r.prompt)), config.generation, config.seed + start)
    const s = await scorer.score(rollout.tokens, rollout.attentionMask, rollout)
    chunk.forEach((row, i) => {
      scores.push(s[i])
      lengths.push(rollout.lengths[i])
      lines.push(JSON.stringify({ prompt: row.prompt, response: rollout.texts[i], score: s[i], ...row.extra }))
    })
    ctx.log(Math.min(start + B, rows.length), { reward: meanOf(scores) }, { totalSteps: rows.length, phase: 'eval' })
  }
  const out = path.join(ctx.runDir, 'outputs.jsonl')
  writeFileAtomic(out, lines.map((l) => `${l}\n`).join(''))
  files.outputs = out
  Object.assign(metrics, { reward: meanOf(scores), response_length: meanOf(lengths), prompts: scores.length })
  return { metrics, files }
}
