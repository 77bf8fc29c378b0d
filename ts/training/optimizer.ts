// The optimizer a config names (AdamW) and its learning-rate schedule.
import type { OptimizerConfig } from '../config/types.generated.js'
import type { Model } from '../model/model.js'
import { AdamW, learningRate } from '../model/optim.js'

// A trainer's gradients are zero when its optimizer is made and after each of
// its steps (the step clears them in the same native call), so a training loop
// only accumulates: it never calls zeroGrad itself.
export function makeOptimizer(model: Model, o: OptimizerConfig): AdamW {
  model.zeroGrad()
  return new AdamW(model, { lr: o.lr, betas: [o.beta1, o.beta2], eps: o.eps, weightDecay: o.weight_decay })
}

/** One AdamW step at the schedule's learning rate for `step` (0-based); it leaves the gradients at zero. */
export async function optimizerStep(opt: AdamW, o: OptimizerConfig, step: number, total: number): Promise<{ gradNorm: number; lr: number }> {
  const lr = learningRate({ kind: o.schedule, lr: o.lr, warmupSteps: o.warmup_steps, totalSteps: Math.max(total, o.warmup_steps + 1), minLr: o.min_lr }, step)
  return opt.step({ lr, maxGradNorm: o.max_grad_norm, zeroGrad: true })
}
