// Validation against the schema and filling in of defaults, after the --set
// overrides (sets.ts). Every problem found is collected, each with its field
// path and (through the SourceInfo) its file, line and column or --set argument.
import { closestKey, describe, isPlainObject } from '../util/options.js'
import { ConfigError, type ConfigProblem } from './errors.js'
import { checkScalar, configSchema, expectation, messageSpec, type FieldSpec, type MessageSpec } from './schema.js'
import { childPath, indexPath, parentPath, type Position, type SourceInfo } from './source.js'
import { applySets, clonePlain } from './sets.js'

/** The config messages a file can hold at its top level. */
export const TOP_LEVEL_TYPES = ['RunConfig', 'PipelineConfig'] as const
export type TopLevelType = (typeof TOP_LEVEL_TYPES)[number]

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
    ctx.report(path, 'value', `expected a mapping (${spec.name}), got ${describe(value, 'yaml')}`)
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
      ctx.report(path, 'value', `expected a list of ${field.kind === 'message' ? `${field.message} mappings` : expectation(field)}, got ${describe(value, 'yaml')}`)
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
    ctx.report(path, 'value', `expected a mapping, got ${describe(value, 'yaml')}`)
    return undefined
  }
  // YAML reads `name: 2024` as a number; a string field takes the text as written.
  if ((field.kind === 'string' || field.kind === 'enum') && typeof value !== 'string') {
    const raw = ctx.source.raw.get(path)
    if (raw !== undefined) value = raw
  }
  const expected = checkScalar(field, value)
  if (expected === undefined) return value
  let message = `expected ${expected}, got ${describe(value, 'yaml')}`
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
