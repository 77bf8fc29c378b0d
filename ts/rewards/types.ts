// Rewards written as code: the batch a reward function is called with, and
// what it returns. One call per batch of completions.

/** What a reward function is called with, once per batch. */
export interface RewardBatch {
  /** The prompt of each completion (a chat's last user message). */
  prompts: string[]
  /** The completions' texts (special tokens left out). */
  completions: string[]
  /** The completions' token ids (stop token included). */
  completionIds: number[][]
  /** The dataset row of each completion, with all its columns (e.g. a math item's `answer`). */
  rows: Record<string, unknown>[]
  /** The trainer's step (0 before the first update). */
  step: number
}

/** One number per completion; null: not applicable to that row (left out of the weighted sum, as TRL's None). */
export type RewardValues = (number | null)[]

/** A reward function: `args` is the config's `args` mapping ({} when none). */
export type RewardFn = (batch: RewardBatch, args: Record<string, unknown>) => RewardValues | Promise<RewardValues>
