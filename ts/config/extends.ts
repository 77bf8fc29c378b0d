// Pipelines built on others: `extends: base.yaml` (or a list of files) puts
// the base pipelines' stages before the file's own, so that configs sharing a
// beginning (the farm, SFT, labels, a reward model) write it once. Merging is
// done on the text's values, before validation, and the positions of the base
// stages keep their own file: an error in a base names that file and line.
import { dirname, extname, isAbsolute, relative, resolve as resolvePath, sep } from 'node:path'
import { resolveInside } from '../util/fs.js'
import { firstDifference } from '../util/json.js'
import { ConfigError, type ConfigProblem } from './errors.js'
import { describe, isPlainObject } from '../util/options.js'
import { absolutePaths } from './paths.js'
import { CONFIG_EXTENSIONS, indexPath, parseConfigSource, readConfigText, unreadableReason, type SourceInfo } from './source.js'

/**
 * The directory that the bases a config file extends must lie in: the working
 * directory when the file is inside it (so configs in sub-folders of a project
 * share a base higher up), else the file's own directory.
 */
export function configRoot(file: string): string {
  const abs = resolvePath(file)
  const rel = relative(process.cwd(), abs)
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel) ? process.cwd() : dirname(abs)
}

/** Fields a pipeline takes from its first base that sets them, when it leaves them out itself. */
const INHERITED = ['seed', 'output_dir'] as const

interface Parsed {
  value: unknown
  source: SourceInfo
}

/** A file's name for messages: relative to the working directory when that is shorter. */
function shown(file: string): string {
  const rel = relative(process.cwd(), file)
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : file
}

function problemAt(source: SourceInfo, path: string, message: string): ConfigProblem {
  const pos = source.values.get(path) ?? source.keys.get(path)
  return { path, message, file: source.file, ...(pos ?? {}) }
}

/** The base files named by `extends`: a path or a list of paths. */
function baseFiles(value: unknown, source: SourceInfo): string[] {
  if (typeof value === 'string' && value !== '') return [value]
  if (Array.isArray(value) && value.every((v) => typeof v === 'string' && v !== '')) return value as string[]
  throw new ConfigError([problemAt(source, 'extends', `expected a pipeline file or a list of them, got ${describe(value, 'yaml')}`)])
}

/** Reads and parses a base pipeline; a file that cannot be read is an error at the `extends` that names it. */
function readBase(file: string, from: SourceInfo, at: string): Parsed {
  const ext = extname(file).toLowerCase()
  if (!CONFIG_EXTENSIONS.includes(ext)) {
    throw new ConfigError([problemAt(from, at, `cannot tell the format of the base pipeline ${shown(file)} from the extension '${ext}': expected ${CONFIG_EXTENSIONS.join(', ')}`)])
  }
  let text: string
  try {
    text = readConfigText(file)
  } catch (err) {
    throw new ConfigError([problemAt(from, at, `cannot read the base pipeline ${shown(file)}: ${unreadableReason(err)}`)])
  }
  return parseConfigSource(text, shown(file))
}

/** Copies the positions under `from` in `source` to `to` in `into`, each keeping the file it is in. */
function movePositions(source: SourceInfo, from: string, into: SourceInfo, to: string) {
  const maps = [
    [source.keys, into.keys],
    [source.values, into.values],
  ] as const
  const moved = (p: string) => (p === from ? to : p.startsWith(from) && (p[from.length] === '.' || p[from.length] === '[') ? to + p.slice(from.length) : undefined)
  for (const [src, dst] of maps) {
    for (const [p, pos] of src) {
      const q = moved(p)
      if (q !== undefined) dst.set(q, { ...pos, file: pos.file ?? source.file })
    }
  }
  for (const [p, raw] of source.raw) {
    const q = moved(p)
    if (q !== undefined) into.raw.set(q, raw)
  }
}

/**
 * Returns the pipeline `value` with the stages of the pipelines it extends
 * put first (recursively; a stage that two bases share, same name and same
 * definition, is kept once), `seed` and `output_dir` taken from the first base
 * that sets them when `value` leaves them out, and `extends` removed. Relative
 * paths in a base are taken from the base file's directory; `dir` is the one
 * `value`'s own `extends` paths are relative to. `chain` holds the files being
 * extended, to catch a cycle.
 */
export function mergeExtends(parsed: Parsed, dir: string, chain: readonly string[] = [], root?: string): Parsed {
  const { value, source } = parsed
  if (!isPlainObject(value) || value.extends === undefined || value.extends === null) return parsed
  if (Array.isArray(value.extends) && value.extends.length === 0) {
    const { extends: _, ...rest } = value
    return { value: rest, source }
  }
  const files = baseFiles(value.extends, source)
  const merged: SourceInfo = { file: source.file, keys: new Map(), values: new Map(), raw: new Map(), sets: new Map() }
  const stages: unknown[] = []
  const owner = new Map<string, { stage: unknown; file: string }>()
  const inherited: Record<string, unknown> = {}
  files.forEach((name, b) => {
    const at = typeof value.extends === 'string' ? 'extends' : indexPath('extends', b)
    let file = resolvePath(dir, name)
    if (root !== undefined) {
      try {
        file = resolveInside(root, name, 'the base pipeline', dir)
      } catch (err) {
        const hint = ' (a base must lie inside the working directory, or, for a config outside it, inside that config\'s directory: run from a directory that holds both files)'
        throw new ConfigError([problemAt(source, at, `${(err as Error).message}${hint}`)])
      }
    }
    if (chain.includes(file)) {
      throw new ConfigError([problemAt(source, at, `${shown(file)} extends itself: ${[...chain.slice(chain.indexOf(file)), file].map(shown).join(' -> ')}`)])
    }
    const base = mergeExtends(readBase(file, source, at), dirname(file), [...chain, file], root ?? configRoot(file))
    if (!isPlainObject(base.value) || !Array.isArray(base.value.stages)) {
      throw new ConfigError([problemAt(source, at, `${shown(file)} is not a pipeline: it has no list of stages`)])
    }
    const baseValue = absolutePaths('PipelineConfig', base.value, dirname(file)) as Record<string, unknown>
    for (const key of INHERITED) {
      if (baseValue[key] !== undefined && !(key in inherited)) {
        inherited[key] = baseValue[key]
        movePositions(base.source, key, merged, key)
      }
    }
    ;(baseValue.stages as unknown[]).forEach((stage, j) => {
      const stageName = isPlainObject(stage) && typeof stage.name === 'string' ? stage.name : undefined
      const first = stageName === undefined ? undefined : owner.get(stageName)
      if (first !== undefined) {
        if (firstDifference(first.stage, stage) === undefined) return
        throw new ConfigError([problemAt(base.source, indexPath('stages', j), `the stage '${stageName}' differs from the stage of that name in ${first.file}, which this pipeline also extends`)])
      }
      if (stageName !== undefined) owner.set(stageName, { stage, file: base.source.file })
      movePositions(base.source, indexPath('stages', j), merged, indexPath('stages', stages.length))
      stages.push(stage)
    })
  })
  const { extends: _, ...own } = value
  for (const [key, v] of Object.entries(inherited)) if (own[key] === undefined) own[key] = v
  // This file's own keys keep their positions; its stages come after the bases'.
  const offset = stages.length
  const ownStages = own.stages
  const shift = (p: string) => {
    const m = /^stages\[(\d+)\]/.exec(p)
    return m ? indexPath('stages', offset + Number(m[1])) + p.slice(m[0].length) : p
  }
  for (const map of ['keys', 'values'] as const) for (const [p, pos] of source[map]) merged[map].set(shift(p), pos)
  for (const [p, raw] of source.raw) merged.raw.set(shift(p), raw)
  // Own stages that are not a list are left for validation to report.
  own.stages = ownStages === undefined || ownStages === null ? stages : Array.isArray(ownStages) ? [...stages, ...ownStages] : ownStages
  return { value: own, source: merged }
}
