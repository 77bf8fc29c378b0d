// Training metrics, one record per logged step, to metrics.jsonl and to a
// TensorBoard event file. JSON has no NaN or Infinity: such values are written
// as null and named in the record's `nonfinite` list; TensorBoard skips them.
import fs from 'node:fs'
import path from 'node:path'
import { AppendFile, writeFileAtomic } from '../util/fs.js'
import { booleanOption, checkKeys, describe, numberOption } from '../util/options.js'
import { TensorBoardWriter } from './tensorboard.js'

export interface MetricsLoggerOptions {
  /** Write metrics.jsonl. Default true. */
  jsonl?: boolean
  /** Write an events.out.tfevents.* file. Default true. */
  tensorboard?: boolean
  /**
   * The step a resumed run continues from: records of later steps (logged
   * after that checkpoint by the interrupted run) are dropped from metrics.jsonl.
   */
  resumeStep?: number
  /** Write buffered records when a new one comes this long (ms) after the last write. Default 2000. */
  flushMs?: number
  /** Clock in ms since the epoch (tests). Default Date.now. */
  now?: () => number
}

const RESERVED = ['step', 'time', 'nonfinite']

export class MetricsLogger {
  /** metrics.jsonl, when written. */
  readonly jsonlPath: string | undefined
  /** The TensorBoard event file, when written. */
  readonly tensorboardPath: string | undefined
  readonly #jsonl: AppendFile | undefined
  readonly #tensorboard: TensorBoardWriter | undefined
  readonly #now: () => number

  /** Logs into `dir` (a run directory), appending to an existing metrics.jsonl. */
  constructor(dir: string, options: MetricsLoggerOptions = {}) {
    const where = 'MetricsLogger'
    checkKeys(where, options, ['jsonl', 'tensorboard', 'resumeStep', 'flushMs', 'now'])
    this.#now = options.now ?? Date.now
    const flushMs = numberOption(where, 'flushMs', options.flushMs, 2000)
    if (booleanOption(where, 'jsonl', options.jsonl, true)) {
      this.jsonlPath = path.join(dir, 'metrics.jsonl')
      if (options.resumeStep !== undefined) dropRecordsAfter(this.jsonlPath, numberOption(where, 'resumeStep', options.resumeStep, 0))
      this.#jsonl = new AppendFile(this.jsonlPath, { flushMs, now: this.#now })
    }
    if (booleanOption(where, 'tensorboard', options.tensorboard, true)) {
      this.#tensorboard = new TensorBoardWriter(dir, { flushMs, now: this.#now })
      this.tensorboardPath = this.#tensorboard.path
    }
  }

  /** Records `metrics` at `step` (buffered: written by flush(), close() or after the flush interval). */
  log(step: number, metrics: Readonly<Record<string, number>>): void {
    if (!Number.isSafeInteger(step) || step < 0) throw new TypeError(`MetricsLogger.log: step must be a non-negative integer; got ${describe(step)}`)
    const record: Record<string, unknown> = { step, time: this.#now() / 1000 }
    const finite: Record<string, number> = {}
    const nonfinite: string[] = []
    for (const [name, value] of Object.entries(metrics)) {
      if (RESERVED.includes(name)) throw new TypeError(`MetricsLogger.log: '${name}' is a reserved field of the record; rename the metric`)
      if (typeof value !== 'number') throw new TypeError(`MetricsLogger.log: metric '${name}' must be a number; got ${describe(value)}`)
      if (Number.isFinite(value)) {
        record[name] = finite[name] = value
      } else {
        record[name] = null
        nonfinite.push(name)
      }
    }
    if (nonfinite.length > 0) record.nonfinite = nonfinite
    this.#jsonl?.append(`${JSON.stringify(record)}\n`)
    this.#tensorboard?.scalars(finite, step)
  }

  flush(): void {
    this.#jsonl?.flush()
    this.#tensorboard?.flush()
  }

  close(): void {
    try {
      this.#jsonl?.close()
    } finally {
      this.#tensorboard?.close()
    }
  }
}

/** Rewrites a JSONL file (atomically) without the records whose step is after `step`, and without a torn last line. */
function dropRecordsAfter(file: string, step: number): void {
  if (!fs.existsSync(file)) return
  const text = fs.readFileSync(file, 'utf8')
  const kept = text.split('\n').filter((line) => {
    try {
      return (JSON.parse(line) as { step?: number }).step! <= step
    } catch {
      return false // empty, or cut short by a crash
    }
  })
  const rewritten = kept.map((line) => `${line}\n`).join('')
  if (rewritten !== text) writeFileAtomic(file, rewritten)
}
