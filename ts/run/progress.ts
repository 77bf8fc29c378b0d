// Progress of a run: a bar redrawn on one line of a terminal (at most every
// 100 ms), or plain lines every N steps when the output is a file or a pipe.
// Both show the same facts: step/total, percentage, tokens/s, ETA, key metrics.
import { checkKeys, choiceOption, describe, numberOption, rangedOption } from '../util/options.js'

export type ProgressMode = 'auto' | 'bar' | 'lines' | 'none'

/** Where progress goes: process.stderr, or anything with write() (tests). */
export interface ProgressStream {
  write(text: string): unknown
  isTTY?: boolean
  columns?: number
}

export interface ProgressOptions {
  /** Steps in the run; without it there is no percentage or ETA. */
  total?: number
  /** 'auto': a bar on a terminal, lines otherwise. Default 'auto'. */
  mode?: ProgressMode
  /** Default process.stderr. */
  stream?: ProgressStream
  /** Lines mode: one line every this many steps. Default: a twentieth of total, or 10. */
  every?: number
  /** The step a resumed run starts from (rates and ETA count from it). Default 0. */
  start?: number
  /** Shown first, e.g. the algorithm. */
  label?: string
  /** The metrics shown, in order; default: every metric given to update(). */
  metrics?: string[]
  /**
   * An ETA for more than this progress (a pipeline's): given the seconds this
   * progress is expected to take in all, returns a label and the seconds
   * expected after it ends; shown as `<label> ETA ...`.
   */
  overall?: (projectedSeconds: number) => { label: string; secondsAfter: number } | undefined
  /** Clock in ms (tests). Default Date.now. */
  now?: () => number
}

export interface ProgressUpdate {
  /** Tokens processed since the last update (for tokens/s). */
  tokens?: number
  metrics?: Readonly<Record<string, number>>
}

const REDRAW_MS = 100

export class Progress {
  readonly mode: 'bar' | 'lines' | 'none'
  readonly #stream: ProgressStream
  #total: number
  #every: number
  readonly #everyGiven: boolean
  readonly #overall: ProgressOptions['overall']
  readonly #start: number
  readonly #label: string
  readonly #shown: string[] | undefined
  readonly #now: () => number
  readonly #startTime: number
  #step: number
  #tokens = 0
  #metrics: Readonly<Record<string, number>> = {}
  #lastDraw = -Infinity
  #lastLineStep = -1
  #barVisible = false

  constructor(options: ProgressOptions = {}) {
    const where = 'Progress'
    checkKeys(where, options, ['total', 'mode', 'stream', 'every', 'start', 'label', 'metrics', 'now', 'overall'])
    this.#stream = options.stream ?? process.stderr
    const mode = choiceOption(where, 'mode', options.mode, ['auto', 'bar', 'lines', 'none'] as const, 'auto')
    this.mode = mode === 'auto' ? (this.#stream.isTTY ? 'bar' : 'lines') : mode
    this.#total = rangedOption(where, 'total', options.total, 0, { integer: true, min: 0 })
    this.#everyGiven = options.every !== undefined
    this.#every = rangedOption(where, 'every', options.every, defaultEvery(this.#total), { integer: true, min: 1 })
    if (!(this.#every >= 1)) throw new RangeError(`${where}: every must be at least 1; got ${describe(options.every)}`)
    if (options.overall !== undefined && typeof options.overall !== 'function') throw new TypeError(`${where}: overall must be a function; got ${describe(options.overall)}`)
    this.#overall = options.overall
    this.#start = this.#step = numberOption(where, 'start', options.start, 0)
    this.#label = options.label ?? ''
    this.#shown = options.metrics
    this.#now = options.now ?? Date.now
    this.#startTime = this.#now()
  }

  /** The number of steps, when it becomes known (or changes) after the progress began. */
  setTotal(total: number): void {
    if (typeof total !== 'number' || !Number.isInteger(total) || total < 0) throw new RangeError(`Progress.setTotal: total must be a non-negative integer; got ${describe(total)}`)
    this.#total = total
    if (!this.#everyGiven) this.#every = defaultEvery(this.#total)
  }

  /** Reports that `step` is done. */
  update(step: number, info: ProgressUpdate = {}): void {
    checkKeys('Progress.update', info, ['tokens', 'metrics'])
    if (typeof step !== 'number' || !Number.isInteger(step) || step < 0) throw new RangeError(`Progress.update: step must be a non-negative integer; got ${describe(step)}`)
    if (info.tokens !== undefined && !(typeof info.tokens === 'number' && Number.isFinite(info.tokens) && info.tokens >= 0)) throw new RangeError(`Progress.update: tokens must be a finite number >= 0; got ${describe(info.tokens)}`)
    this.#step = step
    this.#tokens += info.tokens ?? 0
    if (info.metrics) this.#metrics = info.metrics
    const last = this.#total > 0 && step >= this.#total
    if (this.mode === 'bar' && (last || this.#now() - this.#lastDraw >= REDRAW_MS)) this.#drawBar()
    if (this.mode === 'lines' && (last || step % this.#every === 0)) this.#writeLine()
  }

  /** Writes a message on its own line (the bar is redrawn under it). */
  log(message: string): void {
    if (this.mode === 'none') return
    this.#stream.write(`${this.#barVisible ? '\r\x1b[K' : ''}${message}\n`)
    if (this.#barVisible) this.#drawBar()
  }

  /** Ends the bar's line, or writes the last line if it was not written. */
  done(): void {
    if (this.mode === 'bar' && this.#barVisible) {
      this.#drawBar()
      this.#stream.write('\n')
      this.#barVisible = false
    }
    if (this.mode === 'lines' && this.#lastLineStep !== this.#step) this.#writeLine()
  }

  /** step/total, percentage, tokens/s, ETA, metrics. */
  #facts(): string[] {
    const elapsed = (this.#now() - this.#startTime) / 1000
    const done = this.#step - this.#start
    const facts = [this.#total > 0 ? `${this.#step}/${this.#total}` : `${this.#step}`]
    if (this.#total > 0) facts.push(`${Math.floor((100 * this.#step) / this.#total)}%`)
    if (this.#tokens > 0 && elapsed > 0) facts.push(`${formatRate(this.#tokens / elapsed)} tok/s`)
    if (this.#total > 0 && done > 0 && elapsed > 0) {
      const left = (Math.max(0, this.#total - this.#step) * elapsed) / done
      facts.push(`ETA ${formatDuration(left)}`)
      const overall = this.#overall?.(elapsed + left)
      if (overall) facts.push(`${overall.label} ETA ${formatDuration(left + overall.secondsAfter)}`)
    }
    for (const name of this.#shown ?? Object.keys(this.#metrics)) {
      if (name in this.#metrics) facts.push(`${name} ${formatNumber(this.#metrics[name])}`)
    }
    return facts
  }

  #writeLine(): void {
    const prefix = this.#label ? `${this.#label} ` : ''
    this.#stream.write(`${prefix}step ${this.#facts().join('  ')}\n`)
    this.#lastLineStep = this.#step
  }

  #drawBar(): void {
    const columns = this.#stream.columns ?? 80
    const text = this.#facts().join('  ')
    const prefix = this.#label ? `${this.#label} ` : ''
    let line = prefix + text
    if (this.#total > 0) {
      const width = Math.max(10, Math.min(40, columns - line.length - 4))
      const filled = Math.round((width * Math.min(this.#step, this.#total)) / this.#total)
      line = `${prefix}[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${text}`
    }
    // Never wider than the terminal: a wrapped line cannot be redrawn in place.
    this.#stream.write(`\r${line.slice(0, Math.max(1, columns - 1))}\x1b[K`)
    this.#lastDraw = this.#now()
    this.#barVisible = true
  }
}

/** Lines mode: a line every twentieth of the run, or every 10 steps when the total is unknown. */
function defaultEvery(total: number): number {
  return total > 0 ? Math.max(1, Math.round(total / 20)) : 10
}

function formatNumber(x: number): string {
  if (!Number.isFinite(x) || x === 0) return String(x)
  const a = Math.abs(x)
  return a >= 1e5 || a < 1e-3 ? x.toExponential(2) : String(Number(x.toPrecision(4)))
}

function formatRate(x: number): string {
  return x >= 1e6 ? `${(x / 1e6).toFixed(2)}M` : x >= 1e3 ? `${(x / 1e3).toFixed(1)}k` : x.toFixed(0)
}

/** 12s, 3m05s, 2h07m. */
function formatDuration(seconds: number): string {
  const s = Math.round(seconds)
  const two = (n: number) => String(n).padStart(2, '0')
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`
  return `${Math.floor(s / 3600)}h${two(Math.floor((s % 3600) / 60))}m`
}
