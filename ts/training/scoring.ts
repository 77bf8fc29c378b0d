// Scoring responses: a reward model's value at the last token, reward
// functions, or both summed; and the scorer a config names.
import type { RunConfig } from '../config/types.generated.js'
import { lastPositionMask } from '../data/batch.js'
import type { Model } from '../model/model.js'
import * as ops from '../ops.js'
import { hasRewardFunctions, makeRewardCalls, RewardFunctions } from '../rewards/scorer.js'
import type { Tensor } from '../tensor.js'
import type { TrainerContext } from './context.js'
import { meanOf } from './host-tensors.js'
import { isGiven, loadModelSpec, sameTokenizer, type LoadedModel } from './models.js'

/** What a scorer reads besides the tokens: the responses, their prompts and dataset rows, and the step. */
export interface ScoreInput {
  texts: string[]
  lengths: number[]
  /** Where responses start in `tokens` (0: the rows are responses alone). */
  promptWidth?: number
  /** Prompt texts (a farm reward reads the instruction). */
  prompts?: string[]
  /** The dataset row of each response, all its columns (reward functions read e.g. `answer`). */
  rows?: Record<string, unknown>[]
  /** The trainer's step. */
  step?: number
}

/** Something that scores sequences: a reward model, reward functions, or both summed. */
export interface Scorer {
  /** One score per row of a rollout (or of right-padded sequences with their masks). */
  score(tokens: Tensor, attentionMask: Tensor, responses: ScoreInput): Promise<Float32Array>
  /** The last call's metrics (each reward function's mean and std ...), for the log. */
  metrics?(): Record<string, number>
}

/** A reward model: the scalar head's value at each row's last real token. */
export class RewardModelScorer implements Scorer {
  #mean = NaN

  constructor(readonly model: Model) {}

  async score(tokens: Tensor, attentionMask: Tensor, r: ScoreInput): Promise<Float32Array> {
    const { values } = await this.model.forward(tokens, { attentionMask, logprobs: false, values: true, onDevice: true })
    // Each row's last real token: its response's last, which the rollout already knows (no scan of the mask).
    const start = r.promptWidth ?? 0
    const ends = r.lengths.map((length) => Math.max(start + length, 1))
    const scores = ops.rowSum(values!, lastPositionMask(ends, tokens.shape[1]).to(values!.device)).to('cpu').data as Float32Array
    this.#mean = meanOf(scores)
    return scores
  }

  metrics(): Record<string, number> {
    return { 'rewards/reward_model/mean': this.#mean }
  }
}

/** Reward functions (ts/rewards): their weighted sum per response, each one's mean and std in the metrics. */
export class FunctionScorer implements Scorer {
  #metrics: Record<string, number> = {}

  constructor(readonly functions: RewardFunctions) {}

  async score(tokens: Tensor, _attentionMask: Tensor, r: ScoreInput): Promise<Float32Array> {
    const [B, T] = tokens.shape
    const ids = tokens.data as Int32Array
    const start = r.promptWidth ?? 0
    const completionIds = Array.from({ length: B }, (_, b) => Array.from(ids.subarray(b * T + start, b * T + start + r.lengths[b])))
    const prompts = r.prompts ?? new Array<string>(B).fill('')
    const out = await this.functions.score({
      prompts,
      completions: r.texts,
      completionIds,
      rows: r.rows ?? prompts.map((prompt) => ({ prompt })),
      step: r.step ?? 0,
    })
    this.#metrics = out.metrics
    return out.total
  }

  metrics(): Record<string, number> {
    return this.#metrics
  }
}

/** A reward model's score plus reward functions' weighted sum (ppo's "added to a reward model"). */
export class SumScorer implements Scorer {
  #metrics: Record<string, number> = {}

  constructor(readonly parts: Scorer[]) {}

  async score(tokens: Tensor, attentionMask: Tensor, r: ScoreInput): Promise<Float32Array> {
    const out = new Float32Array(tokens.shape[0])
    this.#metrics = {}
    for (const part of this.parts) {
      const s = await part.score(tokens, attentionMask, r)
      s.forEach((v, i) => (out[i] += v))
      Object.assign(this.#metrics, part.metrics?.())
    }
    return out
  }

  metrics(): Record<string, number> {
    return this.#metrics
  }
}

/** Whether the config names something to score responses with: a reward model or reward functions. */
export function hasScorer(config: RunConfig): boolean {
  return isGiven(config.reward_model) || hasRewardFunctions(config)
}

/**
 * The scorer a config names: reward_model (loaded with a scalar head), reward
 * functions (reward_function, reward_functions), or both, summed. Worker
 * threads of reward functions end with the run.
 */
export async function scorerFor(ctx: TrainerContext, policy: LoadedModel): Promise<{ scorer: Scorer; model?: LoadedModel }> {
  const { config } = ctx
  let rm: LoadedModel | undefined
  const parts: Scorer[] = []
  if (isGiven(config.reward_model)) {
    rm = await loadModelSpec(config.reward_model, 'reward_model', { scalarHead: true, seed: config.seed + 2, tokenizer: sameTokenizer(config.reward_model, policy) })
    parts.push(new RewardModelScorer(rm.model))
  }
  if (hasRewardFunctions(config)) {
    const functions = new RewardFunctions(await makeRewardCalls(config, ctx.rewards), config.reward.on_error as 'stop' | 'skip', (m) => ctx.note(m))
    ctx.defer(() => functions.close())
    parts.push(new FunctionScorer(functions))
  }
  if (parts.length === 0) throw new Error('give reward_model (a reward model directory) or reward_function / reward_functions (rewards as code)')
  return { scorer: parts.length === 1 ? parts[0] : new SumScorer(parts), model: rm }
}
