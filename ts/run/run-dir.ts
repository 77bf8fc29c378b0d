// A run's directory, <outputDir>/<name>:
//   config.yaml              the run's configuration (written by the caller)
//   run.json                 status: running/finished/failed/interrupted, last step, error
//   metrics.jsonl            one record per logged step
//   events.out.tfevents.*    the same metrics for TensorBoard
//   checkpoints/step-000123/ checkpoints (see checkpoint.ts)
//   model/                   the final model
//   outputs.jsonl            samples, when a stage writes them
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { writeFileAtomic } from '../util/fs.js'
import { parseJson } from '../util/json.js'
import { booleanOption, checkKeys, choiceOption, describe } from '../util/options.js'
import { checkpointPath, latestCheckpoint } from './checkpoint.js'
import { MetricsLogger, type MetricsLoggerOptions } from './metrics.js'

export type RunState = 'running' | 'finished' | 'failed' | 'interrupted'
const STATES: readonly RunState[] = ['running', 'finished', 'failed', 'interrupted']

/** The contents of run.json. */
export interface RunStatus {
  name: string
  algorithm?: string
  state: RunState
  /** The last step the run reported. */
  step: number
  /** Why the run failed (state 'failed'). */
  error?: string
  startedAt: string
  /** Set when a run was resumed. */
  resumedAt?: string
  updatedAt: string
  host: string
  pid: number
}

export interface RunDirectoryOptions {
  /** The directory's name. Default: `<algorithm>-<yyyymmdd-hhmmss>` (local time). */
  name?: string
  /** What the run trains ('ppo', 'dpo'...), for the default name and run.json. */
  algorithm?: string
  /** Continue the existing run `name` instead of refusing a non-empty directory (a run not begun begins). Default false. */
  resume?: boolean
  /** Start the run `name` again from scratch: an existing run directory of that name is emptied first. Default false. */
  overwrite?: boolean
  /** Clock (tests). Default: new Date(). */
  now?: () => Date
}

export interface RunUpdate {
  state?: RunState
  step?: number
  /** The error that ended the run; its message goes into run.json. */
  error?: unknown
}

export class RunDirectory {
  /** The run's directory. */
  readonly path: string
  readonly name: string
  /** True when create() continued an existing run. */
  readonly resumed: boolean
  readonly #now: () => Date

  private constructor(dir: string, name: string, resumed: boolean, now: () => Date) {
    this.path = dir
    this.name = name
    this.resumed = resumed
    this.#now = now
  }

  /**
   * Makes <outputDir>/<name> and marks the run as running in run.json. A
   * non-empty directory is refused unless `resume` is set, which needs an
   * existing run directory, or `overwrite`, which empties a run directory
   * first; one whose run ended before step 1 with no checkpoint is reused.
   */
  static create(outputDir: string, options: RunDirectoryOptions = {}): RunDirectory {
    const where = 'RunDirectory.create'
    checkKeys(where, options, ['name', 'algorithm', 'resume', 'overwrite', 'now'])
    const now = options.now ?? (() => new Date())
    const resume = booleanOption(where, 'resume', options.resume, false)
    const overwrite = booleanOption(where, 'overwrite', options.overwrite, false)
    if (resume && overwrite) throw new TypeError(`${where}: resume and overwrite exclude each other (continue the run, or start it again)`)
    const algorithm = options.algorithm
    if (algorithm !== undefined && (typeof algorithm !== 'string' || !isRunName(algorithm))) {
      throw new TypeError(`${where}: algorithm must be a plain name; got ${describe(algorithm)}`)
    }
    if (options.name !== undefined && (typeof options.name !== 'string' || !isRunName(options.name))) {
      throw new TypeError(`${where}: name must be a directory name (not empty, no '/', not '.' or '..'); got ${describe(options.name)}`)
    }
    if (resume && options.name === undefined) throw new TypeError(`${where}: resume needs the name of the run to continue`)

    let name = options.name ?? `${algorithm ?? 'run'}-${timestamp(now())}`
    if (options.name === undefined) {
      // Default names that collide (two runs in one second) get a suffix; a chosen name is an error.
      const base = name
      for (let n = 2; !isEmptyOrMissing(path.join(outputDir, name)); n++) name = `${base}-${n}`
    }
    const dir = path.join(outputDir, name)
    // Resuming a run that has not begun (no directory, or an empty one) begins it: "run or continue".
    if (resume && (fs.existsSync(path.join(dir, 'run.json')) || !isEmptyOrMissing(dir))) {
      if (!fs.existsSync(path.join(dir, 'run.json'))) throw new Error(`${where}: cannot resume ${dir}: it is not a run directory (no run.json)`)
      const run = new RunDirectory(dir, name, true, now)
      const stamp = now().toISOString()
      run.#write({ ...run.status(), state: 'running', error: undefined, resumedAt: stamp, updatedAt: stamp, host: os.hostname(), pid: process.pid })
      return run
    }
    if (!isEmptyOrMissing(dir)) {
      const existing = existingRun(dir)
      if (existing === undefined) throw new Error(`${where}: ${dir} already exists and is not a run directory (no run.json); choose another name (--name NEW) or output directory`)
      if (existing.active) throw new Error(`${where}: ${dir} holds ${existing.description}; wait for it to end, or use another --name`)
      // A run that never got past step 0 left nothing worth keeping; --overwrite says the rest may go.
      if (!overwrite && !existing.reusable) throw new Error(`${where}: ${runExistsMessage(dir, existing.description)}`)
      emptyDirectory(dir, where)
    }
    try {
      fs.mkdirSync(dir, { recursive: true })
    } catch (err) {
      throw new Error(`${where}: cannot create ${dir}: ${(err as Error).message}`, { cause: err })
    }
    const run = new RunDirectory(dir, name, false, now)
    const stamp = now().toISOString()
    run.#write({ name, algorithm, state: 'running', step: 0, startedAt: stamp, updatedAt: stamp, host: os.hostname(), pid: process.pid })
    return run
  }

  get configFile(): string {
    return path.join(this.path, 'config.yaml')
  }
  get statusFile(): string {
    return path.join(this.path, 'run.json')
  }
  get metricsFile(): string {
    return path.join(this.path, 'metrics.jsonl')
  }
  get checkpointsDir(): string {
    return path.join(this.path, 'checkpoints')
  }
  get modelDir(): string {
    return path.join(this.path, 'model')
  }
  get outputsFile(): string {
    return path.join(this.path, 'outputs.jsonl')
  }

  /** checkpoints/step-000123. */
  checkpointDir(step: number): string {
    return checkpointPath(this.path, step)
  }

  /** The newest complete checkpoint, or undefined. */
  latestCheckpoint(): string | undefined {
    return latestCheckpoint(this.path)
  }

  /** Writes config.yaml (atomically). */
  writeConfig(text: string): void {
    writeFileAtomic(this.configFile, text)
  }

  /** A MetricsLogger writing metrics.jsonl and TensorBoard events here. */
  metrics(options: MetricsLoggerOptions = {}): MetricsLogger {
    return new MetricsLogger(this.path, options)
  }

  /** Appends records to outputs.jsonl, one JSON object a line, all in one write. */
  appendOutputs(records: readonly object[]): void {
    const text = records.map((r) => `${JSON.stringify(r)}\n`).join('')
    try {
      fs.appendFileSync(this.outputsFile, text)
    } catch (err) {
      throw new Error(`cannot write ${this.outputsFile}: ${(err as Error).message}`, { cause: err })
    }
  }

  /** run.json as it stands. */
  status(): RunStatus {
    let text: string
    try {
      text = fs.readFileSync(this.statusFile, 'utf8')
    } catch (err) {
      throw new Error(`cannot read ${this.statusFile}: ${(err as Error).message}`, { cause: err })
    }
    const status = parseJson(text, this.statusFile) as RunStatus
    if (!STATES.includes(status?.state) || !Number.isSafeInteger(status.step)) {
      throw new Error(`${this.statusFile}: not a run status (expected state ${STATES.join('/')} and an integer step)`)
    }
    return status
  }

  /** Updates run.json atomically: the step reached, the state, the error that ended the run. */
  update(patch: RunUpdate): RunStatus {
    const where = 'RunDirectory.update'
    checkKeys(where, patch, ['state', 'step', 'error'])
    const current = this.status()
    const next: RunStatus = { ...current, updatedAt: this.#now().toISOString() }
    if (patch.state !== undefined) next.state = choiceOption(where, 'state', patch.state, STATES, current.state)
    if (patch.step !== undefined) {
      if (!Number.isSafeInteger(patch.step) || patch.step < 0) throw new TypeError(`${where}: step must be a non-negative integer; got ${describe(patch.step)}`)
      next.step = patch.step
    }
    if (patch.error !== undefined) next.error = patch.error instanceof Error ? patch.error.message : String(patch.error)
    this.#write(next)
    return next
  }

  #write(status: RunStatus): void {
    const text = `${JSON.stringify(status, null, 2)}\n`
    try {
      writeFileAtomic(this.statusFile, text)
    } catch (err) {
      // A full disk cannot take the temporary file, but run.json's own blocks can take its new
      // contents: rewritten in place, a run that fails for want of space still ends 'failed', not 'running'.
      try {
        overwriteInPlace(this.statusFile, text)
      } catch (again) {
        throw new Error(`${(err as Error).message}; rewriting it in place failed too: ${(again as Error).message}`, { cause: err })
      }
    }
  }
}

/** Rewrites an existing file's contents in place (no new file, so no new directory entry or inode), synced. */
function overwriteInPlace(file: string, text: string): void {
  const bytes = Buffer.from(text)
  const fd = fs.openSync(file, 'r+')
  try {
    fs.writeSync(fd, bytes, 0, bytes.length, 0)
    fs.ftruncateSync(fd, bytes.length)
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}

/** What is in an existing run directory: its state, and whether a new run may simply take its place. */
export interface ExistingRun {
  /** "a finished run (step 40)", "a failed run (step 0)". */
  description: string
  state: RunState | undefined
  step: number
  /** True for a run that ended (or died) before step 1 and left no checkpoint. */
  reusable: boolean
  /** True while the process that runs it is alive on this host. */
  active: boolean
}

/** Reads dir/run.json; undefined when there is none (not a run directory). */
export function existingRun(dir: string): ExistingRun | undefined {
  const file = path.join(dir, 'run.json')
  if (!fs.existsSync(file)) return undefined
  let status: Partial<RunStatus> | undefined
  try {
    status = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<RunStatus>
  } catch {
    status = undefined
  }
  const state = status && STATES.includes(status.state as RunState) ? (status.state as RunState) : undefined
  const step = Number.isSafeInteger(status?.step) ? status!.step! : 0
  const active = state === 'running' && status!.host === os.hostname() && processAlive(status!.pid)
  const ended = state === 'failed' || state === 'interrupted' || (state === 'running' && !active)
  const reusable = ended && step === 0 && latestCheckpoint(dir) === undefined
  const what = state === 'running' ? (active ? `a run still running (pid ${status!.pid})` : 'a run that stopped without saying so') : state ? `${state === 'interrupted' ? 'an' : 'a'} ${state} run` : 'a run whose run.json cannot be read'
  return { description: `${what} (step ${step})`, state, step, reusable, active }
}

/** The refusal for a run directory that holds a run worth keeping, with the three ways on. */
export function runExistsMessage(dir: string, description: string): string {
  return (
    `${dir} already exists: ${description}. To go on: --resume continues it from its last checkpoint, ` +
    '--overwrite starts it again from scratch (deleting it), or --name NEW starts a new run beside it'
  )
}

function processAlive(pid: unknown): boolean {
  if (!Number.isSafeInteger(pid) || (pid as number) <= 0) return false
  try {
    process.kill(pid as number, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Removes what a directory holds, keeping the directory. */
/**
 * Deletes what a run's (or pipeline's) directory holds, for --overwrite. A
 * directory that is a symbolic link is refused: its files are elsewhere, and
 * may be another run's. `where` starts the error.
 */
export function emptyDirectory(dir: string, where: string): void {
  if (fs.lstatSync(dir).isSymbolicLink()) {
    throw new Error(`${where}: ${dir} is a symbolic link to ${fs.realpathSync(dir)}; its files are not deleted through a link (remove the link, or choose another --name)`)
  }
  for (const entry of fs.readdirSync(dir)) fs.rmSync(path.join(dir, entry), { recursive: true, force: true })
}

/** A run or stage name: one directory name (not empty, no separator or NUL, not '.' or '..'). */
export function isRunName(name: string): boolean {
  return name.length > 0 && name !== '.' && name !== '..' && !/[/\\\0]/.test(name)
}

function isEmptyOrMissing(dir: string): boolean {
  try {
    return fs.readdirSync(dir).length === 0
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true
    throw new Error(`cannot use ${dir} as a run directory: ${(err as Error).message}`, { cause: err })
  }
}

/** yyyymmdd-hhmmss in local time. */
function timestamp(date: Date): string {
  const two = (n: number) => String(n).padStart(2, '0')
  return `${date.getFullYear()}${two(date.getMonth() + 1)}${two(date.getDate())}-${two(date.getHours())}${two(date.getMinutes())}${two(date.getSeconds())}`
}
