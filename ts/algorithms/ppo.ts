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
// Data-parallel, each rank rolls out and trains on its rows of the batch (rows
// rank, rank + N, ...); scores, normalisation, whitening, each minibatch's
// token mean and every logged figure are over the whole batch.
import { microBatchBackward } from '../distributed/data-parallel.js'
import type { Model } from '../model/model.js'
import * as ops from '../ops.js'
import { Tensor } from '../tensor.js'
import { checkFinite, type StageResult, type TrainerContext } from '../training/context.js'
import { evaluateHeldOut } from '../training/evaluation.js'
import { readPrompts } from '../training/data-order.js'
import { isGiven, loadModelSpec, sameTokenizer } from '../training/models.js'
import { meanOf } from '../training/host-tensors.js'
import { makeOptimizer, optimizerStep } from '../training/optimizer.js'
import { setupOnPolicy } from '../training/on-policy.js'
import { rowsOfRank, sequenceLogprobs } from '../training/rollout.js'

/** A value model's estimates on the log-prob grid: [B, T - 1], value t beside logp[t], on the model's device. */
async function actionValues(model: Model, tokens: Tensor, attentionMask: Tensor, train: boolean): Promise<Tensor> {
  const { values } = await model.forward(tokens, { attentionMask, train, logprobs: false, values: 'actions', onDevice: true })
  return values!
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
  /** A score over the running std; unscaled while the scores have shown no spread (dividing by ~0 would blow them up or give NaN). */
  scale(score: number): number {
    const std = this.std
    return std > 1e-8 ? score / std : score
  }
}

export async function trainPpo(ctx: TrainerContext): Promise<StageResult> {
  const { config } = ctx
  const o = config.ppo
  const run = await setupOnPolicy(ctx, {
    reference: true,
    // The value model starts from the reward model, as AlpacaFarm does, unless one is named.
    more: async ({ policy, rewardModel }) => {
      const spec = isGiven(config.value_model) ? config.value_model : rewardModel ? config.reward_model : config.policy
      const value = await loadModelSpec(spec, 'value_model', { scalarHead: true, seed: config.seed + 1, tokenizer: sameTokenizer(spec, policy) })
      const optimizer = makeOptimizer(value.model, config.optimizer)
      return { value, valueOpt: optimizer, models: { value: value.model }, optimizers: { value: optimizer } }
    },
  })
  const { policy, encoder, scorer, order, steps, temperature, dp } = run
  const reference = run.reference!
  const { value, valueOpt } = run.extra
  const policyOpt = run.optimizer
  const resumed = run.resumed as { kl_coef: number; moments: [number, number, number] } | undefined
  const B = config.training.batch_size
  // The step's tensors live on the policy's device; only scalars and per-row statistics come back.
  const device = policy.model.device
  let klCoef = resumed?.kl_coef ?? o.kl_coef
  const moments = new RunningMoments(...(resumed?.moments ?? []))
  let step = run.firstStep
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
    const n = picked.length
    // This rank's rows of the batch (all of them with one process); a rank may have none.
    const mine = rowsOfRank(n, dp)
    const local = mine.length > 0 ? new Map(mine.map((b, j) => [b, j])) : undefined
    // The whole batch's per-row values, in batch order, on every rank.
    const gather = (values: Float32Array, width = 1) => (dp ? dp.gatherRows(values, mine, n, width) : Promise.resolve(values))
    const sampled = local ? await run.sample(mine.map((b) => picked[b]), config.seed * 1_000_003 + step, step, { rows: mine, prompts: picked }) : undefined
    const rollout = sampled?.rollout
    const mask = rollout?.actionMask.to(device)

    // Scores at the last token, with the EOS penalty, clipping and normalisation (over the whole batch).
    const localScores = sampled?.scores ?? new Float32Array(0)
    const scoreMetrics = dp ? await dp.poolMetrics(rollout ? (scorer.metrics?.() ?? {}) : {}, mine.length) : scorer.metrics?.()
    if (o.missing_eos_penalty !== undefined) rollout?.stopped.forEach((s, b) => (localScores[b] -= s ? 0 : o.missing_eos_penalty!))
    if (o.reward_clip > 0) localScores.forEach((s, b) => (localScores[b] = Math.max(-o.reward_clip, Math.min(o.reward_clip, s))))
    const scores = await gather(localScores)
    const rawScore = meanOf(scores)
    if (o.normalize_rewards) {
      moments.update(scores)
      scores.forEach((s, b) => (scores[b] = moments.scale(s)))
    }

    let shard: { kl: Tensor; rewards: Tensor; oldLogp: Tensor; oldValues: Tensor; returns: Tensor; advantages: Tensor | undefined } | undefined
    if (rollout && mask) {
      const oldLogp = await sequenceLogprobs(policy.model, rollout.tokens, rollout.attentionMask, temperature)
      const refLogp = (await sequenceLogprobs(reference.model, rollout.tokens, rollout.attentionMask, temperature)).to(device)
      const oldValues = (await actionValues(value.model, rollout.tokens, rollout.attentionMask, false)).to(device)
      // r_t = -beta kl_t, plus the score at the last response token (one native call).
      const rowScores = dp ? Float32Array.from(mine, (b) => scores[b]) : scores
      const { kl, rewards } = ops.shapeRewards(oldLogp, refLogp, mask, Tensor.from(rowScores, [mine.length], { device }), rollout.lastMask.to(device), { klCoef, estimator: o.kl_estimator })
      const gae = ops.gae(rewards, oldValues, mask, { gamma: o.gamma, lambda: o.lam })
      shard = { kl, rewards, oldLogp, oldValues, returns: gae.returns, advantages: gae.advantages }
    }
    if (o.whiten_advantages) {
      if (dp) {
        const whitened = await dp.whiten(shard?.advantages, mask)
        if (shard) shard.advantages = whitened
      } else if (shard && mask) shard.advantages = ops.whiten(shard.advantages!, mask)
    }

    // Per row: response tokens, then the sums over them of the KL, the shaped
    // reward, the value residual and the returns, and of their squares (one
    // native call), the response length and whether it stopped.
    // (Each sum's square follows it: variance(k) reads column k + 1.)
    const [TOKENS, KL, REWARD, RESIDUAL, RETURN, LENGTH, STOPPED] = [0, 1, 3, 5, 7, 9, 10]
    const STATS = 11
    const localStats = new Float32Array(mine.length * STATS)
    if (shard && mask && rollout) {
      const residual = ops.add(shard.returns, shard.oldValues, { alpha: 1, beta: -1 })
      const moments = ops.rowMoments([shard.kl, shard.rewards, residual, shard.returns], mask).to('cpu').data as Float32Array
      const width = STATS - 2
      mine.forEach((_, j) => {
        localStats.set(moments.subarray(j * width, (j + 1) * width), j * STATS)
        localStats[j * STATS + LENGTH] = rollout.lengths[j]
        localStats[j * STATS + STOPPED] = Number(rollout.stopped[j])
      })
    }
    const stats = await gather(localStats, STATS)
    const column = (k: number) => Float32Array.from({ length: n }, (_, b) => stats[b * STATS + k])
    const rowTokens = column(TOKENS)
    const lengths = Array.from(column(LENGTH))

    // K epochs of minibatch updates. With more ranks, each rank's rows of a
    // minibatch weigh by their share of its tokens (or of its sequences, for
    // seq-mean), and the gradients are summed before clipping and AdamW.
    const m = { policy_loss: 0, value_loss: 0, clip_fraction: 0, approx_kl: 0, entropy: 0, value_clip_fraction: 0 }
    let updates = 0
    let gradNorm = 0
    let lr = 0
    for (let epoch = 0; epoch < o.epochs; epoch++) {
      const shuffled = Array.from({ length: n }, (_, i) => i)
      ctx.rng.shuffle(shuffled)
      for (let start = 0; start < n; start += o.minibatch_size) {
        const whole = shuffled.slice(start, start + o.minibatch_size)
        const mb = whole.filter((b) => local?.has(b)).map((b) => local!.get(b)!)
        const mbTokens = whole.reduce((a, b) => a + rowTokens[b], 0)
        const mbSequences = whole.reduce((a, b) => a + (rowTokens[b] > 0 ? 1 : 0), 0)
        const part = { policy: [0, 0, 0, 0], value: [0, 0] }
        let valueGrad: Tensor | undefined
        let hasRows = false
        if (mb.length > 0 && rollout && shard && mask) {
          hasRows = true
          const [tokens, attention, mbMask, oldLogp, advantages, oldValues, returns] = ops.selectRows(
            [rollout.tokens, rollout.attentionMask, mask, shard.oldLogp, shard.advantages!, shard.oldValues, shard.returns],
            mb,
          )
          const localTokens = mb.reduce((a, j) => a + rowTokens[mine[j]], 0)
          const tokensInMb = Math.max(dp ? mbTokens : localTokens, 1)
          // This rank's share of the minibatch's token mean (1 with one process).
          const tokenShare = dp ? localTokens / tokensInMb : 1
          const lossShare = !dp ? 1 : o.aggregate === 'seq-mean' ? mb.filter((j) => rowTokens[mine[j]] > 0).length / Math.max(mbSequences, 1) : tokenShare
          // Entropy is always measured (a collapse shows in the logs); it enters the loss only with entropy_coef.
          const { ppoLoss: pg } = await policy.model.forward(tokens, {
            attentionMask: attention,
            train: true,
            temperature,
            entropy: true,
            onDevice: true,
            ppoLoss: {
              oldLogp,
              advantages,
              mask: mbMask,
              clipLow: o.clip_low,
              clipHigh: o.clip_high ?? o.clip_low,
              dualClip: o.dual_clip > 1 ? o.dual_clip : undefined,
              aggregate: o.aggregate as 'token-mean',
              gradScale: lossShare,
            },
          })
          let gradEntropy: Tensor | undefined
          if (o.entropy_coef !== 0) {
            gradEntropy = ops.add(mbMask, undefined, { alpha: -o.entropy_coef / tokensInMb }) // loss -= coef * mean entropy
          }
          // With more ranks the backward sums the gradients over the ranks as it goes.
          await microBatchBackward(policy.model, { gradLogp: pg!.grad, gradEntropy }, dp)
          part.policy = [pg!.loss * lossShare, pg!.clipFraction * tokenShare, pg!.approxKl * tokenShare, pg!.entropy! * tokenShare]

          // The value loss is taken on the value model's device (the policy's, unless the config puts them apart).
          const on = value.model.device
          const { valueLoss: vl } = await value.model.forward(tokens, {
            attentionMask: attention,
            train: true,
            logprobs: false,
            values: 'actions',
            onDevice: true,
            valueLoss: { oldValues: oldValues.to(on), returns: returns.to(on), mask: mbMask.to(on), clip: o.value_clip, gradScale: dp ? o.value_coef * tokenShare : o.value_coef },
          })
          valueGrad = vl!.grad
          part.value = [vl!.loss * tokenShare, vl!.clipFraction * tokenShare]
        }
        // A rank with no rows of this minibatch takes part in the sums at the same point.
        if (dp && !hasRows) await dp.allReduceGradients(policy.model)
        if (dp) part.policy = await dp.sum(part.policy)
        checkFinite(part.policy[0], 'the PPO policy loss', step)
        const step1 = await optimizerStep(policyOpt, config.optimizer, step * updatesPerStep + updates, totalUpdates)
        gradNorm = step1.gradNorm
        lr = step1.lr

        if (valueGrad) await microBatchBackward(value.model, { gradValues: valueGrad }, dp)
        if (dp && !hasRows) await dp.allReduceGradients(value.model)
        if (dp) part.value = await dp.sum(part.value)
        checkFinite(part.value[0], 'the PPO value loss', step)
        await optimizerStep(valueOpt, config.optimizer, step * updatesPerStep + updates, totalUpdates)

        m.policy_loss += part.policy[0]
        m.clip_fraction += part.policy[1]
        m.approx_kl += part.policy[2]
        m.entropy += part.policy[3]
        m.value_loss += part.value[0]
        m.value_clip_fraction += part.value[1]
        updates++
      }
    }
    for (const key of Object.keys(m) as (keyof typeof m)[]) m[key] /= updates

    // KL per sequence drives the adaptive controller.
    const sum = (k: number) => column(k).reduce((a, b) => a + b, 0)
    const klPerSeq = sum(KL) / n
    if (o.kl_target > 0) {
      const e = Math.max(-0.2, Math.min(0.2, klPerSeq / o.kl_target - 1))
      klCoef *= 1 + (e * n) / o.kl_horizon
    }
    const count = sum(TOKENS)
    const maskedMeanOf = (k: number) => (count > 0 ? sum(k) / count : 0)
    const variance = (k: number) => maskedMeanOf(k + 1) - maskedMeanOf(k) ** 2
    step++
    ctx.log(
      step,
      {
        score: rawScore,
        reward: sum(REWARD) / n,
        kl: klPerSeq,
        kl_coef: klCoef,
        ...m,
        ...scoreMetrics,
        value_explained_variance: 1 - variance(RESIDUAL) / Math.max(variance(RETURN), 1e-8),
        response_length: meanOf(lengths),
        eos_fraction: meanOf(column(STOPPED)),
        grad_norm: gradNorm,
        lr,
      },
      { tokens: lengths.reduce((a, b) => a + b, 0), totalSteps: steps },
    )
    if (evalRows.length > 0 && (step % config.training.eval_every === 0 || step === steps)) lastEval = await heldOut()
    await ctx.afterStep(() => ({ step, order: order.state(), kl_coef: klCoef, moments: [moments.count, moments.mean, moments.m2] }))
  }
  const model = await ctx.saveModel(policy.model, policy.tokenizer, policy.tokenizerSource)
  await ctx.saveModel(value.model, value.tokenizer, value.tokenizerSource, 'value_model')
  return { model, metrics: { steps: step, kl_coef: klCoef, ...lastEval } }
}
