// Reward modelling (Bradley-Terry): a scalar head read at each sequence's last
// token, trained so that r(chosen) > r(rejected): loss -log sigmoid(r_c - r_r -
// margin) + center_coef mean((r_c + r_r)^2). Held-out accuracy is the share
// of pairs ranked right.
import { dataParallel } from '../distributed/data-parallel.js'
import { checkFinite, type StageResult, type TrainerContext } from '../training/context.js'
import { EpochBatches, totalSteps } from '../training/data-order.js'
import { encoderFor, loadModelSpec, padIdOf } from '../training/models.js'
import { makeOptimizer, optimizerStep } from '../training/optimizer.js'
import { goldAccuracyMetrics, pairAccuracy, preferenceSplit, rewardStep } from '../training/preference-pairs.js'

export async function trainReward(ctx: TrainerContext): Promise<StageResult> {
  const { config } = ctx
  const rm = await loadModelSpec(config.policy, 'policy', { scalarHead: true, seed: config.seed })
  const encoder = encoderFor(rm.tokenizer, config.data, rm.model)
  const pad = padIdOf(rm.tokenizer)
  const split = await preferenceSplit(ctx)

  const opt = makeOptimizer(rm.model, config.optimizer)
  await ctx.track({ models: { reward_model: rm.model }, optimizers: { reward_model: opt } })
  const order = new EpochBatches(split.train.length, config.training.batch_size, config.seed + 101, ctx.resumed?.order as never)
  const steps = totalSteps(config, split.train.length)
  const batchSize = config.training.batch_size
  let step = ctx.resumed?.step ?? 0
  const dp = dataParallel()
  const baseline = split.eval.length > 0 && step === 0 ? await pairAccuracy(rm.model, split.eval, encoder, pad, batchSize) : undefined
  if (baseline) ctx.log(0, { eval_accuracy: baseline.accuracy, eval_margin: baseline.margin }, { phase: 'eval' })

  while (step < steps && !ctx.stopRequested()) {
    const chunks = Array.from({ length: config.training.gradient_accumulation }, () => order.next().map((i) => split.train[i]))
    const { loss, accuracy } = await rewardStep(rm.model, chunks, encoder, pad, config.reward, dp)
    checkFinite(loss, 'the reward-model loss', step)
    const { gradNorm, lr } = await optimizerStep(opt, config.optimizer, step, steps)
    step++
    const metrics: Record<string, number> = { loss, accuracy, grad_norm: gradNorm, lr, epoch: order.epoch }
    if (split.eval.length > 0 && config.training.eval_every > 0 && step % config.training.eval_every === 0) {
      const e = await pairAccuracy(rm.model, split.eval, encoder, pad, batchSize)
      metrics.eval_accuracy = e.accuracy
      metrics.eval_margin = e.margin
    }
    ctx.log(step, metrics, { totalSteps: steps })
    await ctx.afterStep(() => ({ step, order: order.state() }))
  }

  const metrics: Record<string, number> = { steps: step }
  if (split.eval.length > 0) {
    const e = await pairAccuracy(rm.model, split.eval, encoder, pad, batchSize)
    metrics.eval_accuracy = e.accuracy
    metrics.eval_margin = e.margin
    if (baseline) metrics.eval_accuracy_before = baseline.accuracy
    const gold = await goldAccuracyMetrics(rm.model, split.eval, encoder, pad, batchSize)
    for (const [k, v] of Object.entries(gold)) metrics[`eval_${k}`] = v
    ctx.log(step, { eval_accuracy: e.accuracy, eval_margin: e.margin, ...(gold.gold_pair_accuracy === undefined ? {} : { eval_gold_pair_accuracy: gold.gold_pair_accuracy }) }, { phase: 'eval' })
  }
  const model = await ctx.saveModel(rm.model, rm.tokenizer, rm.tokenizerSource)
  return { model, metrics }
}
