// Checkpoints: <run>/checkpoints/step-000123/ holds each model as a Hugging
// Face directory (<name>/config.json + model.safetensors), each optimizer's
// moments (optimizer-<name>.safetensors: tensors m and v, the step in the
// metadata) and state.json (the step and the trainer's own state). It is
// written in a temporary directory beside the final one and renamed into
// place, so a checkpoint directory either exists complete or not at all.
import fs from 'node:fs'
import path from 'node:path'
import type { Model } from '../model/model.js'
import type { AdamW } from '../model/optim.js'
import { SafetensorsFile, writeSafetensors } from '../model/safetensors.js'
import { tempPathFor, writeFileAtomic } from '../util/fs.js'
import { readJsonFile } from '../util/json.js'
import { checkKeys, describe } from '../util/options.js'

export interface CheckpointTargets {
  /** Models by name (a name becomes a directory: letters, digits, '_', '-', '.'). */
  models?: Readonly<Record<string, Model>>
  /** Optimizers by name. */
  optimizers?: Readonly<Record<string, AdamW>>
}

export interface SaveCheckpointOptions extends Omit<CheckpointTargets, 'optimizers'> {
  /** Optimizers by name: an AdamW, or its model and state (a ZeRO-1 optimizer's moments gathered). */
  optimizers?: Readonly<Record<string, Pick<AdamW, 'model' | 'state'>>>
  /** The optimizer step the checkpoint is taken after. */
  step: number
  /** The trainer's own state, as JSON: RNG states, data position, KL coefficient... */
  state?: unknown
  /** Keep `keep` checkpoints of the run: the one written now and the newest `keep - 1` others. Default: keep all. */
  keep?: number
}

export interface LoadedCheckpoint<State = unknown> {
  step: number
  state: State
}

interface StateFile {
  step: number
  savedAt: string
  models: string[]
  optimizers: string[]
  state: unknown
}

const STEP_DIR = /^step-(\d+)$/
const NAME = /^[A-Za-z0-9_-][A-Za-z0-9_.-]*$/

/** <runDir>/checkpoints/step-<step, 6 digits or more>. */
export function checkpointPath(runDir: string, step: number): string {
  return path.join(runDir, 'checkpoints', `step-${String(step).padStart(6, '0')}`)
}

/** The complete checkpoints of a run (those with a state.json), oldest first. */
export function listCheckpoints(runDir: string): { step: number; path: string }[] {
  const dir = path.join(runDir, 'checkpoints')
  if (!fs.existsSync(dir)) return []
  return fs
    .readdirSync(dir)
    .map((name) => ({ match: STEP_DIR.exec(name), path: path.join(dir, name) }))
    .filter(({ match, path: p }) => match && fs.existsSync(path.join(p, 'state.json')))
    .map(({ match, path: p }) => ({ step: Number(match![1]), path: p }))
    .sort((a, b) => a.step - b.step)
}

/** The newest complete checkpoint of a run, or undefined when there is none. */
export function latestCheckpoint(runDir: string): string | undefined {
  return listCheckpoints(runDir).at(-1)?.path
}

/** Writes a checkpoint of `step` into <runDir>/checkpoints and returns its directory. */
export async function saveCheckpoint(runDir: string, options: SaveCheckpointOptions): Promise<string> {
  const where = 'saveCheckpoint'
  checkKeys(where, options, ['step', 'models', 'optimizers', 'state', 'keep'])
  const { step, keep = Infinity } = options
  if (!Number.isSafeInteger(step) || step < 0) throw new TypeError(`${where}: step must be a non-negative integer; got ${describe(step)}`)
  if (!(keep >= 1)) throw new RangeError(`${where}: keep must be at least 1; got ${describe(keep)}`)
  const models = namedEntries(where, 'models', options.models)
  const optimizers = namedEntries(where, 'optimizers', options.optimizers)
  checkJson(where, 'state', options.state)

  const final = checkpointPath(runDir, step)
  const parent = path.dirname(final)
  fs.mkdirSync(parent, { recursive: true })
  removeLeftovers(parent)
  const temp = tempPathFor(final)
  fs.mkdirSync(temp)
  try {
    // A model's weights and its optimizers' moments are written as one operation
    // of that model, so a step called meanwhile lands wholly before or after them.
    const owners = [...new Set([...models.map(([, model]) => model), ...optimizers.map(([, optimizer]) => optimizer.model)])]
    for (const owner of owners) {
      const writeOwned = () => {
        for (const [name, model] of models) if (model === owner) model.writeFiles(path.join(temp, name))
        for (const [name, optimizer] of optimizers) {
          if (optimizer.model !== owner) continue
          const { step: optimizerStep, m, v } = optimizer.state()
          writeSafetensors(path.join(temp, `optimizer-${name}.safetensors`), [{ name: 'm', tensor: m }, { name: 'v', tensor: v }], {
            format: 'rlfarm-adamw',
            step: String(optimizerStep),
          })
        }
      }
      await owner.enqueue(where, writeOwned, { readsWeightsOnly: true })
    }
    const stateFile: StateFile = {
      step,
      savedAt: new Date().toISOString(),
      models: models.map(([name]) => name),
      optimizers: optimizers.map(([name]) => name),
      state: options.state ?? null,
    }
    writeFileAtomic(path.join(temp, 'state.json'), `${JSON.stringify(stateFile, null, 1)}\n`)
    if (fs.existsSync(final)) fs.renameSync(final, tempPathFor(final, 'old')) // saving the same step again
    fs.renameSync(temp, final)
  } catch (err) {
    fs.rmSync(temp, { recursive: true, force: true })
    throw new Error(`${where}: cannot write ${final}: ${(err as Error).message}`, { cause: err })
  }
  removeLeftovers(parent)
  // The checkpoint just written stays, with the newest keep - 1 others: a run
  // resumed from an earlier step must not lose its new checkpoints to the
  // higher steps of the timeline it left (nor resume into that timeline later).
  const others = listCheckpoints(runDir).filter((c) => path.resolve(c.path) !== path.resolve(final))
  for (const old of others.slice(0, Math.max(0, others.length - (keep - 1)))) removeDir(old.path)
  return final
}

/**
 * Restores a checkpoint directory into existing models and optimizers (each
 * named one must be in the checkpoint) and returns the step and the trainer state.
 */
export async function loadCheckpoint<State = unknown>(dir: string, targets: CheckpointTargets = {}): Promise<LoadedCheckpoint<State>> {
  const where = 'loadCheckpoint'
  checkKeys(where, targets, ['models', 'optimizers'])
  const stateFile = path.join(dir, 'state.json')
  if (!fs.existsSync(stateFile)) throw new Error(`${where}: ${dir} is not a complete checkpoint (it has no state.json)`)
  const saved = checkStateFile(stateFile, await readJsonFile(stateFile))
  const named = STEP_DIR.exec(path.basename(path.resolve(dir)))
  if (named && Number(named[1]) !== saved.step) {
    throw new Error(`${where}: ${stateFile} says step ${saved.step} but its directory is ${path.basename(path.resolve(dir))}; the checkpoint was changed or moved`)
  }
  for (const [kind, key] of [['model', 'models'], ['optimizer', 'optimizers']] as const) {
    for (const [name] of namedEntries<unknown>(where, key, targets[key])) {
      if (!saved[key]?.includes(name)) {
        throw new Error(`${where}: ${dir} has no ${kind} '${name}' (it holds: ${saved[key]?.join(', ') || 'none'})`)
      }
    }
  }
  for (const [name, model] of namedEntries(where, 'models', targets.models)) await model.loadWeightsFrom(path.join(dir, name))
  for (const [name, optimizer] of namedEntries(where, 'optimizers', targets.optimizers)) {
    const file = SafetensorsFile.open(path.join(dir, `optimizer-${name}.safetensors`))
    try {
      optimizer.loadState({ step: Number(file.metadata.step), m: file.tensor('m'), v: file.tensor('v') })
    } catch (err) {
      throw new Error(`${file.path}: ${(err as Error).message}`, { cause: err })
    }
  }
  return { step: saved.step, state: saved.state as State }
}

function namedEntries<T>(where: string, key: string, given: Readonly<Record<string, T>> | undefined): [string, T][] {
  const entries = Object.entries(given ?? {})
  for (const [name] of entries) {
    if (!NAME.test(name)) throw new TypeError(`${where}: ${key} name '${name}' must be letters, digits, '_', '-' or '.' (it names a file)`)
  }
  return entries
}

/** A state.json as read: an object with a step and the names of what it holds, or an error naming the file. */
function checkStateFile(file: string, value: unknown): StateFile {
  const bad = (what: string) => new Error(`loadCheckpoint: ${file}: ${what}; it is not a checkpoint's state.json (damaged or edited)`)
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad(`expected an object, got ${describe(value)}`)
  const saved = value as Partial<StateFile>
  if (!Number.isSafeInteger(saved.step) || saved.step! < 0) throw bad(`step must be a non-negative integer; got ${describe(saved.step)}`)
  for (const key of ['models', 'optimizers'] as const) {
    const names = saved[key]
    if (!Array.isArray(names) || !names.every((n) => typeof n === 'string')) throw bad(`${key} must be a list of names; got ${describe(names)}`)
  }
  return saved as StateFile
}

/** Throws, naming the place, where `value` holds something JSON would drop or change. */
function checkJson(where: string, at: string, value: unknown, within: object[] = []): void {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`${where}: ${at} is ${value}, which JSON cannot hold`)
    return
  }
  if (typeof value === 'object' && within.includes(value)) throw new TypeError(`${where}: ${at} refers back to an object that holds it (a cycle), which JSON cannot hold`)
  if (Array.isArray(value)) {
    within.push(value)
    value.forEach((v, i) => checkJson(where, `${at}[${i}]`, v, within))
    within.pop()
    return
  }
  if (typeof value === 'object' && [Object.prototype, null].includes(Object.getPrototypeOf(value))) {
    within.push(value)
    for (const [k, v] of Object.entries(value as object)) if (v !== undefined) checkJson(where, `${at}.${k}`, v, within) // JSON drops undefined keys
    within.pop()
    return
  }
  if (value === undefined && at === 'state') return
  throw new TypeError(`${where}: ${at} is ${describe(value)}; the state must be plain JSON (objects, arrays, strings, finite numbers, booleans, null)`)
}

/** Removes the temporary directories of saves that crashed or were replaced (.step-*). */
function removeLeftovers(checkpointsDir: string): void {
  for (const name of fs.readdirSync(checkpointsDir)) {
    if (name.startsWith('.step-')) fs.rmSync(path.join(checkpointsDir, name), { recursive: true, force: true })
  }
}

/** Renames a checkpoint out of view first, so a half-deleted one never looks complete. */
function removeDir(dir: string): void {
  const doomed = tempPathFor(dir, 'delete')
  fs.renameSync(dir, doomed)
  fs.rmSync(doomed, { recursive: true, force: true })
}
