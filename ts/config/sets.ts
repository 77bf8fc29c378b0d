// `--set path=value` overrides (and `set:` in train()/runPipeline()): applied
// to a copy of the config before it is validated, each write remembered so an
// error can name the override that caused it.
import { parse as parseYaml } from 'yaml'
import { closestKey, describe, isPlainObject } from '../util/options.js'
import type { ConfigProblem } from './errors.js'
import { expectation, messageSpec, type FieldSpec, type MessageSpec } from './schema.js'
import { childPath, indexPath, type SourceInfo } from './source.js'

/** Where applySets reports: the config's source (its `sets` map is filled in) and the problems found. */
export interface SetsContext {
  readonly source: SourceInfo
  readonly problems: ConfigProblem[]
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

export function parseSetPath(text: string): Segment[] | undefined {
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
export function applySets(root: Record<string, unknown>, sets: readonly string[], top: MessageSpec, ctx: SetsContext) {
  const source = ctx.source
  const fail = (arg: string, message: string) => ctx.problems.push({ path: '', file: source.file, set: arg, message })
  for (const arg of sets) {
    if (typeof arg !== 'string') {
      fail(String(arg), `expected a string 'path=value', got ${describe(arg, 'yaml')}`)
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
          fail(arg, `${fieldPath} is ${describe(list, 'yaml')} in ${source.file}, not a list`)
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
          fail(arg, `${itemPath} is ${describe(list[index], 'yaml')} in ${source.file}, not a mapping`)
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
        fail(arg, `${fieldPath} is ${describe(obj[seg], 'yaml')} in ${source.file}, not a mapping`)
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
