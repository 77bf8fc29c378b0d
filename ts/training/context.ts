// What every trainer gets from the run around it (ts/run/session.ts builds
// it): the resolved config, a seeded RNG, logging, stop requests, and
// checkpointing on a cadence. Trainers stay loops over the algorithm; the
// bookkeeping they share lives here and in the session.
import type { RunConfig } from '../config/types.generated.js'
import type { Model } from '../model/model.js'
import type { AdamW } from '../model/optim.js'
import type { Tokenizer } from '../tokenizers/index.js'
import type { Rng } from '../util/rng.js'
import type { RewardFn } from '../rewards/types.js'
import { NonFiniteError } from '../util/non-finite.js'

/** State a trainer needs to continue exactly where it stopped (JSON). */
export type TrainerState = Record<string, unknown> & { step: number }

export interface TrainerContext {
  readonly config: RunConfig
  /** Seeded from config.seed; its state is checkpointed with the trainer's. */
  readonly rng: Rng
  /** The run directory (outputs.jsonl, model/ ...). */
  readonly runDir: string
  /** Set when resuming: the state the last checkpoint saved. */
  readonly resumed?: TrainerState
  /** Records one step's metrics: JSONL, TensorBoard, the progress line, step events. */
  log(step: number, metrics: Record<string, number>, info?: { tokens?: number; totalSteps?: number; phase?: string }): void
  /** A message for the user (progress area and the run log). */
  note(message: string): void
  /** True once the run should stop (Ctrl-C, an AbortSignal): the trainer checkpoints and returns. */
  stopRequested(): boolean
  /** The models and optimizers a checkpoint saves and a resume restores (call once, before restoring). */
  track(parts: { models: Record<string, Model>; optimizers?: Record<string, AdamW> }): Promise<void>
  /** After an optimizer step: saves a checkpoint when the cadence (or a stop request) says so. */
  afterStep(state: () => TrainerState): Promise<void>
  /** Reward functions given to train({ rewards }), by the name a config's reward_function.name uses. */
  readonly rewards?: Readonly<Record<string, RewardFn>>
  /** Runs `cleanup` when the run ends, however it ends (worker threads of reward functions ...). */
  defer(cleanup: () => void | Promise<void>): void
  /** Writes a finished model (with its tokenizer) to the run's model/ directory; returns its path. */
  saveModel(model: Model, tokenizer: Tokenizer, tokenizerSource: string, name?: string): Promise<string>
}

// Raised when a loss or a gradient is not finite: the step is not applied and the run stops.
export { NonFiniteError }

export function checkFinite(value: number, what: string, step: number): number {
  if (!Number.isFinite(value)) throw new NonFiniteError(what, step)
  return value
}

/** What a stage leaves for the next one (a pipeline's ${stage} names `model`). */
export interface StageResult {
  /** The trained or chosen model directory, when the stage makes one. */
  model?: string
  /** Other files the stage wrote (outputs.jsonl ...). */
  files?: Record<string, string>
  /** Final metrics (eval accuracy, mean reward ...). */
  metrics: Record<string, number>
}
