// RLOO (Ahmadian et al. 2024, "Back to Basics"): REINFORCE with a leave-one-out
// baseline over k samples per prompt, the KL to the reference folded into each
// sequence's reward:
//   r_i = score_i - beta * KL_i,   A_i = r_i - (sum_j r_j - r_i) / (k - 1)
// with PPO's clipped ratio against the sampling policy. The loop is GRPO's
// (grpo.ts) with this baseline: loss_type, the ratio level, num_iterations and
// dynamic sampling apply alike; the advantage is not scaled.
import type { StageResult, TrainerContext } from '../training/context.js'
import { trainGroupRl } from './grpo.js'

export function trainRloo(ctx: TrainerContext): Promise<StageResult> {
  return trainGroupRl(ctx, 'rloo')
}
