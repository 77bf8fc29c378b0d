// Path-valued config fields (marked `(path)` in the proto): relative paths in
// a config file are taken from the file's directory, and those typed in a
// --set from the directory it was typed in.
import { isAbsolute, resolve as resolvePath } from 'node:path'
import { isPlainObject } from '../util/options.js'
import type { TopLevelType } from './resolve.js'
import { messageSpec, type FieldSpec, type MessageSpec } from './schema.js'
import { parseSetPath } from './sets.js'

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
