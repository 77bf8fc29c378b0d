// What the on-policy trainers (PPO, GRPO, RLOO) set up before their loops:
// the policy, the scorer, the frozen reference, the prompts, the policy's
// optimizer, what a checkpoint tracks, and the seeded, resumable order of
// prompt batches; and, each step, responses sampled and scored. Each trainer
// file then holds only its algorithm.
import type { PromptExample } from '../data/examples.js'
import { dataParallel, type DataParallel } from '../distributed/data-parallel.js'
import type { Model } from '../model/model.js'
import type { AdamW } from '../model/optim.js'
import type { SequenceEncoder } from '../data/encode.js'
import type { TrainerContext, TrainerState } from './context.js'
import { EpochBatches, readPrompts, rolloutSteps } from './data-order.js'
import { loadModelSpec, loadPolicy, referenceSpec, sameTokenizer, type LoadedModel } from './models.js'
import { makeOptimizer } from './optimizer.js'
import { promptText, sampleResponses, shareOf, type Rollout } from './rollout.js'
import { scorerFor, type Scorer } from './scoring.js'

/** Models and optimizers a trainer adds to the policy's, for checkpoints. */
export interface Tracked {
  models?: Record<string, Model>
  optimizers?: Record<string, AdamW>
}

export interface OnPolicyRun<Extra extends Tracked> {
  policy: LoadedModel
  encoder: SequenceEncoder
  scorer: Scorer
  /** The reward model, when the scorer has one. */
  rewardModel?: LoadedModel
  /** The frozen reference, when asked for. */
  reference?: LoadedModel
  /** The prompt rows (all their fields) and their encodings. */
  rows: PromptExample[]
  prompts: number[][]
  optimizer: AdamW
  /** What the trainer added (a value model ...). */
  extra: Extra
  /** The last checkpoint's trainer state, when resuming. */
  resumed?: TrainerState
  /** Batches of prompt indices, resumable. */
  order: EpochBatches
  /** Rollout steps in the run, and the first one to take (after a resume, the next). */
  steps: number
  firstStep: number
  /** The temperature log-probs are taken at: the sampling temperature, or 1 for greedy sampling. */
  temperature: number
  dp: DataParallel | undefined
  /**
   * Responses to prompts `take` (indices into `prompts`), scored. Data-parallel,
   * `take` is this rank's share of a batch: `whole.rows` are its rows'
   * positions in the batch (their seeds) and `whole.prompts` the batch's prompts.
   */
  sample(take: readonly number[], seed: number, step: number, whole: { rows: readonly number[]; prompts: readonly number[] }): Promise<{ rollout: Rollout; scores: Float32Array }>
}

export async function setupOnPolicy<Extra extends Tracked>(
  ctx: TrainerContext,
  options: { reference: boolean; more?: (run: { policy: LoadedModel; rewardModel?: LoadedModel }) => Promise<Extra> },
): Promise<OnPolicyRun<Extra>> {
  const { config } = ctx
  const { policy, encoder } = await loadPolicy(config)
  const { scorer, model: rewardModel } = await scorerFor(ctx, policy)
  const reference = options.reference
    ? await loadModelSpec(referenceSpec(config), 'reference', { seed: config.seed, tokenizer: sameTokenizer(config.reference, policy) })
    : undefined
  const extra = options.more ? await options.more({ policy, rewardModel }) : ({} as Extra)
  const rows = await readPrompts(ctx)
  const prompts = rows.map((r) => encoder.prompt(r.prompt))
  const optimizer = makeOptimizer(policy.model, config.optimizer)
  await ctx.track({ models: { policy: policy.model, ...extra.models }, optimizers: { policy: optimizer, ...extra.optimizers } })
  const resumed = ctx.resumed
  const dp = dataParallel()
  const g = config.generation
  return {
    policy,
    encoder,
    scorer,
    rewardModel,
    reference,
    rows,
    prompts,
    optimizer,
    extra,
    resumed,
    order: new EpochBatches(prompts.length, config.training.batch_size, config.seed + 101, resumed?.order as never),
    steps: rolloutSteps(config, prompts.length),
    firstStep: resumed?.step ?? 0,
    temperature: g.temperature > 0 ? g.temperature : 1,
    dp,
    async sample(take, seed, step, whole) {
      const texts = take.map((i) => promptText(rows[i].prompt))
      const rollout = await sampleResponses(policy.model, encoder, take.map((i) => prompts[i]), g, seed, texts, shareOf(dp, whole.rows, whole.prompts.map((i) => prompts[i])))
      const scores = await scorer.score(rollout.tokens, rollout.attentionMask, { ...rollout, rows: take.map((i) => rows[i].row), step })
      return { rollout, scores }
    },
  }
}
