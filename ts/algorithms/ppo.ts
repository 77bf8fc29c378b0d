// PPO for language models (Ziegler et al. 2019; Ouyang et al. 2022; as TRL and
// AlpacaFarm run it). Each step:
//   rollout   sample a response to each prompt of the batch
//   score     reward model (or reward function) at the last token; missing-EOS
//             penalty, clipping, normalisation
//   logprobs  of the rollout under the policy (old) and the frozen reference
//   shape     r_t = -beta kl_t, plus the score at the last response token
//   advantage GAE over the value model's estimates, then whitened
//   update    `epochs` passes of minibatches: clipped policy loss (+ entropy
//             bonus) for the policy, clipped value loss for the value model
//   control   adaptive KL: beta <- beta (1 + clip(KL/target - 1, +-0.2) B/horizon)
import type { Model } from '../model/model.js'
import * as ops from '../ops.js'
import { Tensor } from '../tensor.js'
import { checkFinite, type StageResult, type TrainerContext } from './context.js'
import { evaluateHeldOut } from './eval.js'
import {
  EpochBatches,
  encoderFor,
  isGiven,
  leadingColumns,
  loadModelSpec,
  makeOptimizer,
  maskedMean,
  meanOf,
  optimizerStep,
  padLastColumn,
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

/** Values of a value model aligned with log-prob positions: [B, T] -> [B, T - 1]. */
async function actionValues(model: Model, tokens: Tensor, attentionMask: Tensor, train: boolean): Promise<Tensor> {
  const { values } = await model.forward(tokens, { attentionMask, train, logprobs: false, values: true })
  return leadingColumns(values!, tokens.shape[1] - 1)
}

/** Running mean and variance of scores (Welford), for normalize_rewards. */
class RunningMoments {
  constructor(public count = 0, public mean = 0, public m2 = 0) {}
  update(xs: Float32Array): void {
    for (const x of xs) {
      this.count++
      const d = x - this.mean
      this.mean += d / this.count
      this.m2 += d * (x - this.mean)
    }
  }
  get std(): number {
    return this.count > 1 ? Math.sqrt(this.m2 / (this.count - 1)) : 1
  }
}

export async function trainPpo(ctx: TrainerContext): Promise<StageResult> {
  const { config } = ctx
  const o = config.ppo
  const g = config.generation
  const policy = await loadModelSpec(config.policy, 'policy', { seed: config.seed })
  const encoder = encoderFor(policy.tokenizer, config.data)
  const { scorer, model: rewardModel } = await scorerFor(ctx, policy)
  const reference = await loadModelSpec(referenceSpec(config), 'reference', {
    seed: config.seed,
    tokenizer: sameTokenizer(config.reference, policy),
  })
  // The value model starts from the reward model, as AlpacaFarm does, unless one is named.
  const valueSpec = isGiven(config.value_model) ? config.value_model : rewardModel ? config.reward_model : config.policy
  const value = await loadModelSpec(valueSpec, 'value_model', { scalarHead: true, seed: config.seed + 1, tokenizer: sameTokenizer(valueSpec, policy) })
  const rows = await readPrompts(ctx)
  const prompts = rows.map((r) => encoder.prompt(r.prompt))

  const policyOpt = makeOptimizer(policy.model, config.optimizer)
  const valueOpt = makeOptimizer(value.model, config.optimizer)
  await ctx.track({ models: { policy: policy.model, value: value.model }, optimizers: { policy: policyOpt, value: valueOpt } })
  const resumed = ctx.resumed as { step: number; order: never; kl_coef: number; moments: [number, number, number] } | undefined
  const B = config.training.batch_size
  const order = new EpochBatches(prompts.length, B, config.seed + 101, resumed?.order)
  const steps = rolloutSteps(config, prompts.length)
  let klCoef = resumed?.kl_coef ?? o.kl_coef
  const moments = new RunningMoments(...(resumed?.moments ?? []))
  let step = resumed?.step ?? 0
  // Optimizer steps per rollout (minibatches x epochs), for the schedule.
  const updatesPerStep = o.epochs * Math.ceil(B / o.minibatch_size)
  const totalUpdates = steps * updatesPerStep

  // Held-out evaluation during training (data.eval with reference outputs,
  // every training.eval_every steps): the proxy reward the policy is trained
  // on beside the win-rate by gold and by the pool, the curves that show
  // over-optimisation.
  const evalRows = config.data.eval && config.training.eval_every > 0 ? await readPrompts(ctx, config.data.eval) : []
  const heldOut = async () => {
    const e = await evaluateHeldOut(policy.model, encoder, scorer, evalRows, config)
    ctx.log(step, e, { phase: 'eval' })
    return e
  }
  let lastEval: Record<string, number> = {}
  if (evalRows.length > 0 && step === 0) lastEval = await heldOut()

  while (step < steps && !ctx.stopRequested()) {
    const picked = order.next()
    const batchPrompts = picked.map((i) => prompts[i])
    const rollout = await sampleResponses(policy.model, encoder, batchPrompts, g, config.seed * 1_000_003 + step, picked.map((i) => promptText(rows[i].prompt)))
    const n = batchPrompts.length
    const mask = rollout.actionMask

    // Scores at the last token, with the EOS penalty, clipping and normalisation.
    const scores = await scorer.score(rollout.tokens, rollout.attentionMask, { ...rollout, rows: picked.map((i) => rows[i].row), step })
    const scoreMetrics = scorer.metrics?.()
    if (o.missing_eos_penalty !== undefined) rollout.stopped.forEach((s, b) => (scores[b] -= s ? 0 : o.missing_eos_penalty!))
    if (o.reward_clip > 0) scores.forEach((s, b) => (scores[b] = Math.max(-o.reward_clip, Math.min(o.reward_clip, s))))
    const rawScore = meanOf(scores)
    if (o.normalize_rewards) {
      moments.update(scores)
      scores.forEach((s, b) => (scores[b] = s / moments.std))
    }

    const temperature = g.temperature > 0 ? g.temperature : 1
    const oldLogp = await sequenceLogprobs(policy.model, rollout.tokens, rollout.attentionMask, temperature)
    const refLogp = await sequenceLogprobs(reference.model, rollout.tokens, rollout.attentionMask, temperature)
    const oldValues = await actionValues(value.model, rollout.tokens, rollout.attentionMask, false)
    // r_t = -beta kl_t, plus the score at the last response token (one native call).
    const { kl, rewards } = ops.shapeRewards(oldLogp, refLogp, mask, Tensor.from(scores, [n]), rollout.lastMask, { klCoef, estimator: o.kl_estimator })
    const gae = ops.gae(rewards, oldValues, mask, { gamma: o.gamma, lambda: o.lam })
    const advantages = o.whiten_advantages ? ops.whiten(gae.advantages, mask) : gae.advantages

    // K epochs of minibatch updates.
    const m = { policy_loss: 0, value_loss: 0, clip_fraction: 0, approx_kl: 0, entropy: 0, value_clip_fraction: 0 }
    let updates = 0
    let gradNorm = 0
    let lr = 0
    for (let epoch = 0; epoch < o.epochs; epoch++) {
      const rows = Array.from({ length: n }, (_, i) => i)
      ctx.rng.shuffle(rows)
      for (let start = 0; start < n; start += o.minibatch_size) {
        const mb = rows.slice(start, start + o.minibatch_size)
        const pick = (t: Tensor) => selectRows(t, mb)
        const tokens = pick(rollout.tokens)
        const attention = pick(rollout.attentionMask)
        const mbMask = pick(mask)
        policy.model.zeroGrad()
        // Entropy is always measured (a collapse shows in the logs); it enters the loss only with entropy_coef.
        const out = await policy.model.forward(tokens, { attentionMask: attention, train: true, temperature, entropy: true })
        const pg = ops.ppoPolicyLoss(out.logp!, pick(oldLogp), pick(advantages), mbMask, {
          clipLow: o.clip_low,
          clipHigh: o.clip_high ?? o.clip_low,
          dualClip: o.dual_clip > 1 ? o.dual_clip : undefined,
          aggregate: o.aggregate as 'token-mean',
        })
        const tokensInMb = Math.max(total(ops.rowSum(mbMask)), 1)
        let gradEntropy: Tensor | undefined
        m.entropy += maskedMean(out.entropy!, mbMask)
        if (o.entropy_coef !== 0) {
          gradEntropy = ops.add(mbMask, undefined, { alpha: -o.entropy_coef / tokensInMb }) // loss -= coef * mean entropy
        }
        await policy.model.backward({ gradLogp: pg.grad, gradEntropy })
        checkFinite(pg.loss, 'the PPO policy loss', step)
        const step1 = await optimizerStep(policyOpt, config.optimizer, step * updatesPerStep + updates, totalUpdates)
        gradNorm = step1.gradNorm
        lr = step1.lr

        value.model.zeroGrad()
        const v = await actionValues(value.model, tokens, attention, true)
        const vl = ops.valueLoss(v, pick(oldValues), pick(gae.returns), mbMask, { clip: o.value_clip })
        await value.model.backward({ gradValues: padLastColumn(ops.add(vl.grad, undefined, { alpha: o.value_coef })) })
        checkFinite(vl.loss, 'the PPO value loss', step)
        await optimizerStep(valueOpt, config.optimizer, step * updatesPerStep + updates, totalUpdates)

        m.policy_loss += pg.loss
        m.clip_fraction += pg.clipFraction
        m.approx_kl += pg.approxKl
        m.value_loss += vl.loss
        m.value_clip_fraction += vl.clipFraction
        updates++
      }
    }
    for (const key of Object.keys(m) as (keyof typeof m)[]) m[key] /= updates

    // KL per sequence drives the adaptive controller.
    const klPerSeq = total(ops.rowSum(kl, mask)) / n
    if (o.kl_target > 0) {
      const e = Math.max(-0.2, Math.min(0.2, klPerSeq / o.kl_target - 1))
      klCoef *= 1 + (e * n) / o.kl_horizon
    }
    const residual = ops.add(gae.returns, oldValues, { alpha: 1, beta: -1 })
    const variance = (x: Tensor) => maskedMean(ops.mul(x, x), mask) - maskedMean(x, mask) ** 2
    step++
    ctx.log(
      step,
      {
        score: rawScore,
        reward: total(ops.rowSum(rewards, mask)) / n,
        kl: klPerSeq,
        kl_coef: klCoef,
        ...m,
        ...scoreMetrics,
        value_explained_variance: 1 - variance(residual) / Math.max(variance(gae.returns), 1e-8),
        response_length: meanOf(rollout.lengths),
        eos_fraction: meanOf(rollout.stopped.map(Number)),
        grad_norm: gradNorm,
        lr,
      },
      { tokens: rollout.lengths.reduce((a, b) => a + b, 0), totalSteps: steps },
    )
    if (evalRows.length > 0 && (step % config.training.eval_every === 0 || step === steps)) lastEval = await heldOut()
    await ctx.afterStep(() => ({ step, order: order.state(), kl_coef: klCoef, moments: [moments.count, moments.mean, moments.m2] }))
  }
  const model = await ctx.saveModel(policy.model, policy.tokenizer, policy.tokenizerSource)
  await ctx.saveModel(value.model, value.tokenizer, value.tokenizerSource, 'value_model')
  return { model, metrics: { steps: step, kl_coef: klCoef, ...lastEval } }
}
