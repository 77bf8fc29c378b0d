// GRPO (Shao et al. 2024, DeepSeekMath): for each prompt sample a group of G
// responses, score them, and use the group as the baseline:
//   A_i = (r_i - mean(r_group)) / (std(r_group) + 1e-6)
// broadcast to every token of response i, with PPO's clipped ratio against the
// sampling policy and, when kl_coef > 0, beta * KL(policy || reference) (k3)
// added to the loss. RLOO (rloo.ts) runs the same loop with the leave-one-out
// baseline and the KL in the reward.
import * as ops from '../ops.js'
import { Tensor } from '../tensor.js'
import { checkFinite, type StageResult, type TrainerContext } from './context.js'
import {
  EpochBatches,
  encoderFor,
  loadModelSpec,
  makeOptimizer,
  maskedMean,
  meanOf,
  optimizerStep,
  promptText,
  readPrompts,
  referenceSpec,
  rolloutSteps,
  sameTokenizer,
  sampleResponses,
  scorerFor,
  selectRows,
  sequenceLogprobs,
  total,
} from './common.js'

export type GroupBaseline = 'grpo' | 'rloo'

/** Per-response advantages from group scores (groups of `size` consecutive rows). */
export function groupAdvantages(scores: Float32Array, size: number, baseline: GroupBaseline): Float32Array {
  const out = new Float32Array(scores.length)
  for (let start = 0; start < scores.length; start += size) {
    const group = scores.subarray(start, start + size)
    const sum = group.reduce((a, b) => a + b, 0)
    const mean = sum / size
    // Sample standard deviation, as TRL's GRPO (torch.std).
    const std = Math.sqrt(group.reduce((a, r) => a + (r - mean) ** 2, 0) / Math.max(size - 1, 1))
    for (let i = 0; i < size; i++) {
      const r = group[i]
      out[start + i] = baseline === 'grpo' ? (r - mean) / (std + 1e-6) : r - (sum - r) / (size - 1)
    }
  }
  return out
}

export async function trainGroupRl(ctx: TrainerContext, baseline: GroupBaseline): Promise<StageResult> {
  const { config } = ctx
  const o = config.group
  const G = o.group_size
  const policy = await loadModelSpec(config.policy, 'policy', { seed: config.seed })
  const encoder = encoderFor(policy.tokenizer, config.data)
  const { scorer } = await scorerFor(ctx, policy)
  const reference =
    o.kl_coef > 0
      ? await loadModelSpec(referenceSpec(config), 'reference', {
          seed: config.seed,
          tokenizer: sameTokenizer(config.reference, policy),
        })
      : undefined
  const rows = await readPrompts(ctx)
  const prompts = rows.map((r) => encoder.prompt(r.prompt))
  const opt = makeOptimizer(policy.model, config.optimizer)
  await ctx.track({ models: { policy: policy.model }, optimizers: { policy: opt } })
  const B = config.training.batch_size
  const order = new EpochBatches(prompts.length, B, config.seed + 101, ctx.resumed?.order as never)
  const steps = rolloutSteps(config, prompts.length)
  const temperature = config.generation.temperature > 0 ? config.generation.temperature : 1
  let step = ctx.resumed?.step ?? 0

  while (step < steps && !ctx.stopRequested()) {
    const picked = order.next().flatMap((i) => Array.from({ length: G }, () => i))
    const group = picked.map((i) => prompts[i])
    const rollout = await sampleResponses(policy.model, encoder, group, config.generation, config.seed * 1_000_003 + step, picked.map((i) => promptText(rows[i].prompt)))
    const mask = rollout.actionMask
    const n = group.length
    const scores = await scorer.score(rollout.tokens, rollout.attentionMask, { ...rollout, rows: picked.map((i) => rows[i].row), step })
    const oldLogp = await sequenceLogprobs(policy.model, rollout.tokens, rollout.attentionMask, temperature)
    const refLogp = reference ? await sequenceLogprobs(reference.model, rollout.tokens, rollout.attentionMask, temperature) : undefined
    const seqKl = refLogp ? (ops.rowSum(ops.klPenalty(oldLogp, refLogp, mask, { estimator: o.kl_estimator }), mask).data as Float32Array) : new Float32Array(n)
    // RLOO puts the KL into the reward; GRPO keeps it as a loss term.
    const rewards = baseline === 'rloo' ? Float32Array.from(scores, (s, i) => s - o.kl_coef * seqKl[i]) : scores
    const advantages = ops.broadcastRows(Tensor.from(groupAdvantages(rewards, G, baseline), [n]), mask)

    const m = { loss: 0, clip_fraction: 0, approx_kl: 0 }
    let gradNorm = 0
    let lr = 0
    for (let epoch = 0; epoch < o.epochs; epoch++) {
      policy.model.zeroGrad()
      // Micro-batches of B rows; the loss is the mean over the whole group batch.
      for (let start = 0; start < n; start += B) {
        const rows = Array.from({ length: Math.min(B, n - start) }, (_, i) => start + i)
        const share = rows.length / n
        const mbMask = selectRows(mask, rows)
        const out = await policy.model.forward(selectRows(rollout.tokens, rows), { attentionMask: selectRows(rollout.attentionMask, rows), train: true, temperature })
        const pg = ops.ppoPolicyLoss(out.logp!, selectRows(oldLogp, rows), selectRows(advantages, rows), mbMask, {
          clipLow: o.clip_low,
          clipHigh: o.clip_high ?? o.clip_low,
          aggregate: o.aggregate as 'token-mean',
        })
        let grad = ops.add(pg.grad, undefined, { alpha: share })
        if (baseline === 'grpo' && refLogp && o.kl_coef > 0) {
          // + beta * mean KL over tokens: its gradient weighted like the policy loss.
          const klGrad = ops.klPenaltyGrad(out.logp!, selectRows(refLogp, rows), mbMask, { estimator: o.kl_estimator })
          grad = ops.add(grad, klGrad, { alpha: 1, beta: (o.kl_coef * share) / Math.max(total(ops.rowSum(mbMask)), 1) })
        }
        await policy.model.backward({ gradLogp: grad })
        checkFinite(pg.loss, `the ${baseline.toUpperCase()} loss`, step)
        m.loss += (pg.loss * share) / o.epochs
        m.clip_fraction += (pg.clipFraction * share) / o.epochs
        m.approx_kl += (pg.approxKl * share) / o.epochs
      }
      const r = await optimizerStep(opt, config.optimizer, step * o.epochs + epoch, steps * o.epochs)
      gradNorm = r.gradNorm
      lr = r.lr
    }
    step++
    ctx.log(
      step,
      {
        score: meanOf(scores),
        score_std: Math.sqrt(meanOf(Float32Array.from(scores, (s) => (s - meanOf(scores)) ** 2))),
        reward: meanOf(rewards),
        kl: meanOf(seqKl),
        ...m,
        ...scorer.metrics?.(),
        response_length: meanOf(rollout.lengths),
        advantage_abs: maskedMean(ops.mul(advantages, advantages), mask) ** 0.5,
        grad_norm: gradNorm,
        lr,
      },
      { tokens: rollout.lengths.reduce((a, b) => a + b, 0), totalSteps: steps },
    )
    await ctx.afterStep(() => ({ step, order: order.state() }))
  }
  const model = await ctx.saveModel(policy.model, policy.tokenizer, policy.tokenizerSource)
  return { model, metrics: { steps: step } }
}

export const trainGrpo = (ctx: TrainerContext) => trainGroupRl(ctx, 'grpo')
