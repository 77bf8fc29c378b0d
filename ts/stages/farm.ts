// The farm's world as files: SFT demonstrations, preference and unlabelled
// instructions, and held-out evaluation instructions with fixed references
// (`${farm.sft}`, `${farm.preference}`, `${farm.unlabelled}`, `${farm.eval}`
// in a pipeline).
import { makeSplits, writeSplits } from '../farm/farm.js'
import { FAMILIES } from '../farm/families.js'
import type { StageResult, TrainerContext } from '../training/context.js'

export async function makeFarm(ctx: TrainerContext): Promise<StageResult> {
  const f = ctx.config.farm
  const accuracy = Object.fromEntries(FAMILIES.map((family) => [family.name, f.demonstrator_accuracy]))
  const splits = makeSplits(
    ctx.config.seed,
    { sft: f.sft_size, preference: f.preference_size, unlabelled: f.unlabelled_size, eval: f.eval_size, validation: f.validation_size },
    { accuracy, chatter: f.chatter, format: f.format },
  )
  const files = writeSplits(ctx.runDir, splits)
  const validation = splits.validation?.length ?? 0
  ctx.note(
    `farm: ${splits.sft.length} demonstrations, ${splits.preference.length} preference and ${splits.unlabelled.length} unlabelled instructions, ${splits.eval.length} for evaluation` +
      (validation ? `, ${validation} for choosing hyper-parameters` : ''),
  )
  return {
    files: { ...files },
    metrics: { sft: splits.sft.length, preference: splits.preference.length, unlabelled: splits.unlabelled.length, eval: splits.eval.length, ...(validation ? { validation } : {}) },
  }
}
