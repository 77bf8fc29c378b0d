// What a trainer reads and in what order: rows of a data file, a seeded
// evaluation split, batches in a resumable seeded order, and how many steps
// the data gives.
import type { DataConfig, RunConfig } from '../config/types.generated.js'
import { ConfigError } from '../config/errors.js'
import { readDataset, type Binarize, type DataFormat } from '../data/formats.js'
import { parsePromptRow, type PromptExample, type RowRules } from '../data/examples.js'
import { Rng, type RngState } from '../util/rng.js'
import type { TrainerContext } from './context.js'

/** Reads a file of rows (JSONL or Parquet, in data.format's shape); reports skipped rows through `note`. */
export async function readRows<T>(
  file: string | undefined,
  what: string,
  parse: (value: unknown, rules: RowRules) => T,
  data: DataConfig,
  note: (message: string) => void,
): Promise<T[]> {
  if (!file) throw new ConfigError([{ path: `data.${what}`, message: 'is required for this algorithm' }])
  const result = await readDataset(file, parse, {
    format: data.format as DataFormat,
    binarize: data.binarize as Binarize,
    onBadRow: data.on_bad_row,
    maxRowBytes: data.max_row_bytes,
    allowSpecialFiles: data.allow_special_files,
    checkText: data.check_text,
  })
  if (result.skipped > 0) note(`${file}: skipped ${result.skipped} bad rows (first: ${result.skippedReasons[0]})`)
  if (result.rows.length === 0) throw new Error(`${file}: no usable rows`)
  return result.rows
}

/** The prompts a sampling trainer reads: data.prompts, else data.train (rows keep their other fields). */
export function readPrompts(ctx: TrainerContext, file = ctx.config.data.prompts ?? ctx.config.data.train): Promise<PromptExample[]> {
  return readRows(file, 'prompts', parsePromptRow, ctx.config.data, (m) => ctx.note(m))
}

/** Splits off `evalSize` rows for evaluation when no eval file is given (seeded). */
export function splitEval<T>(rows: T[], evalSize: number, rng: Rng): { train: T[]; eval: T[] } {
  if (evalSize <= 0) return { train: rows, eval: [] }
  if (evalSize >= rows.length) throw new Error(`data.eval_size (${evalSize}) must be smaller than the ${rows.length} training rows`)
  const order = rows.map((_, i) => i)
  rng.shuffle(order)
  const held = new Set(order.slice(0, evalSize))
  return { train: rows.filter((_, i) => !held.has(i)), eval: rows.filter((_, i) => held.has(i)) }
}

/**
 * Batches of row indices in a seeded order, epoch after epoch, resumable: the
 * state is the epoch, the position in it, and the RNG state at its start. It
 * owns its RNG, so restoring the order leaves the trainer's RNG alone.
 */
export class EpochBatches {
  readonly #rng: Rng
  #order: number[] = []
  #epoch = 0
  #position = 0
  #epochStart: RngState

  constructor(
    readonly size: number,
    readonly batchSize: number,
    seed: number,
    state?: { epoch: number; position: number; rng: RngState },
  ) {
    if (size === 0) throw new Error('no rows to train on')
    this.#rng = new Rng(seed)
    this.#epochStart = this.#rng.state()
    if (state) {
      this.#rng.restore(state.rng)
      this.#startEpoch(state.epoch)
      this.#position = state.position
    } else {
      this.#startEpoch(0)
    }
  }

  #startEpoch(epoch: number): void {
    this.#epoch = epoch
    this.#position = 0
    this.#epochStart = this.#rng.state()
    this.#order = Array.from({ length: this.size }, (_, i) => i)
    this.#rng.shuffle(this.#order)
  }

  get epoch(): number {
    return this.#epoch
  }

  /** The next batch (a short one ends an epoch; the next call starts another). */
  next(): number[] {
    if (this.#position >= this.size) this.#startEpoch(this.#epoch + 1)
    const batch = this.#order.slice(this.#position, this.#position + this.batchSize)
    this.#position += batch.length
    return batch
  }

  state(): { epoch: number; position: number; rng: RngState } {
    return { epoch: this.#epoch, position: this.#position, rng: this.#epochStart }
  }
}

/** Optimizer steps for a run: max_steps, or the epochs' worth of batches. */
export function totalSteps(config: RunConfig, rows: number): number {
  const perStep = config.training.batch_size * config.training.gradient_accumulation
  const fromEpochs = Math.ceil(rows / perStep) * config.training.epochs
  return config.training.max_steps > 0 ? config.training.max_steps : fromEpochs
}

/** Rollout steps of an on-policy trainer: max_steps, or the epochs' worth of prompt batches. */
export function rolloutSteps(config: RunConfig, prompts: number): number {
  return config.training.max_steps > 0 ? config.training.max_steps : Math.ceil(prompts / config.training.batch_size) * config.training.epochs
}
