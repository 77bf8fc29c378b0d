// The config API: loadConfig (YAML or JSON files, --set overrides),
// resolveConfig (objects built in code), saveResolvedConfig (what a run
// records) and resolvePaths (paths relative to the config file).
import { randomBytes } from 'node:crypto'
import { mkdir, open, rename, rm } from 'node:fs/promises'
import { basename, dirname, extname, join, resolve as resolvePath } from 'node:path'
import { Document } from 'yaml'
import { isDirectory } from '../util/fs.js'
import { checkKeys, describe, isPlainObject } from '../util/options.js'
import { ConfigError } from './errors.js'
import { configRoot, mergeExtends } from './extends.js'
import { absolutePaths } from './paths.js'
import { resolveWithSource, TOP_LEVEL_TYPES, type TopLevelType } from './resolve.js'
import { CONFIG_EXTENSIONS, emptySource, parseConfigSource, readConfigText, unreadableReason } from './source.js'
import type { ConfigInputTypes, ConfigTypes } from './types.generated.js'

export type { TopLevelType } from './resolve.js'

export interface LoadConfigOptions<T extends TopLevelType = 'RunConfig'> {
  /** Overrides, `path=value` each: `ppo.kl_coef=0.1`, `stages[0].run.seed=3`. Values are read as YAML scalars. */
  set?: readonly string[]
  /** The message the file holds. Default 'RunConfig'. */
  type?: T
}

export interface ResolveConfigOptions<T extends TopLevelType = 'RunConfig'> {
  /** Names the config in error messages (e.g. the script that built it). Default 'config'. */
  source?: string
  /** The message the object is. Default 'RunConfig'. */
  type?: T
  /** Overrides, as for loadConfig. */
  set?: readonly string[]
}

function checkType(where: string, type: unknown): TopLevelType {
  if (type === undefined) return 'RunConfig'
  if (typeof type !== 'string' || !(TOP_LEVEL_TYPES as readonly string[]).includes(type)) {
    throw new TypeError(`${where}: type must be one of ${TOP_LEVEL_TYPES.map((t) => `'${t}'`).join(', ')}; got ${describe(type, 'yaml')}`)
  }
  return type as TopLevelType
}

function checkSets(where: string, set: unknown): readonly string[] {
  if (set === undefined) return []
  if (!Array.isArray(set)) throw new TypeError(`${where}: set must be a list of 'path=value' strings; got ${describe(set, 'yaml')}`)
  return set as string[]
}

/**
 * Reads a config file (YAML: .yaml or .yml; JSON: .json), applies `set`
 * overrides, validates it against proto/rlfarm.proto and returns it resolved:
 * defaults filled in at every level, message fields present as objects even
 * when the file leaves them out. Any problem throws a ConfigError naming the
 * file, line and column (or the --set argument), the field path, what was
 * expected and what came; unknown keys get the closest known key suggested.
 * Paths in the config are returned as written (see resolvePaths).
 */
export async function loadConfig<T extends TopLevelType = 'RunConfig'>(file: string, options: LoadConfigOptions<T> = {}): Promise<ConfigTypes[T]> {
  checkKeys('loadConfig', options, ['set', 'type'])
  const type = checkType('loadConfig', options.type)
  const sets = checkSets('loadConfig', options.set)
  if (typeof file !== 'string' || file === '') throw new TypeError(`loadConfig: file must be a path; got ${describe(file, 'yaml')}`)
  const ext = extname(file).toLowerCase()
  if (!CONFIG_EXTENSIONS.includes(ext)) {
    if (isDirectory(file)) throw new ConfigError([{ path: '', file, message: `cannot read the config: it is a directory (give a .yaml, .yml or .json file)` }])
    throw new ConfigError([{ path: '', file, message: `cannot tell the format from the extension '${ext}': expected ${CONFIG_EXTENSIONS.join(', ')}` }])
  }
  let text: string
  try {
    text = readConfigText(file)
  } catch (err) {
    throw new ConfigError([{ path: '', file, message: `cannot read the config: ${unreadableReason(err)}` }])
  }
  let parsed = parseConfigSource(text, file)
  if (type === 'PipelineConfig') parsed = mergeExtends(parsed, dirname(resolvePath(file)), [resolvePath(file)], configRoot(file))
  return resolveWithSource(parsed.value, type, parsed.source, sets) as unknown as ConfigTypes[T]
}

/**
 * Validates a config given as an object (the embedding API) and returns it
 * resolved, with the checks and messages of loadConfig (field paths, no line
 * numbers). The object is not modified.
 */
export function resolveConfig<T extends TopLevelType = 'RunConfig'>(config: ConfigInputTypes[T] | ConfigTypes[T], options: ResolveConfigOptions<T> = {}): ConfigTypes[T] {
  checkKeys('resolveConfig', options, ['source', 'type', 'set'])
  const type = checkType('resolveConfig', options.type)
  const sets = checkSets('resolveConfig', options.set)
  const source = options.source ?? 'config'
  if (typeof source !== 'string') throw new TypeError(`resolveConfig: source must be a string; got ${describe(source, 'yaml')}`)
  // A pipeline object's `extends` files are relative to the working directory.
  const parsed = type === 'PipelineConfig' ? mergeExtends({ value: config, source: emptySource(source) }, process.cwd()) : { value: config, source: emptySource(source) }
  return resolveWithSource(parsed.value, type, parsed.source, sets) as unknown as ConfigTypes[T]
}

/** RunConfig, unless the object has pipeline stages. */
function inferType(config: unknown): TopLevelType {
  return isPlainObject(config) && 'stages' in config ? 'PipelineConfig' : 'RunConfig'
}

export interface SaveConfigOptions {
  /** The message `config` is. Default: PipelineConfig when it has `stages`, else RunConfig. */
  type?: TopLevelType
}

/**
 * Writes a resolved config (every value, defaults included) as YAML (JSON when
 * `file` ends in .json), atomically: a temp file in the same directory, synced,
 * then renamed over `file`. Loading the file again gives an equal config. The
 * config is validated first, so an invalid one is never written.
 */
export async function saveResolvedConfig(config: ConfigTypes[TopLevelType] | ConfigInputTypes[TopLevelType], file: string, options: SaveConfigOptions = {}): Promise<void> {
  checkKeys('saveResolvedConfig', options, ['type'])
  const type = options.type === undefined ? inferType(config) : checkType('saveResolvedConfig', options.type)
  const resolved = resolveConfig(config as ConfigInputTypes[TopLevelType], { type, source: `saveResolvedConfig(${file})` })
  let text: string
  if (extname(file).toLowerCase() === '.json') text = `${JSON.stringify(resolved, null, 2)}\n`
  else {
    const doc = new Document(resolved)
    doc.commentBefore = ` The resolved ${type} (defaults filled in), written by rlfarm.`
    text = doc.toString({ lineWidth: 0 })
  }
  const dir = dirname(file)
  await mkdir(dir, { recursive: true })
  const tmp = join(dir, `.${basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`)
  try {
    const handle = await open(tmp, 'w')
    try {
      await handle.writeFile(text, 'utf8')
      await handle.sync()
    } finally {
      await handle.close()
    }
    await rename(tmp, file)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
}

export interface ResolvePathsOptions {
  /** The message `config` is. Default: PipelineConfig when it has `stages`, else RunConfig. */
  type?: TopLevelType
}

/**
 * Returns a copy of `config` in which the path-valued fields (those marked
 * `(path)` in the proto: ModelSpec.path and .tokenizer, DataConfig.train, .eval
 * and .prompts, BestOfNConfig.output, Stage.config) that are relative are made
 * absolute against `baseDir` (the config file's directory). `${stage}`
 * references and `tokenizer: byte` are left as they are.
 */
export function resolvePaths<C extends object>(config: C, baseDir: string, options: ResolvePathsOptions = {}): C {
  checkKeys('resolvePaths', options, ['type'])
  const type = options.type === undefined ? inferType(config) : checkType('resolvePaths', options.type)
  if (typeof baseDir !== 'string') throw new TypeError(`resolvePaths: baseDir must be a directory path; got ${describe(baseDir, 'yaml')}`)
  return absolutePaths(type, config, resolvePath(baseDir)) as C
}
