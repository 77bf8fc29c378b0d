// Validation against the schema and filling in of defaults, plus --set
// overrides. Every problem found is collected, each with its field path and
// (through the SourceInfo) its file, line and column or --set argument.
import { isAbsolute, resolve as resolvePath } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { closestKey } from '../util/options.js'
import { ConfigError, type ConfigProblem } from './errors.js'
import { checkScalar, configSchema, expectation, messageSpec, type FieldSpec, type MessageSpec } from './schema.js'
import { childPath, indexPath, parentPath, type Position, type SourceInfo } from './source.js'

/** The config messages a file can hold at its top level. */
export const TOP_LEVEL_TYPES = ['RunConfig', 'PipelineConfig'] as const
export type TopLevelType = (typeof TOP_LEVEL_TYPES)[number]

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** A value in words, for "got ...". */
export function describeValue(value: unknown): string {
  if (value === null) return 'null'
  if (value === undefined) return 'nothing'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'string') return `the string '${JSON.stringify(value).slice(1, -1)}'`
  if (typeof value === 'number' || typeof value === 'boolean') return String(value)
  if (typeof value === 'bigint') return `${value}n`
  if (isPlainObject(value)) return 'a mapping'
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'object') return `a ${(value as object).constructor?.name ?? 'object'}`
  return typeof value
}

class Context {
  readonly problems: ConfigProblem[] = []
  constructor(
    readonly source: SourceInfo,
    readonly type: TopLevelType,
  ) {}

  /** Records a problem at `path`; `at` says whether it is the key or the value that is wrong. */
  report(path: string, at: 'key' | 'value', message: string) {
    const problem: ConfigProblem = { path, message, file: this.source.file }
    const set = this.setArgument(path)
    if (set !== undefined) problem.set = set
    else {
      const pos = this.position(path, at)
      if (pos) Object.assign(problem, pos)
    }
    this.problems.push(problem)
  }

  private setArgument(path: string): string | undefined {
    for (let p = path; ; p = parentPath(p)) {
      const arg = this.source.sets.get(p)
      if (arg !== undefined) return arg
      if (p === '') return undefined
    }
  }

  private position(path: string, at: 'key' | 'value'): Position | undefined {
    const { keys, values } = this.source
    const own = at === 'key' ? (keys.get(path) ?? values.get(path)) : (values.get(path) ?? keys.get(path))
    if (own) return own
    for (let p = parentPath(path); ; p = parentPath(p)) {
      const pos = values.get(p) ?? keys.get(p)
      if (pos || p === '') return pos
    }
  }
}

/** "did you mean" for an unknown key of `spec`. */
function unknownKeyMessage(spec: MessageSpec, key: string, ctx: Context, atTop: boolean): string {
  const names = spec.fields.map((f) => f.name)
  const near = closestKey(key, names)
  if (near) return `unknown key '${key}' in ${spec.name}; did you mean '${near}'?`
  // A key written one level too high: 'kl_coef' at the top instead of under 'ppo'.
  const deeper = spec.fields
    .filter((f) => f.kind === 'message' && !f.repeated && messageSpec(f.message!).byName.has(key))
    .map((f) => `'${f.name}.${key}'`)
  if (deeper.length > 0) return `unknown key '${key}' in ${spec.name}; did you mean ${deeper.join(' or ')}?`
  if (atTop) {
    const other = TOP_LEVEL_TYPES.find((t) => t !== ctx.type && messageSpec(t).byName.has(key))
    if (other) return `unknown key '${key}' in ${spec.name}; '${key}' is a key of ${other}: is this a ${other} file?`
  }
  return `unknown key '${key}' in ${spec.name}; its keys are ${names.join(', ')}`
}

function resolveMessage(spec: MessageSpec, value: unknown, path: string, ctx: Context): Record<string, unknown> {
  let given: Record<string, unknown> = {}
  if (isPlainObject(value)) given = value
  else if (value !== undefined && value !== null) {
    ctx.report(path, 'value', `expected a mapping (${spec.name}), got ${describeValue(value)}`)
  }
  for (const key of Object.keys(given)) {
    if (!spec.byName.has(key)) ctx.report(childPath(path, key), 'key', unknownKeyMessage(spec, key, ctx, path === ''))
  }
  const out: Record<string, unknown> = {}
  for (const field of spec.fields) out[field.name] = resolveField(field, given[field.name], childPath(path, field.name), ctx)
  if (spec.name === 'Stage' && isPlainObject(value) && value.config == null && value.run == null) {
    ctx.report(path, 'value', `a stage needs 'config' (a RunConfig file) or 'run' (a RunConfig inline)`)
  }
  return out
}

function resolveField(field: FieldSpec, value: unknown, path: string, ctx: Context): unknown {
  if (field.repeated) {
    if (value === undefined || value === null) return []
    if (!Array.isArray(value)) {
      ctx.report(path, 'value', `expected a list of ${field.kind === 'message' ? `${field.message} mappings` : expectation(field)}, got ${describeValue(value)}`)
      return []
    }
    return value.map((item, i) => resolveOne(field, item, indexPath(path, i), ctx))
  }
  return resolveOne(field, value, path, ctx)
}

function resolveOne(field: FieldSpec, value: unknown, path: string, ctx: Context): unknown {
  if (field.kind === 'message' && field.presence && (value === undefined || value === null)) return undefined
  if (field.kind === 'message') return resolveMessage(messageSpec(field.message!), value, path, ctx)
  if (value === undefined || value === null) return field.default
  if (field.kind === 'json') {
    if (isPlainObject(value)) return clonePlain(value)
    ctx.report(path, 'value', `expected a mapping, got ${describeValue(value)}`)
    return undefined
  }
  // YAML reads `name: 2024` as a number; a string field takes the text as written.
  if ((field.kind === 'string' || field.kind === 'enum') && typeof value !== 'string') {
    const raw = ctx.source.raw.get(path)
    if (raw !== undefined) value = raw
  }
  const expected = checkScalar(field, value)
  if (expected === undefined) return value
  let message = `expected ${expected}, got ${describeValue(value)}`
  if (typeof value === 'string' && field.choices) {
    const near = closestKey(value, field.choices)
    if (near) message += `; did you mean '${near}'?`
  } else if (typeof value === 'string' && (field.kind === 'number' || field.kind === 'integer') && value.trim() !== '' && Number.isFinite(Number(value))) {
    message += ' (a quoted number is a string; write it without quotes)'
  } else if (typeof value === 'string' && field.kind === 'bool' && /^(true|false)$/i.test(value.trim())) {
    message += ' (write true or false without quotes)'
  }
  ctx.report(path, 'value', message)
  return field.default
}

/** `${name}` references in a pipeline must name an earlier stage. */
function checkPipeline(pipeline: Record<string, unknown>, ctx: Context) {
  const stages = pipeline.stages as Record<string, unknown>[]
  const earlier: string[] = []
  const firstAt = new Map<string, number>()
  stages.forEach((stage, i) => {
    const path = indexPath('stages', i)
    const visit = (value: unknown, p: string) => {
      if (typeof value === 'string') {
        for (const m of value.matchAll(/\$\{([^}.]*)(?:\.[^}]*)?\}/g)) {
          // `${stage}` or `${stage.file}`: the stage must come earlier.
          const name = m[1]
          if (earlier.includes(name)) continue
          const near = closestKey(name, earlier)
          const known = earlier.length ? `earlier stages: ${earlier.join(', ')}` : 'it is the first stage'
          const hint = near ? `; did you mean '\${${near}}'?` : ''
          ctx.report(p, 'value', `'\${${name}}' names no earlier stage (${known})${hint}`)
        }
      } else if (Array.isArray(value)) value.forEach((v, j) => visit(v, indexPath(p, j)))
      else if (isPlainObject(value)) for (const [k, v] of Object.entries(value)) visit(v, childPath(p, k))
    }
    visit(stage.config, childPath(path, 'config'))
    visit(stage.run, childPath(path, 'run'))
    const name = stage.name
    if (typeof name === 'string') {
      const first = firstAt.get(name)
      if (first !== undefined) {
        const from = ctx.source.values.get(indexPath('stages', first))?.file
        ctx.report(childPath(path, 'name'), 'value', `the stage name '${name}' is already used by stages[${first}]${from ? ` (from ${from})` : ''}`)
      }
      else {
        firstAt.set(name, i)
        earlier.push(name)
      }
    }
  })
}

/** A path value left as it is: unset, a `${stage}` reference, or the built-in byte tokenizer. */
function keepAsIs(value: unknown, owner: string, name: string): boolean {
  if (typeof value !== 'string' || value === '') return true
  if (value.startsWith('${')) return true
  return owner === 'ModelSpec' && name === 'tokenizer' && value === 'byte'
}

/**
 * A copy of `value` (a `type` message, resolved or as written) with its
 * relative path-valued fields (marked `(path)` in the proto) made absolute
 * against `baseDir`; `${stage}` references and `tokenizer: byte` are kept.
 */
export function absolutePaths(type: TopLevelType, value: unknown, baseDir: string): unknown {
  const walk = (spec: MessageSpec, v: unknown): unknown => {
    if (!isPlainObject(v)) return v
    const out: Record<string, unknown> = { ...v }
    for (const field of spec.fields) {
      const x = v[field.name]
      if (field.kind === 'message') {
        const inner = messageSpec(field.message!)
        if (field.repeated && Array.isArray(x)) out[field.name] = x.map((item) => walk(inner, item))
        else if (!field.repeated) out[field.name] = walk(inner, x)
      } else if (field.path && !field.repeated && !keepAsIs(x, spec.name, field.name)) {
        const p = x as string
        out[field.name] = isAbsolute(p) ? p : resolvePath(baseDir, p)
      }
    }
    return out
  }
  return walk(messageSpec(type), value)
}

/**
 * `--set` arguments whose field is path-valued (marked `(path)`), with a
 * relative value made absolute against `baseDir`: a path typed on a command
 * line is taken from the directory it was typed in, not from the config
 * file's. Other arguments, and malformed ones (validation reports those), are
 * kept as they are.
 */
export function absoluteSetPaths(type: TopLevelType, sets: readonly string[], baseDir: string): string[] {
  return sets.map((arg) => {
    const eq = typeof arg === 'string' ? arg.indexOf('=') : -1
    const segments = eq > 0 ? parseSetPath(arg.slice(0, eq).trim()) : undefined
    if (!segments) return arg
    let spec: MessageSpec | undefined = messageSpec(type)
    let owner = spec
    let field: FieldSpec | undefined
    for (const seg of segments) {
      if (typeof seg === 'number') continue // an item of the list field just named
      if (!spec) return arg
      field = spec.byName.get(seg)
      if (!field) return arg
      owner = spec
      spec = field.kind === 'message' ? messageSpec(field.message!) : undefined
    }
    const text = arg.slice(eq + 1).trim()
    if (!field?.path || field.repeated || text === 'null' || text === '~' || keepAsIs(text, owner.name, field.name) || isAbsolute(text)) return arg
    return `${arg.slice(0, eq)}=${resolvePath(baseDir, text)}`
  })
}

/** Clones plain objects and arrays (other values are kept as they are, for validation to judge). */
export function clonePlain(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(clonePlain)
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) Object.defineProperty(out, k, { value: clonePlain(v), enumerable: true, writable: true, configurable: true })
    return out
  }
  return value
}

type Segment = string | number

function parseSetPath(text: string): Segment[] | undefined {
  const out: Segment[] = []
  for (const part of text.split('.')) {
    if (/^\d+$/.test(part)) {
      out.push(Number(part))
      continue
    }
    const m = /^([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)$/.exec(part)
    if (!m) return undefined
    out.push(m[1])
    for (const idx of m[2].matchAll(/\[(\d+)\]/g)) out.push(Number(idx[1]))
  }
  return out
}

/** The value of a --set: a YAML scalar (or a flow collection: [1, 2], {a: 1}); a string field takes the text as written. */
function setValue(text: string, field: FieldSpec | undefined, whole: boolean): unknown {
  let value: unknown
  try {
    value = parseYaml(text, { prettyErrors: false })
  } catch {
    value = text
  }
  // A string field takes the text as written: name=2024, name=a: b.
  if (field && whole && !field.repeated && (field.kind === 'string' || field.kind === 'enum') && value !== null && typeof value !== 'string') {
    return text.trim()
  }
  return value
}

/**
 * Applies `--set path=value` overrides to `root` (mutated), recording in
 * `source.sets` which paths each one wrote. Problems with the arguments
 * themselves (no '=', unknown keys) are reported to `ctx`.
 */
function applySets(root: Record<string, unknown>, sets: readonly string[], top: MessageSpec, ctx: Context) {
  const source = ctx.source
  const fail = (arg: string, message: string) => ctx.problems.push({ path: '', file: source.file, set: arg, message })
  for (const arg of sets) {
    if (typeof arg !== 'string') {
      fail(String(arg), `expected a string 'path=value', got ${describeValue(arg)}`)
      continue
    }
    const eq = arg.indexOf('=')
    if (eq <= 0) {
      fail(arg, `expected path=value, e.g. ppo.kl_coef=0.1`)
      continue
    }
    const segments = parseSetPath(arg.slice(0, eq).trim())
    if (!segments) {
      fail(arg, `'${arg.slice(0, eq).trim()}' is not a path; write keys separated by dots, list items as stages[0] or stages.0`)
      continue
    }
    const text = arg.slice(eq + 1)
    let spec = top
    let container: Record<string, unknown> | unknown[] = root
    let path = ''
    const created: string[] = []
    let done = false
    for (let k = 0; k < segments.length && !done; k++) {
      const seg = segments[k]
      if (typeof seg === 'number') {
        fail(arg, `${path || 'the config'} is not a list; [${seg}] cannot index it`)
        break
      }
      const field = spec.byName.get(seg)
      if (!field) {
        const near = closestKey(seg, spec.fields.map((f) => f.name))
        const where = path ? `${path} (${spec.name})` : spec.name
        const hint = near ? `; did you mean '${childPath(path, near)}'?` : `; its keys are ${spec.fields.map((f) => f.name).join(', ')}`
        fail(arg, `unknown key '${seg}' in ${where}${hint}`)
        break
      }
      const fieldPath = childPath(path, seg)
      const obj = container as Record<string, unknown>
      const last = k === segments.length - 1
      if (last) {
        obj[seg] = setValue(text, field, true)
        source.sets.set(fieldPath, arg)
        done = true
        break
      }
      if (field.repeated) {
        const index = segments[k + 1]
        if (typeof index !== 'number') {
          fail(arg, `${fieldPath} is a list; give an item's index, e.g. ${fieldPath}[0].${String(index)}`)
          break
        }
        if (obj[seg] === undefined || obj[seg] === null) {
          obj[seg] = []
          created.push(fieldPath)
        }
        const list = obj[seg]
        if (!Array.isArray(list)) {
          fail(arg, `${fieldPath} is ${describeValue(list)} in ${source.file}, not a list`)
          break
        }
        if (index > list.length) {
          fail(arg, `${fieldPath} has ${list.length} item${list.length === 1 ? '' : 's'}; [${index}] is past its end (use [${list.length}] to add one)`)
          break
        }
        const itemPath = indexPath(fieldPath, index)
        if (k + 1 === segments.length - 1) {
          list[index] = setValue(text, field, false)
          source.sets.set(itemPath, arg)
          done = true
          break
        }
        if (field.kind !== 'message') {
          fail(arg, `${itemPath} is ${expectation(field)}; it has no keys`)
          break
        }
        if (list[index] === undefined || list[index] === null) {
          list[index] = {}
          created.push(itemPath)
        }
        if (!isPlainObject(list[index])) {
          fail(arg, `${itemPath} is ${describeValue(list[index])} in ${source.file}, not a mapping`)
          break
        }
        container = list[index] as Record<string, unknown>
        spec = messageSpec(field.message!)
        path = itemPath
        k++
        continue
      }
      if (field.kind !== 'message') {
        fail(arg, `${fieldPath} is ${expectation(field)}; it has no keys`)
        break
      }
      if (obj[seg] === undefined || obj[seg] === null) {
        obj[seg] = {}
        created.push(fieldPath)
      }
      if (!isPlainObject(obj[seg])) {
        fail(arg, `${fieldPath} is ${describeValue(obj[seg])} in ${source.file}, not a mapping`)
        break
      }
      container = obj[seg] as Record<string, unknown>
      spec = messageSpec(field.message!)
      path = fieldPath
    }
    // Parents made for this override belong to it (unless an earlier one made them).
    for (const p of created) if (!source.sets.has(p)) source.sets.set(p, arg)
  }
}

/**
 * Validates `value` as a `type` message, after applying `sets`, and returns it
 * resolved (defaults filled in at every level). Throws a ConfigError listing
 * every problem.
 */
export function resolveWithSource(value: unknown, type: TopLevelType, source: SourceInfo, sets: readonly string[] = []): Record<string, unknown> {
  configSchema() // load the schema before anything else, so its own errors come first
  const spec = messageSpec(type)
  const ctx = new Context(source, type)
  let root = value
  if (root === undefined || root === null) root = {}
  // Overrides go in first (a bad one is reported and left out), then the whole is checked.
  // (on a copy: the caller's object stays as it is, and YAML aliases share their objects)
  if (sets.length > 0 && isPlainObject(root)) {
    root = clonePlain(root) as Record<string, unknown>
    applySets(root as Record<string, unknown>, sets, spec, ctx)
  }
  const out = resolveMessage(spec, root, '', ctx)
  if (type === 'PipelineConfig' && ctx.problems.length === 0) checkPipeline(out, ctx)
  if (ctx.problems.length === 0) return out
  // In the order of the file, then the --set arguments in their order, then the rest.
  const setOrder = (arg: string | undefined) => (arg === undefined ? -1 : sets.indexOf(arg))
  const rank = (p: ConfigProblem) => (p.line !== undefined ? 0 : p.set !== undefined ? 1 : 2)
  const sorted = ctx.problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => rank(a.p) - rank(b.p) || (a.p.line ?? 0) - (b.p.line ?? 0) || (a.p.column ?? 0) - (b.p.column ?? 0) || setOrder(a.p.set) - setOrder(b.p.set) || a.i - b.i)
    .map(({ p }) => p)
  throw new ConfigError(sorted)
}
